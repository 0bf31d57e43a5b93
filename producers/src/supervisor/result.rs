//! The result protocol: how an agent tells its supervisor what it achieved (`docs/supervisor.md`).
//!
//! The agent writes one JSON object to the file named by `RUNLEDGER_RESULT_FILE`, or prints a
//! stdout line `RUNLEDGER_RESULT {json}` (the last such line counts; the file wins over lines).
//! The object becomes `run.finished.result`, except three keys that have their own fields:
//! `usage` (an object), `error` and `error_code` (strings; a non-empty `error` makes an exit
//! code 0 a failure). A result that cannot be used is reported as `result.result_error`.
//! The result file lives in a private directory of the run's, removed when the run ends.

use super::SupervisorError;
use events::RunId;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The stdout marker of a result line (followed by one space and the JSON object).
pub const RESULT_MARKER: &str = "RUNLEDGER_RESULT";
/// The environment variable naming the result file.
pub const RESULT_FILE_ENV: &str = "RUNLEDGER_RESULT_FILE";
/// Largest result accepted, file or line (the whole event must stay below 512 KiB).
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// A result line as found on stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResultLine {
    /// The bytes after the marker.
    Json(Vec<u8>),
    /// A result line of this many bytes, above [`MAX_RESULT_BYTES`]; not kept.
    TooLarge(usize),
}

/// What the agent reported, split into `run.finished` fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentResult {
    /// `run.finished.result` (including `result_error` if the report was unusable).
    pub result: Map<String, Value>,
    pub usage: Option<Map<String, Value>>,
    pub error: Option<String>,
    pub error_code: Option<String>,
}

impl AgentResult {
    fn problem(message: String) -> Self {
        let mut result = Map::new();
        result.insert("result_error".into(), Value::String(message));
        Self {
            result,
            ..Self::default()
        }
    }
}

/// Parses one report (`origin` names where it came from, for the problem text).
pub fn parse(bytes: &[u8], origin: &str) -> AgentResult {
    if bytes.len() > MAX_RESULT_BYTES {
        return AgentResult::problem(format!(
            "{origin}: {} bytes, more than the {MAX_RESULT_BYTES} allowed",
            bytes.len()
        ));
    }
    let mut object = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            return AgentResult::problem(format!(
                "{origin}: expected a JSON object, got {}",
                kind(&other)
            ))
        }
        Err(e) => return AgentResult::problem(format!("{origin}: not valid JSON: {e}")),
    };
    let usage = match object.remove("usage") {
        Some(Value::Object(u)) => Some(u),
        Some(Value::Null) | None => None,
        Some(other) => {
            // Not ours to interpret: keep it where the agent put it.
            object.insert("usage".into(), other);
            None
        }
    };
    let text = |object: &mut Map<String, Value>, key: &str| match object.remove(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
        Some(Value::String(_)) | Some(Value::Null) | None => None,
        Some(other) => {
            object.insert(key.into(), other);
            None
        }
    };
    let error = text(&mut object, "error");
    let error_code = text(&mut object, "error_code");
    AgentResult {
        result: object,
        usage,
        error,
        error_code,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The agent's report: the result file if it exists and is not empty, else the last result
/// line, else nothing.
pub fn collect(file: &Path, line: Option<ResultLine>) -> AgentResult {
    let origin = format!("{RESULT_FILE_ENV} ({})", file.display());
    match std::fs::metadata(file) {
        Ok(meta) if meta.len() > MAX_RESULT_BYTES as u64 => {
            return AgentResult::problem(format!(
                "{origin}: {} bytes, more than the {MAX_RESULT_BYTES} allowed",
                meta.len()
            ))
        }
        Ok(meta) if meta.len() > 0 => {
            return match std::fs::read(file) {
                Ok(bytes) => parse(&bytes, &origin),
                Err(e) => AgentResult::problem(format!("{origin}: could not be read: {e}")),
            }
        }
        _ => {}
    }
    match line {
        Some(ResultLine::Json(bytes)) => parse(&bytes, &format!("the {RESULT_MARKER} line")),
        Some(ResultLine::TooLarge(n)) => AgentResult::problem(format!(
            "the {RESULT_MARKER} line: {n} bytes, more than the {MAX_RESULT_BYTES} allowed"
        )),
        None => AgentResult::default(),
    }
}

/// A private directory for the result file, removed when the run ends.
pub(crate) struct ResultDir(PathBuf);

impl ResultDir {
    pub(crate) fn create(run: RunId) -> Result<Self, SupervisorError> {
        use std::os::unix::fs::DirBuilderExt;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let path = std::env::temp_dir().join(format!("runledger-{run}-{}", &tag[..8]));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| SupervisorError::ResultDir {
                path: path.clone(),
                source,
            })?;
        Ok(Self(path))
    }

    /// The result file the agent is told about (it may never write it).
    pub(crate) fn file(&self) -> PathBuf {
        self.0.join("result.json")
    }
}

impl Drop for ResultDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_report_splits_into_result_usage_and_error() {
        let r = parse(
            br#"{"summary":"done","usage":{"input_tokens":3},"error":"tests fail","error_code":"tests_failed"}"#,
            "x",
        );
        assert_eq!(r.result, obj(json!({"summary": "done"})));
        assert_eq!(r.usage, Some(obj(json!({"input_tokens": 3}))));
        assert_eq!(r.error.as_deref(), Some("tests fail"));
        assert_eq!(r.error_code.as_deref(), Some("tests_failed"));
    }

    #[test]
    fn fields_of_unexpected_types_stay_in_the_result() {
        let r = parse(br#"{"usage":5,"error":{"m":1},"error_code":""}"#, "x");
        assert_eq!(r.result, obj(json!({"usage": 5, "error": {"m": 1}})));
        assert_eq!((r.usage, r.error, r.error_code), (None, None, None));
    }

    #[test]
    fn unusable_reports_become_result_error() {
        for (bytes, expect) in [
            (&b"[1]"[..], "expected a JSON object, got an array"),
            (&b"{oops"[..], "not valid JSON"),
        ] {
            let r = parse(bytes, "the line");
            let text = r.result["result_error"].as_str().unwrap();
            assert!(text.starts_with("the line: "), "{text}");
            assert!(text.contains(expect), "{text}");
        }
        let big = vec![b' '; MAX_RESULT_BYTES + 1];
        assert!(parse(&big, "x").result["result_error"]
            .as_str()
            .unwrap()
            .contains("more than"));
    }

    #[test]
    fn the_file_wins_over_the_line_and_an_empty_file_does_not_count() {
        let dir = std::env::temp_dir().join(format!("rl-result-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("result.json");
        let line = Some(ResultLine::Json(br#"{"summary":"line"}"#.to_vec()));
        assert_eq!(
            collect(&file, line.clone()).result,
            obj(json!({"summary": "line"}))
        );
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            collect(&file, line.clone()).result,
            obj(json!({"summary": "line"}))
        );
        std::fs::write(&file, r#"{"summary":"file"}"#).unwrap();
        assert_eq!(collect(&file, line).result, obj(json!({"summary": "file"})));
        assert_eq!(
            collect(&dir.join("none"), None),
            AgentResult::default(),
            "no report at all"
        );
        let too_large = collect(&dir.join("none"), Some(ResultLine::TooLarge(70_000)));
        assert!(too_large.result["result_error"]
            .as_str()
            .unwrap()
            .contains("70000 bytes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
