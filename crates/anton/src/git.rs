//! The few git operations anton needs, run through the `git` binary in the repo directory.
//!
//! Plan files live under `.agents/tasks/`: they never make the tree "dirty", are never cleaned
//! away, and are never committed.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::error::AntonError;

const PLAN_DIR_REL: &str = ".agents/tasks";

struct GitOutput {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn git(cwd: &Path, args: &[&str]) -> Result<GitOutput, AntonError> {
    let out = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| AntonError::Git {
            args: args.join(" "),
            message: e.to_string(),
        })?;
    Ok(GitOutput {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

async fn git_ok(cwd: &Path, args: &[&str]) -> Result<String, AntonError> {
    let out = git(cwd, args).await?;
    if out.ok {
        Ok(out.stdout)
    } else {
        Err(AntonError::Git {
            args: args.join(" "),
            message: out.stderr.trim().to_string(),
        })
    }
}

fn is_plan_path(file: &str) -> bool {
    file.starts_with(".agents/tasks/") || file.contains("/.agents/tasks/")
}

/// Paths from `git status --porcelain` (repo-relative; renames give the new name).
fn porcelain_paths(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::trim_end)
        .filter(|l| l.len() > 3)
        .map(|l| {
            let raw = l[3..].trim();
            let raw = raw.rsplit(" -> ").next().unwrap_or(raw);
            let raw = raw.trim_matches('"');
            raw.replace('\\', "/").trim_start_matches("./").to_string()
        })
        .filter(|f| !f.is_empty())
        .collect()
}

/// `--untracked-files=all` lists files inside untracked directories one by one, so that a new
/// `.agents/tasks/` next to nothing else is still recognised as plan files only.
async fn status_paths(cwd: &Path) -> Result<Vec<String>, AntonError> {
    let out = git_ok(cwd, &["status", "--porcelain", "--untracked-files=all"]).await?;
    Ok(porcelain_paths(&out))
}

/// Fails with the "clean git working tree" error when anything outside `.agents/tasks/` changed.
pub async fn ensure_repo_clean(cwd: &Path) -> Result<(), AntonError> {
    // Not a repository at all surfaces git's own message rather than "dirty".
    let dirty = status_paths(cwd).await?.iter().any(|f| !is_plan_path(f));
    if dirty {
        return Err(AntonError::DirtyRepo {
            cwd: cwd.to_path_buf(),
        });
    }
    Ok(())
}

/// The repo root (`git rev-parse --show-toplevel`).
pub async fn toplevel(cwd: &Path) -> Option<PathBuf> {
    let out = git_ok(cwd, &["rev-parse", "--show-toplevel"]).await.ok()?;
    Some(PathBuf::from(out.trim()))
}

/// What "the agent changed something" is measured against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub changed_files: Option<usize>,
    pub head: Option<String>,
    pub reflog_top: Option<String>,
}

/// `ignore` are repo-relative paths (the task file) that do not count as changes.
pub async fn snapshot(cwd: &Path, ignore: &[String]) -> Snapshot {
    let changed_files = status_paths(cwd).await.ok().map(|files| {
        files
            .iter()
            .filter(|f| !is_plan_path(f))
            .filter(|f| {
                !ignore
                    .iter()
                    .any(|i| *f == i || f.starts_with(&format!("{i}/")))
            })
            .count()
    });
    let head = git_ok(cwd, &["rev-parse", "HEAD"])
        .await
        .ok()
        .map(|s| s.trim().to_string());
    let reflog_top = git_ok(cwd, &["reflog", "-n", "1", "--format=%H %gs"])
        .await
        .ok()
        .map(|s| s.trim().to_string());
    Snapshot {
        changed_files,
        head,
        reflog_top,
    }
}

/// Throws away everything the agent did: `git reset --hard` and `git clean -fd`, keeping plan
/// files and `node_modules`.
pub async fn hard_clean(cwd: &Path, extra_keep: Option<&str>) -> Result<(), AntonError> {
    // A repo without commits has nothing to reset to; cleaning untracked files still applies.
    if git_ok(cwd, &["rev-parse", "--verify", "-q", "HEAD"])
        .await
        .is_ok()
    {
        git_ok(cwd, &["reset", "--hard"]).await?;
    }
    let mut args = vec!["clean", "-fd", "-e", PLAN_DIR_REL, "-e", "node_modules"];
    if let Some(keep) = extra_keep {
        args.extend(["-e", keep]);
    }
    git_ok(cwd, &args).await?;
    Ok(())
}

/// Saves what a failed task left in the tree on a new branch `branch` (a commit on top of
/// HEAD, made from the index without moving HEAD or switching branches), so the clean-up that
/// follows does not throw it away. Plan files are left out. Returns whether anything was
/// saved.
pub async fn keep_work(
    cwd: &Path,
    branch: &str,
    message: &str,
    extra_unstage: Option<&str>,
) -> Result<bool, AntonError> {
    git_ok(cwd, &["add", "-A"]).await?;
    let _ = git(cwd, &["restore", "--staged", "--", PLAN_DIR_REL]).await?;
    if let Some(p) = extra_unstage {
        let _ = git(cwd, &["restore", "--staged", "--", p]).await?;
    }
    let staged = git(cwd, &["diff", "--cached", "--quiet"]).await?;
    if staged.code == Some(0) {
        return Ok(false);
    }
    let tree = git_ok(cwd, &["write-tree"]).await?;
    let tree = tree.trim();
    let head = git_ok(cwd, &["rev-parse", "--verify", "-q", "HEAD"])
        .await
        .ok();
    let mut args = vec!["commit-tree", tree, "-m", message];
    if let Some(h) = head.as_deref().map(str::trim) {
        args.extend(["-p", h]);
    }
    let commit = git_ok(cwd, &args).await?;
    git_ok(cwd, &["branch", branch, commit.trim()]).await?;
    Ok(true)
}

/// `git add -A`, unstage plan files, and commit `anton: <task>` when anything is staged.
/// Returns whether a commit was made.
pub async fn commit_all_if_dirty(
    cwd: &Path,
    task_text: &str,
    extra_unstage: Option<&str>,
) -> Result<bool, AntonError> {
    git_ok(cwd, &["add", "-A"]).await?;
    // Fails harmlessly when nothing under the plan dir is staged or HEAD does not exist yet.
    let _ = git(cwd, &["restore", "--staged", "--", PLAN_DIR_REL]).await?;
    if let Some(p) = extra_unstage {
        let _ = git(cwd, &["restore", "--staged", "--", p]).await?;
    }
    let staged = git(cwd, &["diff", "--cached", "--quiet"]).await?;
    // With no HEAD, `diff --cached` compares against the empty tree: exit 1 = something staged.
    if staged.code == Some(0) {
        return Ok(false);
    }
    let message = format!("anton: {task_text}");
    git_ok(cwd, &["commit", "-q", "-m", &message]).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_parsing() {
        let out =
            " M src/a.rs\n?? .agents/tasks/task-1-2.md\nR  old.rs -> new.rs\n?? \"sp ace.txt\"\n";
        assert_eq!(
            porcelain_paths(out),
            [
                "src/a.rs",
                ".agents/tasks/task-1-2.md",
                "new.rs",
                "sp ace.txt"
            ]
        );
        assert!(is_plan_path(".agents/tasks/x.md"));
        assert!(is_plan_path("docs/.agents/tasks/x.md"));
        assert!(!is_plan_path(".agents/other.md"));
    }
}
