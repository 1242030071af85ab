//! Small models change a file and declare the task done without running the tests (0 `exec`
//! calls in 263 tool calls, in the run that motivated this). Under the minimal profile, a
//! turn that would end after a change that no command has checked since gets one reminder to
//! run the tests before it may end (only when the test command is known: the task or the
//! repository named it).

/// Tracks, within one turn, whether files changed since the last command ran.
#[derive(Debug, Default)]
pub struct VerifyNudge {
    changed: bool,
    nudged: bool,
}

impl VerifyNudge {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record one finished tool call.
    pub fn record(&mut self, tool: &str, ok: bool) {
        match tool {
            "edit" | "write" | "apply_patch" if ok => self.changed = true,
            "exec" | "bash" => self.changed = false,
            _ => {}
        }
    }

    /// The reminder to send when the model is about to end the turn, once per turn.
    pub fn before_end(&mut self, test_command: Option<&str>) -> Option<String> {
        // Without a known test command there may be no tests to run: no reminder.
        let cmd = test_command?;
        if !self.changed || self.nudged {
            return None;
        }
        self.nudged = true;
        Some(format!(
            "[idlehands] You changed files but have not run the tests since. Run them now with exec: `{cmd}`. If they fail, fix the code and run them again; when they pass, answer in one sentence."
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_without_a_command_since_gets_one_reminder() {
        let mut v = VerifyNudge::new();
        assert_eq!(v.before_end(Some("npm test")), None);
        v.record("read", true);
        v.record("edit", false);
        assert_eq!(v.before_end(None), None);
        v.record("edit", true);
        assert_eq!(v.before_end(None), None, "no test command, no reminder");
        let note = v.before_end(Some("npm test")).unwrap_or_default();
        assert!(note.contains("exec: `npm test`"), "{note}");
        assert_eq!(v.before_end(Some("npm test")), None);
    }

    #[test]
    fn running_a_command_after_the_change_needs_no_reminder() {
        let mut v = VerifyNudge::new();
        v.record("write", true);
        v.record("exec", false);
        assert_eq!(v.before_end(Some("cargo test")), None);
    }
}
