//! `runledger explain` through the binary: after the projector and the reconciler have run over
//! a varied history, `--issue` and `--run` print the reconciler's decisions, newest first, with
//! rule, cause (type and stream sequence), inputs and sentence, exactly as `decisions` holds them.

use serde_json::Value;
use std::process::{Command, Output};
use testsupport::Kit;
use uuid::Uuid;

fn explain(kit: &Kit, args: &[&str]) -> String {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_runledger"))
        .arg("explain")
        .args(args)
        .env("DATABASE_URL", kit.db.url())
        .env_remove("RUNLEDGER_SCHEMA")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn explain_prints_an_issues_and_a_runs_decisions_newest_first() {
    let kit = Kit::new().await;
    let mut projector = kit.projector().await;
    let mut reconciler = kit.reconciler(reconciler::engine::Policy::default()).await;
    let events = producers::workload::generate(&producers::workload::Mix::varied(30), 11);
    kit.publish(&events).await;
    kit.settle(&mut reconciler, Some(&mut projector)).await;

    let client = kit.pool.get().await.unwrap();
    // The issue with the most decisions, and a run the rules looked at for a retry.
    let row = client
        .query_one(
            "SELECT issue_id, count(*) FROM decisions WHERE issue_id IS NOT NULL
             GROUP BY issue_id ORDER BY count(*) DESC, issue_id LIMIT 1",
            &[],
        )
        .await
        .expect("the reconciler decided something on an issue");
    let issue: Uuid = row.get(0);
    let count: i64 = row.get(1);
    let stored: Vec<(i64, String, String)> = client
        .query(
            "SELECT seq, sentence, rule FROM decisions WHERE issue_id = $1
             ORDER BY seq DESC, event_id DESC",
            &[&issue],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();

    let json: Value =
        serde_json::from_str(&explain(&kit, &["--issue", &issue.to_string(), "--json"])).unwrap();
    let printed = json.as_array().unwrap();
    assert_eq!(printed.len() as i64, count.min(50));
    for (p, (seq, sentence, rule)) in printed.iter().zip(&stored) {
        assert_eq!(p["seq"], *seq, "newest first");
        assert_eq!(p["sentence"], sentence.as_str());
        assert_eq!(p["rule"], rule.as_str());
        assert_eq!(p["issue_id"], issue.to_string());
        let cause_seq = p["cause"]["seq"].as_i64().expect("the cause was folded");
        assert!(cause_seq < *seq, "the cause came before its follow-up");
        assert!(p["inputs"]["issue_status"].is_string() || p["inputs"]["issue_status"].is_null());
        assert!(p["inputs"].get("storm_ceiling").is_some());
    }

    let text = explain(&kit, &["--issue", &issue.to_string()]);
    assert!(text.starts_with(&format!("decisions on issue {issue}, newest first")));
    for (_, sentence, _) in &stored {
        assert!(text.contains(sentence.as_str()), "{sentence} in\n{text}");
    }
    assert!(text.contains("  cause   "), "{text}");
    assert!(text.contains("  inputs  "), "{text}");
    assert!(text.contains(" issue_status="), "{text}");

    // --run: the decisions about one run, and only those.
    let run: Uuid = client
        .query_one(
            "SELECT run_id FROM decisions WHERE run_id IS NOT NULL ORDER BY seq LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let about_run: Value =
        serde_json::from_str(&explain(&kit, &["--run", &run.to_string(), "--json"])).unwrap();
    let about_run = about_run.as_array().unwrap();
    assert!(!about_run.is_empty());
    assert!(about_run
        .iter()
        .all(|d| d["run_id"] == run.to_string() || d["created_run_id"] == run.to_string()));

    let none = explain(&kit, &["--issue", &Uuid::nil().to_string()]);
    assert_eq!(
        none.trim(),
        format!("no decisions of the reconciler on issue {}", Uuid::nil())
    );
}
