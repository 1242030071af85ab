#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The agent's everyday surface as processes against the fake upstream: `agent --json`'s one
//! result object, an explicit `--model` that fails (and `--allow-fallback`), sessions listed
//! and resumed, tool policy from the config.

use std::path::PathBuf;
use std::process::Command;

use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::{Value, json};

mod agent_process;
use agent_process::{command, run};

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        Self { dir }
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }
    fn state(&self) -> PathBuf {
        self.home().join(".idlehands")
    }
    fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.state()).unwrap();
        std::fs::write(self.state().join("idlehands.json"), text).unwrap();
    }
    fn cmd(&self) -> Command {
        let mut c = command(&self.ws(), &self.home(), &[]);
        c.env("LITELLM_API_KEY", "sk-test");
        c
    }
    fn sessions_dir(&self) -> PathBuf {
        self.state().join("agents/main/sessions")
    }
}

/// `litellm/m1` primary with `litellm/m2` as its fallback, plus `extra` top-level keys.
fn config_for(base: &str, extra: &str) -> String {
    format!(
        r#"{{ models: {{ providers: {{ litellm: {{ baseUrl: "{base}", apiKey: "${{LITELLM_API_KEY}}", api: "openai-completions",
             models: [{{ id: "m1", name: "M1" }}, {{ id: "m2", name: "M2" }}] }} }} }},
             agents: {{ defaults: {{ model: {{ primary: "litellm/m1", fallbacks: ["litellm/m2"] }} }} }} {extra} }}"#
    )
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn agent_json_prints_one_result_object() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();
    h.write_config(&config_for(&up.base_url(), ""));
    up.push(Reply::text("Forty-two.").with_usage(30, 4));
    let mut c = h.cmd();
    c.args(["agent", "-m", "answer?", "--json", "--session-id", "j-1"]);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not one JSON object: {e}"));
    assert_eq!(r["payloads"], json!([{"text": "Forty-two."}]));
    let meta = &r["meta"];
    assert_eq!(meta["stopReason"], "stop");
    assert_eq!(meta["aborted"], false);
    assert!(meta["durationMs"].is_u64());
    assert_eq!(meta["agentMeta"]["sessionId"], "j-1");
    assert_eq!(meta["agentMeta"]["provider"], "litellm");
    assert_eq!(meta["agentMeta"]["model"], "m1");
    assert_eq!(meta["agentMeta"]["usage"]["input"], 30);
    assert_eq!(meta["agentMeta"]["usage"]["output"], 4);
    assert!(meta.get("error").is_none());

    // A failure is one object too, with the error, and a non-zero exit.
    up.push(Reply::error(
        401,
        "Authentication Error, Invalid proxy server token passed.",
    ));
    let mut c = h.cmd();
    c.args(["agent", "-m", "again", "--json"]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["payloads"], json!([]));
    assert_eq!(r["meta"]["stopReason"], "error");
    assert_eq!(r["meta"]["error"]["kind"], "auth");
    // An auth refusal is not handed to the fallback.
    assert_eq!(up.served(), 2);

    // --json-stream keeps the event lines.
    up.push(Reply::text("streamed"));
    let mut c = h.cmd();
    c.args(["agent", "-m", "s", "--json-stream"]);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let types: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("turn_start"));
    assert_eq!(types.last().map(String::as_str), Some("turn_end"));
}

#[tokio::test]
async fn an_explicit_model_that_fails_is_an_error_unless_fallback_is_allowed() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();
    h.write_config(&config_for(&up.base_url(), ""));
    up.push(Reply::error(404, "The model `m2` does not exist"));
    let mut c = h.cmd();
    c.args(["agent", "-m", "hi", "--model", "litellm/m2"]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--allow-fallback"),
        "{}",
        stderr(&out)
    );
    assert_eq!(up.served(), 1);
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());

    up.push(Reply::error(404, "The model `m2` does not exist"));
    up.push(Reply::text("from the primary"));
    let mut c = h.cmd();
    c.args([
        "agent",
        "-m",
        "hi",
        "--model",
        "litellm/m2",
        "--allow-fallback",
    ]);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "from the primary"
    );
    assert!(
        stderr(&out).contains("[fallback] litellm/m2 failed"),
        "{}",
        stderr(&out)
    );
    let reqs = up.requests();
    assert_eq!(reqs[1].body["model"], "m2");
    assert_eq!(reqs[2].body["model"], "m1");

    // Without --model, the configured fallback answers as before.
    up.push(Reply::error(404, "The model `m1` does not exist"));
    up.push(Reply::text("from the fallback"));
    let mut c = h.cmd();
    c.args(["agent", "-m", "hi"]);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "from the fallback"
    );
}

fn roles(transcript: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(transcript)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "message")
        .map(|v| {
            let m = &v["message"];
            match m["stopReason"].as_str() {
                Some(r @ ("error" | "aborted")) => format!("{}:{r}", m["role"].as_str().unwrap()),
                _ => m["role"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

#[tokio::test]
async fn sessions_are_listed_resumed_and_only_kept_once_a_model_answered() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();
    h.write_config(&config_for(&up.base_url(), ""));

    // A run that never got an answer leaves no session behind.
    up.push(Reply::error(
        401,
        "Authentication Error, Invalid proxy server token passed.",
    ));
    let mut c = h.cmd();
    c.args(["agent", "-m", "hi", "--session-id", "never"]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(!h.sessions_dir().join("never.jsonl").exists());
    let mut c = h.cmd();
    c.args(["sessions", "--json"]);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!([])
    );

    // In the chat a failed turn is recorded, so the transcript alternates.
    up.push(Reply::error(
        401,
        "Authentication Error, Invalid proxy server token passed.",
    ));
    up.push(Reply::text("Noted: 42.").with_usage(20, 3));
    let out = run(
        h.cmd(),
        Some("fix the parser please\nremember 42\n/session\n"),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let id = err
        .lines()
        .find_map(|l| l.trim_start_matches("> ").strip_prefix("session "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no /session line: {err}"))
        .to_string();
    let transcript = h.sessions_dir().join(format!("{id}.jsonl"));
    assert_eq!(
        roles(&transcript),
        ["user", "assistant:error", "user", "assistant"]
    );
    // The failed turn's prompt goes along; its error message does not.
    let sent = up.last_request().unwrap().body["messages"].clone();
    let sent_roles: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(sent_roles, ["system", "user", "user"]);

    let mut c = h.cmd();
    c.args(["sessions", "--json"]);
    let out = run(c, None).await;
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["title"], "fix the parser please");
    assert_eq!(list[0]["model"], "litellm/m1");
    assert_eq!(list[0]["totalTokens"], 23);
    assert!(list[0]["updatedAt"].as_i64().unwrap() > 0);
    let mut c = h.cmd();
    c.arg("sessions");
    let out = run(c, None).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&id) && table.contains("fix the parser please"),
        "{table}"
    );

    // --resume with an id prefix, and --continue, reopen it with its history.
    for args in [vec!["--resume", &id[..6]], vec!["--continue"]] {
        up.push(Reply::text("It was 42."));
        let mut c = h.cmd();
        c.args(&args);
        let out = run(c, Some("what number?\n")).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("session {id} (resumed")),
            "{}",
            stderr(&out)
        );
        let msgs = up.last_request().unwrap().body["messages"].to_string();
        assert!(
            msgs.contains("remember 42") && msgs.contains("Noted: 42."),
            "{msgs}"
        );
    }
    // --resume alone lists the sessions and reads the choice.
    up.push(Reply::text("Picked."));
    let mut c = h.cmd();
    c.arg("--resume");
    let out = run(c, Some("1\nand?\n")).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(" 1. {id}")) && err.contains("Resume which session?"),
        "{err}"
    );
    assert!(err.contains(&format!("session {id} (resumed")), "{err}");
    // /resume inside the line chat.
    up.push(Reply::text("Still 42."));
    let out = run(h.cmd(), Some(&format!("/resume {id}\nand now?\n"))).await;
    assert!(
        stderr(&out).contains(&format!("resumed session {id}")),
        "{}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Still 42."));

    let mut c = h.cmd();
    c.args(["--resume", "no-such-session"]);
    let out = run(c, Some("")).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no session \"no-such-session\""),
        "{}",
        stderr(&out)
    );
}

/// The tool names offered in a recorded request.
fn offered(req: &Value) -> Vec<String> {
    req["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The text of the last tool result sent to the model.
fn last_tool_result(req: &Value) -> String {
    req["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// One headless turn in which the model runs `command` with exec, then answers.
async fn exec_once(h: &Home, up: &FakeOpenAi, command: &str, extra: &[&str]) -> String {
    up.push(Reply::tool_call("x1", "exec", json!({"command": command})));
    up.push(Reply::text("ok"));
    let mut c = h.cmd();
    c.args(["agent", "-m", "run it"]).args(extra);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    last_tool_result(&up.last_request().unwrap().body)
}

#[tokio::test]
async fn tool_policy_from_the_config_is_applied() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();

    // allow/deny with groups decide what is offered.
    h.write_config(&config_for(
        &up.base_url(),
        r#", tools: { allow: ["group:fs", "exec"], deny: ["write", "glob"] }"#,
    ));
    up.push(Reply::text("hi"));
    let mut c = h.cmd();
    c.args(["agent", "-m", "hi"]);
    assert!(run(c, None).await.status.success());
    let mut names = offered(&up.last_request().unwrap().body);
    names.sort();
    assert_eq!(names, ["edit", "exec", "grep", "read"]);

    // security: deny offers no commands at all.
    h.write_config(&config_for(
        &up.base_url(),
        r#", tools: { exec: { security: "deny" } }"#,
    ));
    up.push(Reply::text("hi"));
    let mut c = h.cmd();
    c.args(["agent", "-m", "hi"]);
    assert!(run(c, None).await.status.success());
    let names = offered(&up.last_request().unwrap().body);
    assert!(names.contains(&"read".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n == "exec" || n == "process"),
        "{names:?}"
    );

    // allowlist with ask off: listed programs run, others are refused.
    h.write_config(&config_for(
        &up.base_url(),
        r#", tools: { exec: { security: "allowlist", ask: "off", safeBins: ["echo"] } }"#,
    ));
    let r = exec_once(&h, &up, "echo fine", &[]).await;
    assert!(r.contains("fine"), "{r}");
    let r = exec_once(&h, &up, "echo x | uname -a", &[]).await;
    assert!(r.contains("Refused: uname not on the allowlist"), "{r}");

    // allowlist with ask on-miss: no terminal to ask, unless "allow always" was saved for
    // this workspace.
    h.write_config(&config_for(
        &up.base_url(),
        r#", tools: { exec: { security: "allowlist", safeBins: ["echo"] } }"#,
    ));
    let r = exec_once(&h, &up, "uname", &[]).await;
    assert!(r.contains("no one to ask for approval"), "{r}");
    let ws = h.ws().canonicalize().unwrap();
    std::fs::write(
        h.state().join("approvals.json"),
        json!({"workspaces": {ws.to_string_lossy(): ["exec:uname"]}}).to_string(),
    )
    .unwrap();
    let r = exec_once(&h, &up, "uname", &[]).await;
    assert!(r.contains("Linux"), "{r}");

    // ask: always asks before every command; --approve never refuses them.
    h.write_config(&config_for(
        &up.base_url(),
        r#", tools: { exec: { ask: "always" } }"#,
    ));
    let r = exec_once(&h, &up, "echo hi", &["--approve", "never"]).await;
    assert!(r.contains("Refused: every command is asked"), "{r}");
}

#[tokio::test]
async fn commands_see_neither_the_agents_keys_nor_its_credential_files() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();
    h.write_config(&config_for(&up.base_url(), ""));
    let agent_dir = h.state().join("agents/main/agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::write(agent_dir.join("auth-profiles.json"), r#"{"version":1,"profiles":{"other:default":{"type":"api_key","provider":"other","key":"sk-file"}}}"#)
        .unwrap();
    up.push(Reply::tool_call("x1", "exec", json!({"command": "env"})));
    up.push(Reply::text("ok"));
    let mut c = h.cmd();
    c.env("SAME_KEY_OTHER_NAME", "sk-test")
        .env("OPENAI_API_KEY", "sk-openai")
        .env("HARMLESS_SETTING", "visible")
        .args(["agent", "-m", "env"]);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r = last_tool_result(&up.last_request().unwrap().body);
    assert!(r.contains("HARMLESS_SETTING=visible"), "{r}");
    for secret in [
        "sk-test",
        "sk-openai",
        "LITELLM_API_KEY",
        "SAME_KEY_OTHER_NAME",
    ] {
        assert!(!r.contains(secret), "{secret} leaked: {r}");
    }

    for command in [
        "cat ~/.idlehands/agents/main/agent/auth-profiles.json",
        "cat $HOME/.idlehands/agents/main/agent/auth-profiles.json",
        &format!("cat {}", agent_dir.join("auth-profiles.json").display()),
    ] {
        let r = exec_once(&h, &up, command, &["--approve", "never"]).await;
        assert!(r.contains("Refused: the command names"), "{command}: {r}");
        assert!(!r.contains("sk-file"), "{r}");
    }
}

#[tokio::test]
async fn unused_config_keys_are_named_once_with_file_and_path() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();
    h.write_config(&config_for(
        &up.base_url(),
        r#", gateway: { port: 18789 }, tools: { exec: { host: "gateway" } }, colour: "blue""#,
    ));
    up.push(Reply::text("hi"));
    let mut c = h.cmd();
    c.args(["agent", "-m", "hi"]);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let file = h.state().join("idlehands.json");
    for (key, what) in [
        ("gateway", "is not used by this build (ignored)"),
        ("tools.exec.host", "is not used by this build (ignored)"),
        (
            "colour",
            "is not a setting this build knows (ignored; a typo?)",
        ),
    ] {
        let line = format!("warning: {}: {key} {what}", file.display());
        assert_eq!(err.matches(&line).count(), 1, "{line}\n{err}");
    }
    // Settings that are read are not named.
    assert!(!err.contains(": models"), "{err}");
    assert!(!err.contains("agents.defaults.model"), "{err}");
}

#[tokio::test]
async fn apply_patch_is_offered_to_openai_models_when_enabled_and_applies_patches() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();
    let cfg = format!(
        r#"{{ models: {{ providers: {{ litellm: {{ baseUrl: "{}", apiKey: "${{LITELLM_API_KEY}}", api: "openai-completions",
             models: [{{ id: "gpt-4o", name: "GPT" }}, {{ id: "m1", name: "M1" }}] }} }} }},
             agents: {{ defaults: {{ model: {{ primary: "litellm/gpt-4o" }} }} }},
             tools: {{ exec: {{ applyPatch: {{ enabled: true }} }} }} }}"#,
        up.base_url()
    );
    h.write_config(&cfg);
    std::fs::write(
        h.ws().join("lib.rs"),
        "fn one() {\n    1\n}\nfn two() {\n    2\n}\n",
    )
    .unwrap();
    std::fs::write(h.ws().join("old.txt"), "bye\n").unwrap();
    let patch = "*** Begin Patch\n*** Add File: src/new.txt\n+hello\n*** Update File: lib.rs\n@@ fn two() {\n-    2\n+    22\n*** Delete File: old.txt\n*** End Patch";
    up.push(Reply::tool_call(
        "p1",
        "apply_patch",
        json!({"input": patch}),
    ));
    // Outside the workspace: refused, and nothing of that patch is applied.
    let outside = h.dir.path().join("outside.txt");
    let bad = format!(
        "*** Begin Patch\n*** Add File: inside.txt\n+x\n*** Add File: {}\n+x\n*** End Patch",
        outside.display()
    );
    up.push(Reply::tool_call("p2", "apply_patch", json!({"input": bad})));
    up.push(Reply::text("patched"));
    let mut c = h.cmd();
    c.args(["agent", "-m", "patch it", "--approve", "always"]);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let reqs = up.requests();
    assert!(offered(&reqs[0].body).contains(&"apply_patch".to_string()));
    assert_eq!(
        std::fs::read_to_string(h.ws().join("lib.rs")).unwrap(),
        "fn one() {\n    1\n}\nfn two() {\n    22\n}\n"
    );
    assert_eq!(
        std::fs::read_to_string(h.ws().join("src/new.txt")).unwrap(),
        "hello\n"
    );
    assert!(!h.ws().join("old.txt").exists());
    let first = last_tool_result(&reqs[1].body);
    assert!(
        first.starts_with(
            "Success. Updated the following files:\nA src/new.txt\nM lib.rs\nD old.txt"
        ),
        "{first}"
    );
    let second = last_tool_result(&reqs[2].body);
    assert!(second.contains("is outside the workspace"), "{second}");
    assert!(second.contains("No file was changed."), "{second}");
    assert!(!outside.exists() && !h.ws().join("inside.txt").exists());

    // Not an OpenAI-family model: not offered, as upstream.
    up.push(Reply::text("hi"));
    let mut c = h.cmd();
    c.args(["agent", "-m", "hi", "--model", "litellm/m1"]);
    assert!(run(c, None).await.status.success());
    assert!(!offered(&up.last_request().unwrap().body).contains(&"apply_patch".to_string()));
}

#[tokio::test]
async fn the_line_chat_has_shell_model_list_usage_verbose_dir_anton_and_stop() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();
    h.write_config(&config_for(&up.base_url(), ""));
    std::fs::create_dir_all(h.ws().join("sub")).unwrap();
    up.push(Reply::text("answered by m2").with_usage(10, 2));
    up.push(Reply::tool_call(
        "t1",
        "exec",
        json!({"command": "echo a-rather-long-argument-that-verbose-shows-in-full"}),
    ));
    up.push(Reply::text("done"));
    let script = "!echo bang-$((6*7))\n/model\n/model 2\nhello\n/usage\n/verbose\nrun it\n/dir sub\n!pwd\n/anton status\n/stop\n/help\n";
    let out = run(h.cmd(), Some(script)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = stderr(&out);
    assert!(stdout.contains("bang-42"), "{stdout}");
    assert!(
        err.contains("* 1. litellm/m1") && err.contains("  2. litellm/m2"),
        "{err}"
    );
    assert!(err.contains("model set to litellm/m2"), "{err}");
    assert_eq!(up.requests()[0].body["model"], "m2");
    assert!(stdout.contains("answered by m2"), "{stdout}");
    assert!(
        err.contains("Tokens this session: 10 in (0 cached) / 2 out / 12 total"),
        "{err}"
    );
    assert!(err.contains("verbose: tool arguments in full"), "{err}");
    assert!(
        err.contains(
            "[tool] exec {\"command\":\"echo a-rather-long-argument-that-verbose-shows-in-full\"}"
        ),
        "{err}"
    );
    let sub = h.ws().canonicalize().unwrap().join("sub");
    assert!(
        err.contains(&format!("workspace {}", sub.display())),
        "{err}"
    );
    assert!(stdout.contains(&sub.display().to_string()), "{stdout}");
    assert!(err.contains("Anton is idle."), "{err}");
    assert!(err.contains("nothing is running"), "{err}");
    assert!(
        err.contains("/resume <id>") && err.contains("!<command>"),
        "{err}"
    );
    // `!cmd` is for the user: the model never saw it.
    for r in up.requests() {
        assert!(!r.body.to_string().contains("bang-"), "{}", r.body);
    }
}

/// Whether process `pid` has exited (gone, or a zombie waiting to be reaped).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

async fn wait_exited(pid: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !exited(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "MCP server {pid} still running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mcp_server_tools_are_offered_called_restarted_and_stopped() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();
    let pidfile = h.dir.path().join("mcp-pids");
    let marker = h.dir.path().join("mcp-crashed");
    h.write_config(&config_for(
        &up.base_url(),
        &format!(
            r#", mcp: {{ servers: {{ demo: {{ command: "{}", args: [], env: {{ MCP_TEST_PIDFILE: "{}", MCP_TEST_MARKER: "{}" }} }} }} }}"#,
            env!("CARGO_BIN_EXE_idlehands-mcp-test-server"),
            pidfile.display(),
            marker.display()
        ),
    ));
    let pids = || -> Vec<u32> {
        std::fs::read_to_string(&pidfile)
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    };

    // Lazy: commands that need no tools start no server.
    let mut c = h.cmd();
    c.args(["sessions", "--json"]);
    assert!(run(c, None).await.status.success());
    assert!(pids().is_empty());

    let mut c = h.cmd();
    c.args(["mcp", "list"]);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("demo: 3 tool(s)"), "{listed}");
    assert!(listed.contains("demo__add  Add two numbers"), "{listed}");
    assert!(listed.contains("demo__crash_once"), "{listed}");
    let first = pids();
    assert_eq!(first.len(), 1);
    wait_exited(first[0]).await;

    up.push(Reply::tool_call("m1", "demo__add", json!({"a": 2, "b": 3})));
    up.push(Reply::tool_call("m2", "demo__pixel", json!({})));
    up.push(Reply::tool_call("m3", "demo__crash_once", json!({})));
    up.push(Reply::text("all three"));
    let mut c = h.cmd();
    c.args(["agent", "-m", "use the tools"]);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let reqs = up.requests();
    let names = offered(&reqs[0].body);
    for n in ["demo__add", "demo__pixel", "demo__crash_once", "read"] {
        assert!(names.contains(&n.to_string()), "{n} not in {names:?}");
    }
    let add_schema = reqs[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "demo__add")
        .unwrap()["function"]["parameters"]
        .clone();
    assert_eq!(add_schema["required"], json!(["a", "b"]));
    assert_eq!(last_tool_result(&reqs[1].body), "sum = 5");
    assert!(
        reqs[2].body.to_string().contains("one red pixel"),
        "{}",
        reqs[2].body
    );
    assert_eq!(last_tool_result(&reqs[3].body), "recovered after a crash");
    // One start for the turn, one restart after the crash; all stopped when the run ended.
    let all = pids();
    assert_eq!(all.len(), 3, "{all:?}");
    for p in all {
        wait_exited(p).await;
    }

    // A bad server entry is a config error naming the key.
    h.write_config(&config_for(
        &up.base_url(),
        r#", mcp: { servers: { broken: { args: ["x"] } } }"#,
    ));
    let mut c = h.cmd();
    c.args(["agent", "-m", "hi"]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("mcp.servers.broken"),
        "{}",
        stderr(&out)
    );
}

/// Kills the HTTP test server when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn mcp_servers_over_streamable_http() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_idlehands-mcp-test-server"))
        .arg("--http")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = KillOnDrop(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();

    let up = FakeOpenAi::start().await;
    let h = Home::new();
    h.write_config(&config_for(
        &up.base_url(),
        &format!(
            r#", mcp: {{ servers: {{ web: {{ url: "{url}", headers: {{ "X-Test": "1" }} }} }} }}"#
        ),
    ));
    let mut c = h.cmd();
    c.args(["mcp", "list"]);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("web: 3 tool(s)") && listed.contains("web__add"),
        "{listed}"
    );

    up.push(Reply::tool_call("h1", "web__add", json!({"a": 40, "b": 2})));
    up.push(Reply::text("42"));
    let mut c = h.cmd();
    c.args(["agent", "-m", "add"]);
    let out = run(c, None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        last_tool_result(&up.last_request().unwrap().body),
        "sum = 42"
    );
}
