//! The messages anton sends to each agent call, and the checks on what comes back.

use std::path::Path;

/// Doc review/verify tasks may legitimately change nothing, and need no test run.
pub fn allows_no_repo_changes(task: &str) -> bool {
    let t = task.to_lowercase();
    let doc = ["doc", "readme", "changelog", ".md"]
        .iter()
        .any(|w| t.contains(w));
    let review = [
        "review",
        "verify",
        "verification",
        "validate",
        "audit",
        "proofread",
        "double-check",
    ]
    .iter()
    .any(|w| t.contains(w));
    doc && review
}

/// Version bumps need no test run either.
pub fn skip_tests(task: &str) -> bool {
    let t = task.to_lowercase();
    allows_no_repo_changes(task) || (t.contains("bump") && t.contains("version"))
}

fn test_rule(task: &str) -> &'static str {
    if skip_tests(task) {
        "Do not run the test suite for this task; it does not change behaviour."
    } else {
        "Run targeted tests for what you changed."
    }
}

pub fn direct_prompt(task: &str) -> String {
    format!(
        "You are executing one item from a managed checklist.\n\
         Task: {task}\n\
         Rules:\n\
         1) Make the minimal changes this task needs, nothing beyond it.\n\
         2) {}\n\
         3) Reply with a concise summary of what you changed.",
        test_rule(task)
    )
}

pub fn implementation_prompt(task: &str, plan_file: &Path) -> String {
    format!(
        "Complete this task: {task}\n\n\
         An implementation plan is available at: {}\n\
         Read the plan first and follow it; depart from it only where it is clearly wrong.\n\n\
         You MUST use the edit or write tool to change the repository files; describing the change is not enough.\n\
         {}\n\
         Reply with a concise summary of what you changed.",
        plan_file.display(),
        test_rule(task)
    )
}

pub fn implementation_retry_prompt(task: &str, plan_file: Option<&Path>) -> String {
    let plan = plan_file
        .map(|p| format!("The implementation plan is at: {}\n", p.display()))
        .unwrap_or_default();
    format!(
        "The previous implementation attempt for this task made zero repository changes.\n\
         Task: {task}\n{plan}\
         Make the required changes now, using the edit or write tool on the repository files. \
         Do not only describe them.\n\
         Reply with a concise summary of what you changed."
    )
}

fn context_section(context: Option<(&Path, &str)>) -> String {
    match context {
        Some((path, text)) => format!(
            "\n## CODEBASE CONTEXT (from {})\n{}\n",
            path.display(),
            truncate(text, 20_000)
        ),
        None => String::new(),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub fn discovery_prompt(
    task: &str,
    task_file: &Path,
    plan_file: &Path,
    context: Option<(&Path, &str)>,
) -> String {
    let plan = plan_file.display();
    format!(
        "You are the discovery (pre-flight) step of a checklist runner. Do not implement anything \
         and do not modify source files; the only file you may write is the plan file below.\n\n\
         Task file: {}\n\
         Task: {task}\n{}\n\
         If, after checking the code with your tools, you are certain the task is already done, \
         reply with exactly: {{\"status\":\"complete\",\"filename\":\"\"}}\n\n\
         Otherwise:\n\
         1. Read the relevant code.\n\
         2. Write an implementation plan in markdown to: {plan}\n\
         \x20  It must start with a `# ` heading and cover: the task (verbatim), What needs to \
         change, Implementation approach (concrete steps), Files to modify, How to verify.\n\
         3. Check that the file exists and is not empty.\n\
         4. Reply with exactly: {{\"status\":\"incomplete\",\"filename\":\"{plan}\"}}\n\n\
         Reply with the JSON object only: no code fences, no commentary.",
        task_file.display(),
        context_section(context),
    )
}

pub fn discovery_repair_prompt(task: &str, task_file: &Path, plan_file: &Path) -> String {
    let plan = plan_file.display();
    format!(
        "RETRY: the previous discovery reply did not leave a usable plan file.\n\
         1) Write the implementation plan (markdown, starting with a `# ` heading) to: {plan}\n\
         2) Check that the file exists and is not empty.\n\
         3) Reply with only this JSON: {{\"status\":\"incomplete\",\"filename\":\"{plan}\"}}\n\
         If the task is already complete, reply with only: {{\"status\":\"complete\",\"filename\":\"\"}}\n\
         No code fences and no commentary.\n\
         Task file: {}\n\
         Task: {task}",
        task_file.display()
    )
}

pub fn review_prompt(plan_file: &Path) -> String {
    let plan = plan_file.display();
    format!(
        "Review the implementation plan at:\n{plan}\n\n\
         Read it critically, as if a junior developer wrote it: look for missed edge cases, \
         existing code that should be reused, vague steps and missing tests.\n\
         Rewrite the SAME file in place with the improvements.\n\n\
         When the file is updated, reply with only: {{\"status\":\"ready\",\"filename\":\"{plan}\"}}\n\
         Never reply ready unless the file exists and has content. JSON only, no code fences."
    )
}

pub fn codebase_analysis_prompt(context_file: &Path) -> String {
    format!(
        "Survey this repository before a series of coding tasks. Do not change any source file.\n\
         Write a concise markdown overview to: {}\n\
         Cover: purpose, layout (key directories and files), languages and build tools, how to \
         build and run the tests, coding conventions, and anything surprising.\n\
         Reply with a one-line confirmation when the file is written.",
        context_file.display()
    )
}

// ─── Reading replies ────────────────────────────────────────────────────────

/// The first JSON object in a reply: the whole text, a fenced block, or the outermost braces.
pub fn extract_json_object(text: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let parse = |s: &str| match serde_json::from_str::<serde_json::Value>(s.trim()) {
        Ok(serde_json::Value::Object(m)) => Some(m),
        _ => None,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    if let Some(m) = parse(trimmed) {
        return Some(m);
    }
    if let Some(inner) = fenced_block(trimmed, &["json", ""])
        && let Some(m) = parse(inner)
    {
        return Some(m);
    }
    let first = trimmed.find('{')?;
    let last = trimmed.rfind('}')?;
    (last > first)
        .then(|| parse(&trimmed[first..=last]))
        .flatten()
}

/// The body of the first ``` fence whose info string is one of `langs` ("" = none).
fn fenced_block<'a>(text: &'a str, langs: &[&str]) -> Option<&'a str> {
    let start = text.find("```")?;
    let after = &text[start + 3..];
    let nl = after.find('\n')?;
    let info = after[..nl].trim().to_ascii_lowercase();
    if !langs.contains(&info.as_str()) {
        return None;
    }
    let body = &after[nl + 1..];
    let end = body.find("```")?;
    Some(&body[..end])
}

pub fn json_status(obj: &serde_json::Map<String, serde_json::Value>) -> String {
    obj.get("status")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub fn json_str<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a str> {
    obj.get(key)
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn looks_like_status_json_only(text: &str) -> bool {
    let t = text.trim();
    if !t.starts_with('{') || !t.ends_with('}') {
        return false;
    }
    match serde_json::from_str::<serde_json::Value>(t) {
        Ok(serde_json::Value::Object(m)) => {
            m.len() <= 3 && m.contains_key("status") && m.contains_key("filename")
        }
        _ => false,
    }
}

/// A plan worth implementing from: long enough, not just the status JSON, and structured.
pub fn is_useful_plan_text(text: &str) -> bool {
    let t = text.trim();
    if t.chars().count() < 120 || looks_like_status_json_only(t) {
        return false;
    }
    let heading = t.lines().any(|l| {
        let h = l.trim_start_matches('#');
        h.len() < l.len() && h.starts_with(char::is_whitespace)
    });
    let lower = t.to_lowercase();
    heading
        || [
            "implementation approach",
            "what needs to change",
            "files to modify",
            "how to verify",
        ]
        .iter()
        .any(|p| lower.contains(p))
}

/// A plan in a reply: an explicit `planMarkdown`/`plan` field, a markdown fence, or the text.
pub fn plan_text_from_reply(
    parsed: Option<&serde_json::Map<String, serde_json::Value>>,
    raw: &str,
) -> Option<String> {
    if let Some(p) = parsed.and_then(|o| json_str(o, "planMarkdown").or(json_str(o, "plan")))
        && is_useful_plan_text(p)
    {
        return Some(p.to_string());
    }
    let candidate = fenced_block(raw.trim(), &["markdown", "md", ""]).unwrap_or(raw);
    let candidate = candidate.trim();
    is_useful_plan_text(candidate).then(|| candidate.to_string())
}

pub fn is_plan_file_valid(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() >= 20 => std::fs::read_to_string(path)
            .map(|t| is_useful_plan_text(&t))
            .unwrap_or(false),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_review_tasks_are_exempt() {
        assert!(allows_no_repo_changes("Review the README for accuracy"));
        assert!(allows_no_repo_changes(
            "Verify docs/setup.md matches the CLI"
        ));
        assert!(!allows_no_repo_changes("Review the parser"));
        assert!(!allows_no_repo_changes("Write docs for the parser"));
        assert!(skip_tests("Bump version to 1.2.0"));
        assert!(!skip_tests("Add a version flag"));
        assert!(direct_prompt("Bump version to 2").contains("Do not run the test suite"));
        assert!(direct_prompt("Add x").contains("Run targeted tests"));
    }

    #[test]
    fn json_extraction() {
        let s = |t: &str| extract_json_object(t).map(|o| json_status(&o));
        assert_eq!(
            s(r#"{"status":"complete","filename":""}"#).as_deref(),
            Some("complete")
        );
        assert_eq!(
            s("Done.\n```json\n{\"status\":\"incomplete\",\"filename\":\"a.md\"}\n```").as_deref(),
            Some("incomplete")
        );
        assert_eq!(
            s(r#"Sure: {"status":"ready"} ok"#).as_deref(),
            Some("ready")
        );
        assert_eq!(s("no json here"), None);
    }

    #[test]
    fn plan_usefulness() {
        let plan = format!("# Plan\n\n## What needs to change\n{}", "x".repeat(120));
        assert!(is_useful_plan_text(&plan));
        assert!(!is_useful_plan_text("# Short"));
        assert!(!is_useful_plan_text(&"words ".repeat(40)));
        let fenced = format!("Here you go:\n```markdown\n{plan}\n```\n");
        assert_eq!(
            plan_text_from_reply(None, &fenced).as_deref(),
            Some(plan.as_str())
        );
    }
}
