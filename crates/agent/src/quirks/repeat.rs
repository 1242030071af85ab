//! Small models get stuck calling the same tool with the same arguments and getting the same
//! answer (the same failing edit forty times). The guard counts identical (tool, arguments,
//! result) triples within a turn: from [`WARN_AT`] on, the result carries a note telling the
//! model to change course; at [`STOP_AT`] the turn ends with an error.

use std::collections::HashMap;

use serde_json::Value;

/// The occurrence of an identical call that first gets the corrective note.
pub const WARN_AT: u32 = 2;
/// The occurrence that ends the turn.
pub const STOP_AT: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Fresh,
    /// Append this note to the tool result.
    Warn(String),
    /// End the turn; `count` identical calls were made.
    Stop {
        count: u32,
    },
}

#[derive(Debug, Default)]
pub struct RepeatGuard {
    seen: HashMap<(String, String, String), u32>,
}

impl RepeatGuard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record one finished call. Arguments are compared as JSON values, so key order and
    /// spacing do not make two calls differ.
    pub fn record(&mut self, name: &str, args: &Value, result: &str) -> Verdict {
        let key = (name.to_string(), canonical(args), result.to_string());
        let n = self.seen.entry(key).or_insert(0);
        *n += 1;
        let n = *n;
        if n >= STOP_AT {
            Verdict::Stop { count: n }
        } else if n >= WARN_AT {
            Verdict::Warn(format!(
                "[idlehands] This is call {n} of `{name}` with exactly these arguments, and it \
                 returned exactly the same result again. Repeating it will not change the \
                 outcome. Instead: {}. The turn ends if this call is repeated {} more time(s).",
                advice(name),
                STOP_AT - n
            ))
        } else {
            Verdict::Fresh
        }
    }
}

/// What to do instead of repeating a call to `tool`.
pub fn advice(tool: &str) -> &'static str {
    match tool {
        "edit" => {
            "read the file again and copy oldText exactly from what it shows now (without line \
             numbers), or use write to replace the whole file"
        }
        "read" => {
            "you already have this content; change the file with edit, or run the tests with exec"
        }
        "write" => "the file already has this content; run the tests with exec, or answer if done",
        "exec" | "bash" => {
            "read the files the output names and change the code before running the command \
             again, or answer if the output already shows success"
        }
        "process" => {
            "call process with action \"list\" to see the live sessionIds, or run the command \
             again with exec"
        }
        "grep" | "glob" => "search with a different pattern, or read a file you already found",
        _ => "use different arguments or another tool, or answer with what you have",
    }
}

/// serde_json's map keeps keys sorted (no `preserve_order` here), so `to_string` is canonical.
fn canonical(v: &Value) -> String {
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identical_calls_warn_then_stop() {
        let mut g = RepeatGuard::new();
        let a = json!({"action": "poll", "id": "p1"});
        assert_eq!(
            g.record("process", &a, "No such process p1"),
            Verdict::Fresh
        );
        assert!(
            matches!(g.record("process", &a, "No such process p1"), Verdict::Warn(w) if w.contains("call 2 of `process`") && w.contains("action \"list\""))
        );
        assert!(matches!(
            g.record("process", &a, "No such process p1"),
            Verdict::Warn(_)
        ));
        assert_eq!(
            g.record("process", &a, "No such process p1"),
            Verdict::Stop { count: STOP_AT }
        );
    }

    #[test]
    fn a_different_argument_or_result_is_a_fresh_call() {
        let mut g = RepeatGuard::new();
        let a = json!({"command": "cargo test"});
        assert_eq!(g.record("exec", &a, "1 failed"), Verdict::Fresh);
        assert_eq!(g.record("exec", &a, "all passed"), Verdict::Fresh);
        assert_eq!(
            g.record("exec", &json!({"command": "ls"}), "1 failed"),
            Verdict::Fresh
        );
        assert_eq!(g.record("read", &a, "1 failed"), Verdict::Fresh);
    }

    #[test]
    fn key_order_does_not_make_arguments_differ() {
        let mut g = RepeatGuard::new();
        let a: Value = serde_json::from_str(r#"{"path":"a","content":"b"}"#).unwrap_or_default();
        let b: Value =
            serde_json::from_str(r#"{ "content": "b", "path": "a" }"#).unwrap_or_default();
        assert_eq!(g.record("write", &a, "ok"), Verdict::Fresh);
        assert!(matches!(g.record("write", &b, "ok"), Verdict::Warn(_)));
    }
}
