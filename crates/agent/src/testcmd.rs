//! The command that runs a workspace's tests, for the small-model prompt: a small model runs
//! the tests when the prompt names the exact command, and rarely when it only says "test".
//! Taken from the task when it names one, else from the files the repository has.

use std::path::Path;

/// Commands recognised in a task's text, most specific first.
const KNOWN: &[&str] = &[
    "python3 -m pytest",
    "python -m pytest",
    "python3 -m unittest",
    "python -m unittest",
    "pytest",
    "npm test",
    "npm run test",
    "node --test",
    "yarn test",
    "pnpm test",
    "cargo test",
    "go test",
    "make test",
];

/// The test command for `task` in `workspace`, and where it came from.
pub fn detect(workspace: &Path, task: Option<&str>) -> Option<(String, &'static str)> {
    task.and_then(from_task)
        .map(|c| (c, "task"))
        .or_else(|| from_repo(workspace).map(|c| (c, "repository")))
}

/// A backquoted command that runs tests (`` `pytest -k add` ``), else a known command named
/// in plain text.
pub fn from_task(task: &str) -> Option<String> {
    let quoted = task
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::trim)
        .find(|s| !s.contains('\n') && KNOWN.iter().any(|k| s.starts_with(k)));
    if let Some(q) = quoted {
        return Some(q.to_string());
    }
    KNOWN
        .iter()
        .find(|k| {
            task.match_indices(*k).any(|(i, _)| {
                let before = task[..i].chars().next_back();
                let after = task[i + k.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric())
                    && !after.is_some_and(|c| c.is_alphanumeric())
            })
        })
        .map(|k| k.to_string())
}

/// What the repository's files show: a pytest configuration, an npm `test` script, a Cargo
/// or Go module, a `test` make target, or Python test files (run with unittest, which needs
/// nothing installed, unless they import pytest).
pub fn from_repo(ws: &Path) -> Option<String> {
    let read = |name: &str| std::fs::read_to_string(ws.join(name)).ok();
    if ws.join("pytest.ini").is_file()
        || read("pyproject.toml").is_some_and(|t| t.contains("[tool.pytest"))
        || read("setup.cfg").is_some_and(|t| t.contains("[tool:pytest]"))
        || read("tox.ini").is_some_and(|t| t.contains("[pytest]"))
    {
        return Some("python3 -m pytest -q".into());
    }
    if let Some(pkg) = read("package.json")
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&pkg)
        && let Some(t) = v.pointer("/scripts/test").and_then(|t| t.as_str())
        && !t.contains("no test specified")
    {
        return Some("npm test".into());
    }
    if ws.join("Cargo.toml").is_file() {
        return Some("cargo test".into());
    }
    if ws.join("go.mod").is_file() {
        return Some("go test ./...".into());
    }
    if read("Makefile").is_some_and(|t| t.lines().any(|l| l.starts_with("test:"))) {
        return Some("make test".into());
    }
    let py_tests: Vec<String> = [ws.to_path_buf(), ws.join("tests")]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with("test") && name.ends_with(".py"))
                .then(|| std::fs::read_to_string(e.path()).unwrap_or_default())
        })
        .collect();
    if py_tests.is_empty() {
        return None;
    }
    if py_tests.iter().any(|t| t.contains("import pytest")) {
        Some("python3 -m pytest -q".into())
    } else if ws.join("tests").is_dir() && !ws.join("tests/__init__.py").is_file() {
        Some("python3 -m unittest discover -s tests".into())
    } else {
        Some("python3 -m unittest".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_names_the_command() {
        assert_eq!(
            from_task("Fix add. Run `pytest -q tests/test_calc.py` to check."),
            Some("pytest -q tests/test_calc.py".into())
        );
        assert_eq!(from_task("make npm test pass"), Some("npm test".into()));
        assert_eq!(from_task("the pytestish thing"), None);
        assert_eq!(from_task("fix the bug in `calc.py`"), None);
    }

    #[test]
    fn the_repository_shows_the_command() {
        let d = std::env::temp_dir().join(format!("ih-testcmd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_default();
        assert_eq!(from_repo(&d), None);
        std::fs::write(d.join("test_calc.py"), "import unittest\n").unwrap_or_default();
        assert_eq!(from_repo(&d), Some("python3 -m unittest".into()));
        std::fs::write(
            d.join("package.json"),
            r#"{"scripts": {"test": "node --test"}}"#,
        )
        .unwrap_or_default();
        assert_eq!(from_repo(&d), Some("npm test".into()));
        std::fs::write(d.join("pytest.ini"), "[pytest]\n").unwrap_or_default();
        assert_eq!(
            detect(&d, Some("fix it")),
            Some(("python3 -m pytest -q".into(), "repository"))
        );
        assert_eq!(
            detect(&d, Some("fix it, then `cargo test` passes")),
            Some(("cargo test".into(), "task"))
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
