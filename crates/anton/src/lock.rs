//! `<stateDir>/anton.lock`: one run at a time per state dir.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::AntonError;

pub const LOCK_FILE: &str = "anton.lock";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockInfo {
    pub pid: u32,
    #[serde(default)]
    pub started_at: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// Holds the lock; the file is removed when this is dropped, on every exit path.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AntonError + '_ {
    move |source| AntonError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn create_exclusive(path: &Path, force: bool) -> std::io::Result<()> {
    let info = LockInfo {
        pid: std::process::id(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        force,
    };
    let body = serde_json::to_string(&info).map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(body.as_bytes())
}

/// The command line of a running process, or `None` when no such process exists.
fn process_args(pid: u32) -> Option<String> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if Path::new("/proc/self").exists() {
        let raw = std::fs::read(proc_dir.join("cmdline")).ok()?;
        return Some(String::from_utf8_lossy(&raw).replace('\0', " "));
    }
    let out = std::process::Command::new("ps")
        .args(["-o", "args=", "-p", &pid.to_string()])
        .output()
        .ok()?;
    let args = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !args.is_empty()).then_some(args)
}

/// A lock is stale when its pid is gone or belongs to something that is not anton. A lock held
/// by this very process is never stale: the interactive `/anton` runs in-process, and its
/// command line need not mention anton.
fn is_stale(info: Option<&LockInfo>) -> bool {
    let Some(info) = info else {
        // Unreadable or half-written lock: keep it, the holder may be writing it right now.
        return false;
    };
    if info.pid == std::process::id() {
        return false;
    }
    match process_args(info.pid) {
        None => true,
        Some(args) => !args.to_ascii_lowercase().contains("anton"),
    }
}

pub fn read_lock(state_dir: &Path) -> Option<LockInfo> {
    let raw = std::fs::read_to_string(state_dir.join(LOCK_FILE)).ok()?;
    serde_json::from_str(&raw).ok()
}

/// Creates the lock exclusively; takes over a stale one, or any one with `force`.
pub fn acquire(state_dir: &Path, force: bool) -> Result<LockGuard, AntonError> {
    std::fs::create_dir_all(state_dir).map_err(io_err(state_dir))?;
    let path = state_dir.join(LOCK_FILE);
    match create_exclusive(&path, false) {
        Ok(()) => return Ok(LockGuard { path }),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(&path)(e)),
    }
    if !force && !is_stale(read_lock(state_dir).as_ref()) {
        return Err(AntonError::LockHeld);
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&path)(e)),
    }
    match create_exclusive(&path, force) {
        Ok(()) => Ok(LockGuard { path }),
        // Someone else took it over between our remove and create.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(AntonError::LockHeld),
        Err(e) => Err(io_err(&path)(e)),
    }
}
