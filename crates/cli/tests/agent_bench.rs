//! `bench/agent/run.py --fake` against the real `idlehands` binary: each task's scripted
//! solution must pass, a script that only claims success must fail, and a model repeating a
//! failing edit must end the turn with a non-zero exit. This keeps the bench harness honest:
//! a pass comes from the task's tests, not from what the model says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/agent")
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

/// Run the bench in fake mode; (stdout, results from `--json`).
fn bench(extra: &[&str]) -> (String, Vec<Value>) {
    let out_dir = tempfile::tempdir().unwrap();
    let results = out_dir.path().join("results.json");
    let out = Command::new("python3")
        .arg(bench_dir().join("run.py"))
        .args(["--fake", "--bin", env!("CARGO_BIN_EXE_idlehands"), "--json"])
        .arg(&results)
        .args(extra)
        .env_remove("AGENT_BENCH_BASE_URL")
        .env_remove("AGENT_BENCH_MODEL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bench failed to run: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    (stdout, results)
}

#[test]
fn every_scripted_solution_passes_its_tests() {
    if !have("python3") {
        eprintln!("python3 is not installed: the bench cannot run here, skipped");
        return;
    }
    let tasks = std::fs::read_dir(bench_dir().join("tasks"))
        .unwrap()
        .count();
    assert!(tasks >= 10, "{tasks} tasks");
    let (stdout, results) = bench(&[]);
    assert_eq!(results.len(), tasks);
    let node = have("node");
    for r in &results {
        let js = r["task"].as_str().unwrap().starts_with("js-");
        if js && !node {
            assert_eq!(r["status"], "skipped", "{r}");
            continue;
        }
        assert_eq!(r["status"], "pass", "{r}\n{stdout}");
        assert_eq!(r["agent_exit"], 0, "{r}");
        assert!(r["tool_calls"].as_u64().unwrap() >= 3, "{r}");
        assert!(r["tokens_in"].as_u64().unwrap() > 0, "{r}");
        // The fake offers nothing the scripts did not need, and saw no protocol error.
        assert_eq!(r["fake_errors"], serde_json::json!([]), "{r}");
    }
    let ran = results.iter().filter(|r| r["status"] != "skipped").count();
    assert!(
        stdout.contains(&format!("pass_rate={ran}/{ran} ")),
        "{stdout}"
    );
}

#[test]
fn a_model_that_only_claims_success_fails() {
    if !have("python3") {
        eprintln!("python3 is not installed: the bench cannot run here, skipped");
        return;
    }
    let script = bench_dir().join("scripts/claims-done.json");
    let (stdout, results) = bench(&[
        "--fake-script",
        script.to_str().unwrap(),
        "py-area-operator",
        "py-rename-function",
    ]);
    assert!(stdout.contains("pass_rate=0/2 "), "{stdout}");
    for r in &results {
        assert_eq!(r["status"], "fail", "{r}");
        assert_eq!(r["tool_calls"], 0, "{r}");
    }
}

#[test]
fn a_repeated_failing_edit_ends_the_turn_non_zero_with_its_usage() {
    if !have("python3") {
        eprintln!("python3 is not installed: the bench cannot run here, skipped");
        return;
    }
    let script = bench_dir().join("scripts/repeats-a-bad-edit.json");
    let (_, results) = bench(&[
        "--fake-script",
        script.to_str().unwrap(),
        "py-area-operator",
    ]);
    let r = &results[0];
    assert_eq!(r["status"], "fail", "{r}");
    assert_eq!(r["agent_exit"], 1, "{r}");
    assert_eq!(r["turn_end"], "error", "{r}");
    assert_eq!(r["tool_calls"], 4, "{r}");
    assert!(
        r["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("loop: the model called `edit` 4 times"),
        "{r}"
    );
    // The failed turn's four model calls are still counted.
    assert!(r["tokens_in"].as_u64().unwrap() > 0, "{r}");
}
