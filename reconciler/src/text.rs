//! Text matchers of the liveness rules (reference §5) and the truncation helper every rule uses.
//!
//! A run's output is free text written by an agent; whether it *planned*, *declared a blocker* or
//! worked on a *planning task* is decided here, by case-insensitive whole-word patterns, so the
//! classifier, the continuation instruction and the tests share one definition of each phrase.

use regex::Regex;
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// Compiles one of this module's constant patterns.
fn pattern(source: &str) -> Regex {
    Regex::new(source).expect("the matcher patterns of text.rs are valid regular expressions")
}

/// Lead-in, whitespace, optional "first", then an action verb. `’` is accepted as an apostrophe.
static PLANNING_PHRASE: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?i)\b(?:i(?:['’]ll| will| am going to|['’]m going to)|let me|i need to|next(?:,| i will| i['’]ll)?|my next step is|the next step is)\s+(?:first\s+)?(?:inspect|check|review|look|investigate|analy[sz]e|open|read|start|begin|work on|implement|fix|test|update|create|add)\b",
    )
});

/// A line starting (after spaces) with "next step(s)" or "plan", optional spaces, a colon.
static NEXT_STEPS_HEADER: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?im)^[ \t]*(?:next[ \t]+steps?|plan)[ \t]*:"));

/// A trimmed line announcing the next action: "next", "next step(s)" or "next action", a colon.
static NEXT_ACTION_LINE: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?i)^next(?:[ \t]+steps?|[ \t]+action)?[ \t]*:"));

/// A declared blocker; the need/require form only counts within 80 characters on the same line.
static BLOCKER: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?i)\b(?:blocked|can['’]t proceed|cannot proceed|unable to proceed|waiting on|(?:need(?:s|ed)?|requires?)[ \t][^\r\n]{0,80}\b(?:approval|access|credentials?|secret|api key|token|input|clarification))\b",
    )
});

/// Anywhere in the text, this disables text blockers.
static BLOCKER_NEGATION: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?i)\b(?:not blocked|no blockers?|unblocked)\b"));

/// An issue title naming a planning or document deliverable.
static PLANNING_TITLE: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?i)\b(?:plan|planning|analysis|investigation|research|report|proposal|design doc|write-?up)\b",
    )
});

/// An issue description asking to produce a planning or document deliverable.
static PLANNING_DESCRIPTION: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?i)\b(?:create|write|produce|draft|update|revise|prepare)\s+(?:a\s+|the\s+)?(?:plan|analysis|investigation|research report|report|proposal|design doc|write-?up)\b",
    )
});

/// Whether the text announces future work ("I will inspect…", "Next, fix…").
pub fn has_planning_phrase(text: &str) -> bool {
    PLANNING_PHRASE.is_match(text)
}

/// Whether some line of the text is a "Next steps:" / "Plan:" header.
pub fn has_next_steps_header(text: &str) -> bool {
    NEXT_STEPS_HEADER.is_match(text)
}

/// Whether the text describes future work: a planning phrase or a next-steps header.
pub fn describes_future_work(text: &str) -> bool {
    has_planning_phrase(text) || has_next_steps_header(text)
}

/// Whether the text contains a blocker phrase (negation not considered).
pub fn has_blocker_phrase(text: &str) -> bool {
    BLOCKER.is_match(text)
}

/// Whether the text negates blockers ("not blocked", "no blocker(s)", "unblocked").
pub fn has_blocker_negation(text: &str) -> bool {
    BLOCKER_NEGATION.is_match(text)
}

/// Whether the text declares a concrete blocker: a blocker phrase and no negation anywhere.
pub fn declares_blocker(text: &str) -> bool {
    !has_blocker_negation(text) && has_blocker_phrase(text)
}

/// Whether an already-trimmed line can serve as the run's next action.
pub fn is_next_action_line(line: &str) -> bool {
    has_planning_phrase(line) || NEXT_ACTION_LINE.is_match(line)
}

/// Whether the issue asks for a plan, report or similar document, which exempts its runs from
/// `plan_only` (their "plan" *is* the deliverable).
pub fn is_planning_task(title: &str, description: Option<&str>) -> bool {
    PLANNING_TITLE.is_match(title) || description.is_some_and(|d| PLANNING_DESCRIPTION.is_match(d))
}

/// Cuts `text` to at most `max_chars` characters: the first `max_chars - 3` followed by "...".
/// Counts characters, not bytes, so a multi-byte character is never split.
pub fn truncate_with_ellipsis(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let keep = max_chars.saturating_sub(3);
    let mut cut: String = text.chars().take(keep).collect();
    cut.push_str("...");
    cut
}

/// Returns the value trimmed, or `None` when nothing but whitespace is left.
pub fn non_empty_trimmed(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// The string at `key` of an adapter result, trimmed; `None` when absent, not a string or blank.
pub fn field_text<'a>(result: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    non_empty_trimmed(result.get(key).and_then(Value::as_str))
}

/// The first of `keys` with text in the adapter result (see [`field_text`]).
pub fn first_field_text<'a>(result: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|key| field_text(result, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_planning_input_is_a_planning_phrase() {
        assert!(has_planning_phrase(
            "I will inspect the repo next and then implement the fix."
        ));
    }

    #[test]
    fn reference_header_inputs_are_headers() {
        assert!(has_next_steps_header("Plan:\n- read the code"));
        assert!(has_next_steps_header(
            "Done some work.\n  Next steps:\n- inspect files"
        ));
        assert!(has_next_steps_header("next step :"));
        assert!(!has_next_steps_header("The plan: is mid-line"));
        assert!(!has_next_steps_header("Planning: not a header"));
    }

    #[test]
    fn reference_blocker_input_is_a_blocker() {
        assert!(declares_blocker(
            "I cannot proceed because I need access credentials."
        ));
    }

    #[test]
    fn reference_planning_task_titles() {
        assert!(is_planning_task("Draft implementation plan", None));
        assert!(!is_planning_task("Implement feature", None));
    }

    #[test]
    fn planning_lead_ins_and_verbs() {
        for text in [
            "I'll check the logs",
            "I’ll check the logs",
            "I am going to review it",
            "I'm going to open the file",
            "Let me look at this",
            "I need to investigate",
            "Next, fix the test",
            "next I will analyse it",
            "Next I'll analyze it",
            "next start over",
            "My next step is to", // no verb directly after the lead-in
        ] {
            let expected = !text.starts_with("My next step is to");
            assert_eq!(has_planning_phrase(text), expected, "{text}");
        }
        assert!(has_planning_phrase(
            "My next step is first implement the parser"
        ));
        assert!(has_planning_phrase("The next step is work on the UI"));
        assert!(has_planning_phrase("I will first test it"));
    }

    #[test]
    fn planning_verbs_match_whole_words_only() {
        assert!(!has_planning_phrase("I will checking the logs"));
        assert!(!has_planning_phrase("I will testify"));
        assert!(!has_planning_phrase("Hi will inspect")); // "hi will" is not "I will"
        assert!(!has_planning_phrase(
            "I inspected the repo and fixed the bug."
        ));
    }

    #[test]
    fn blocker_phrases() {
        for text in [
            "I am blocked by the migration",
            "I can't proceed",
            "Unable to proceed without it",
            "Waiting on the design team",
            "This needs a decision and approval from the owner",
            "The deploy requires an API key",
            "It needed the prod token",
            "I require clarification",
        ] {
            assert!(declares_blocker(text), "{text}");
        }
    }

    #[test]
    fn need_rule_stays_on_one_line_and_within_80_chars() {
        assert!(!has_blocker_phrase("We need\naccess"));
        let far = format!("We need {} access", "x".repeat(81));
        assert!(!has_blocker_phrase(&far));
        let near = format!("We need {} access", "x".repeat(70));
        assert!(has_blocker_phrase(&near));
        assert!(!has_blocker_phrase("We need tokens")); // whole words: "tokens" is not "token"
    }

    #[test]
    fn negation_disables_blockers() {
        assert!(!declares_blocker("Not blocked; I need access later"));
        assert!(!declares_blocker("No blockers. Waiting on CI."));
        assert!(!declares_blocker("Now unblocked"));
        assert!(has_blocker_negation("no blocker"));
        assert!(!declares_blocker("Everything went fine."));
    }

    #[test]
    fn planning_task_descriptions() {
        assert!(is_planning_task(
            "Feature",
            Some("Please write a design doc for X")
        ));
        assert!(is_planning_task(
            "Feature",
            Some("Prepare the research report")
        ));
        assert!(is_planning_task("Feature", Some("draft writeup")));
        assert!(is_planning_task("Write-up of outage", None));
        assert!(!is_planning_task(
            "Feature",
            Some("Write the code for the plan")
        ));
        assert!(!is_planning_task("Planner service", None));
    }

    #[test]
    fn next_action_lines() {
        assert!(is_next_action_line("Next: run the migrations"));
        assert!(is_next_action_line("Next steps:"));
        assert!(is_next_action_line("next action : deploy"));
        assert!(!is_next_action_line("Plan:"));
        assert!(!is_next_action_line("Nextcloud: configured"));
    }

    #[test]
    fn truncation_is_char_based() {
        assert_eq!(truncate_with_ellipsis("short", 10), "short");
        assert_eq!(truncate_with_ellipsis("abcdefghij", 10), "abcdefghij");
        assert_eq!(truncate_with_ellipsis("abcdefghijk", 10), "abcdefg...");
        let long = "é".repeat(600);
        let cut = truncate_with_ellipsis(&long, 500);
        assert_eq!(cut.chars().count(), 500);
        assert!(cut.ends_with("é..."));
        assert_eq!(truncate_with_ellipsis("abcdef", 2), "...");
    }
}
