//! Stop metadata: why a run stopped and what timeout applied, derived from its terminal status,
//! error and the agent's adapter type and config (reference §2). Pure, so the fold, a replay
//! and the reconciler all derive the same values.

use serde_json::{json, Map, Value};

/// The timeout an agent's adapter config gives its runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutPolicy {
    pub effective_timeout_sec: i32,
    /// Only for `http` adapters, which are configured in milliseconds.
    pub effective_timeout_ms: Option<i64>,
    pub configured: bool,
    /// `config` when the key is present in the adapter config, else `default`.
    pub source: &'static str,
}

/// Stop metadata merged into a run's result on every terminal transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopMetadata {
    pub stop_reason: &'static str,
    pub timeout: TimeoutPolicy,
    pub timeout_fired: bool,
}

/// Reads a number or numeric string; floors it; negatives become 0; anything else is `None`.
fn read_number(value: &Value) -> Option<i64> {
    let number = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !number.is_finite() {
        return None;
    }
    Some(number.floor().max(0.0).min(i64::MAX as f64) as i64)
}

/// The timeout policy of an adapter (`None` adapter type = agent not registered yet).
pub fn timeout_policy(adapter_type: Option<&str>, config: &Map<String, Value>) -> TimeoutPolicy {
    let (key, default) = match adapter_type {
        Some("http") => ("timeout_ms", 0),
        Some("openclaw_gateway") => ("timeout_sec", 120),
        _ => ("timeout_sec", 0),
    };
    let present = config.get(key);
    let value = present.and_then(read_number).unwrap_or(default);
    let source = if present.is_some() {
        "config"
    } else {
        "default"
    };
    if key == "timeout_ms" {
        TimeoutPolicy {
            effective_timeout_sec: i32::try_from(value / 1000).unwrap_or(i32::MAX),
            effective_timeout_ms: Some(value),
            configured: value > 0,
            source,
        }
    } else {
        TimeoutPolicy {
            effective_timeout_sec: i32::try_from(value).unwrap_or(i32::MAX),
            effective_timeout_ms: None,
            configured: value > 0,
            source,
        }
    }
}

/// Why a run in terminal `status` stopped (first match of reference §2).
pub fn stop_reason(status: &str, error_code: Option<&str>, error: Option<&str>) -> &'static str {
    match status {
        "succeeded" => "completed",
        "timed_out" => "timeout",
        "failed" if error_code == Some("process_lost") => "process_lost",
        "cancelled" => {
            let message = error.unwrap_or_default().to_lowercase();
            if message.contains("budget") {
                "budget_paused"
            } else if message.contains("pause") {
                "paused"
            } else {
                "cancelled"
            }
        }
        _ => "adapter_failed",
    }
}

/// Stop metadata of a run that ended in `status`.
pub fn stop_metadata(
    status: &str,
    error_code: Option<&str>,
    error: Option<&str>,
    adapter_type: Option<&str>,
    config: &Map<String, Value>,
) -> StopMetadata {
    let stop_reason = stop_reason(status, error_code, error);
    StopMetadata {
        stop_reason,
        timeout: timeout_policy(adapter_type, config),
        timeout_fired: stop_reason == "timeout",
    }
}

impl StopMetadata {
    /// Merges the stop metadata keys into a result object; other keys survive.
    pub fn merge_into(&self, result: &mut Map<String, Value>) {
        result.insert("stop_reason".into(), json!(self.stop_reason));
        result.insert(
            "effective_timeout_sec".into(),
            json!(self.timeout.effective_timeout_sec),
        );
        result.insert("timeout_configured".into(), json!(self.timeout.configured));
        result.insert("timeout_source".into(), json!(self.timeout.source));
        result.insert("timeout_fired".into(), json!(self.timeout_fired));
        if let Some(ms) = self.timeout.effective_timeout_ms {
            result.insert("effective_timeout_ms".into(), json!(ms));
        }
    }
}

/// The error code of a run that ended with `outcome`, given the code its producer reported.
pub fn error_code_for(outcome: &str, reported: Option<&str>) -> Option<String> {
    match outcome {
        "succeeded" => None,
        "timed_out" => Some("timeout".into()),
        "cancelled" => Some(reported.unwrap_or("cancelled").into()),
        _ => Some(reported.unwrap_or("adapter_failed").into()),
    }
}

/// Whether a lost run gets its one automatic retry: a process was tracked (pid or group known)
/// and the run is not itself the retry. runledger records a pid for every supervised process,
/// whatever the adapter, so a known pid or group is what "pid-tracked" means here.
pub fn process_loss_retry_due(retry_count: i32, pid: Option<i32>, pgid: Option<i32>) -> bool {
    retry_count < 1 && (pid.is_some() || pgid.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn local_and_process_adapters_default_to_no_timeout() {
        for adapter in ["codex_local", "claude_local", "process"] {
            let m = stop_metadata("succeeded", None, None, Some(adapter), &Map::new());
            assert_eq!(m.stop_reason, "completed");
            assert_eq!(m.timeout.effective_timeout_sec, 0);
            assert!(!m.timeout.configured);
            assert_eq!(m.timeout.source, "default");
            assert!(!m.timeout_fired);
        }
    }

    #[test]
    fn configured_timeout_that_fired() {
        let m = stop_metadata(
            "timed_out",
            Some("timeout"),
            None,
            Some("codex_local"),
            &config(json!({"timeout_sec": 45})),
        );
        assert_eq!(
            (
                m.stop_reason,
                m.timeout.effective_timeout_sec,
                m.timeout.configured,
                m.timeout.source,
                m.timeout_fired
            ),
            ("timeout", 45, true, "config", true)
        );
    }

    #[test]
    fn openclaw_gateway_defaults_to_120_seconds() {
        let m = stop_metadata(
            "succeeded",
            None,
            None,
            Some("openclaw_gateway"),
            &Map::new(),
        );
        assert_eq!(
            (
                m.stop_reason,
                m.timeout.effective_timeout_sec,
                m.timeout.configured,
                m.timeout.source,
                m.timeout_fired
            ),
            ("completed", 120, true, "default", false)
        );
    }

    #[test]
    fn http_reads_milliseconds_as_number_or_string() {
        let p = timeout_policy(Some("http"), &config(json!({"timeout_ms": "2500"})));
        assert_eq!(
            (
                p.effective_timeout_sec,
                p.effective_timeout_ms,
                p.configured,
                p.source
            ),
            (2, Some(2500), true, "config")
        );
        let p = timeout_policy(Some("http"), &Map::new());
        assert_eq!(
            (
                p.effective_timeout_sec,
                p.effective_timeout_ms,
                p.configured
            ),
            (0, Some(0), false)
        );
    }

    #[test]
    fn floors_negatives_and_unparsable_values() {
        let p = timeout_policy(Some("codex_local"), &config(json!({"timeout_sec": 12.9})));
        assert_eq!(p.effective_timeout_sec, 12);
        let p = timeout_policy(Some("codex_local"), &config(json!({"timeout_sec": -5})));
        assert_eq!(
            (p.effective_timeout_sec, p.configured, p.source),
            (0, false, "config")
        );
        let p = timeout_policy(
            Some("openclaw_gateway"),
            &config(json!({"timeout_sec": "soon"})),
        );
        assert_eq!((p.effective_timeout_sec, p.source), (120, "config"));
    }

    #[test]
    fn cancellation_messages_map_to_stop_reasons() {
        assert_eq!(
            stop_reason(
                "cancelled",
                Some("cancelled"),
                Some("Cancelled due to budget pause")
            ),
            "budget_paused"
        );
        assert_eq!(
            stop_reason("cancelled", None, Some("Budget hard stop reached")),
            "budget_paused"
        );
        assert_eq!(
            stop_reason("cancelled", None, Some("Cancelled due to agent pause")),
            "paused"
        );
        assert_eq!(
            stop_reason("cancelled", None, Some("Cancelled by control plane")),
            "cancelled"
        );
        assert_eq!(
            stop_reason("failed", Some("process_lost"), None),
            "process_lost"
        );
        assert_eq!(
            stop_reason("failed", Some("adapter_failed"), None),
            "adapter_failed"
        );
    }

    #[test]
    fn merge_keeps_other_keys() {
        let mut result = config(json!({"summary": "done"}));
        stop_metadata("succeeded", None, None, Some("http"), &Map::new()).merge_into(&mut result);
        assert_eq!(result["summary"], "done");
        assert_eq!(result["stop_reason"], "completed");
        assert_eq!(result["effective_timeout_ms"], 0);
    }

    #[test]
    fn error_codes_follow_the_outcome() {
        assert_eq!(error_code_for("succeeded", Some("x")), None);
        assert_eq!(
            error_code_for("timed_out", None).as_deref(),
            Some("timeout")
        );
        assert_eq!(
            error_code_for("cancelled", None).as_deref(),
            Some("cancelled")
        );
        assert_eq!(
            error_code_for("failed", None).as_deref(),
            Some("adapter_failed")
        );
        assert_eq!(
            error_code_for("failed", Some("agent_not_found")).as_deref(),
            Some("agent_not_found")
        );
    }

    #[test]
    fn exactly_one_process_loss_retry() {
        assert!(process_loss_retry_due(0, Some(42), None));
        assert!(process_loss_retry_due(0, None, Some(42)));
        assert!(!process_loss_retry_due(0, None, None));
        assert!(!process_loss_retry_due(1, Some(42), Some(42)));
    }
}
