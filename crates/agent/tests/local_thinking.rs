//! Thinking on local models (`compat.thinkingFormat` qwen and zai, and a warning where a
//! level cannot reach the model) and llama-server slot affinity (`slotAffinity`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use idlehands_agent::agent::{Session, SessionOptions};
use idlehands_agent::{ApprovalMode, CancellationToken, ThinkingLevel, UserInput};
use idlehands_testkit::replay::{FakeLlamaServer, MODEL};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::json;

fn open(
    s: &Scratch,
    rt: &std::sync::Arc<idlehands_agent::Runtime>,
    id: Option<&str>,
    thinking: ThinkingLevel,
) -> Session {
    Session::open(
        rt.clone(),
        SessionOptions {
            session_id: id.map(str::to_string),
            workspace: s.workspace(),
            approval: ApprovalMode::Never,
            thinking: Some(thinking),
            ..Default::default()
        },
    )
    .unwrap()
}

async fn one_turn(session: &mut Session) {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    session
        .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn qwen_and_zai_formats_send_their_switch_at_every_level() {
    for (format, level, key, want) in [
        (
            "qwen",
            ThinkingLevel::High,
            "chat_template_kwargs",
            json!({"enable_thinking": true}),
        ),
        (
            "qwen",
            ThinkingLevel::Off,
            "chat_template_kwargs",
            json!({"enable_thinking": false}),
        ),
        (
            "zai",
            ThinkingLevel::Low,
            "thinking",
            json!({"type": "enabled"}),
        ),
        (
            "zai",
            ThinkingLevel::Off,
            "thinking",
            json!({"type": "disabled"}),
        ),
    ] {
        let up = FakeOpenAi::start().await;
        up.push(Reply::text("ok"));
        let s = Scratch::new();
        s.write_config(&format!(
            "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: {{ primary: 'local/m1' }} }} }} }}",
            provider_json("local", &up.base_url(), "m1", &format!(", compat: {{ thinkingFormat: '{format}' }}"))
        ));
        let rt = s.runtime();
        let mut session = open(&s, &rt, None, level);
        assert_eq!(session.thinking_warning(), None, "{format}");
        one_turn(&mut session).await;
        let body = up.last_request().unwrap().body;
        assert_eq!(body[key], want, "{format} {level}");
        // The format replaces reasoning_effort, which these servers do not read.
        assert!(body.get("reasoning_effort").is_none(), "{format} {level}");
    }
}

#[tokio::test]
async fn think_warns_when_the_model_cannot_take_it() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {}, {} }} }}, agents: {{ defaults: {{ model: {{ primary: 'plain/m1' }} }} }} }}",
        provider_json("plain", &up.base_url(), "m1", ""),
        provider_json("thinker", &up.base_url(), "m2", ", reasoning: true"),
    ));
    let rt = s.runtime();
    let mut session = open(&s, &rt, None, ThinkingLevel::Off);
    assert_eq!(session.thinking_warning(), None);
    session.set_thinking(ThinkingLevel::High).unwrap();
    let w = session.thinking_warning().unwrap();
    assert!(w.contains("plain/m1 is not marked reasoning: true"), "{w}");
    assert!(w.contains("thinkingFormat"), "{w}");
    up.push(Reply::text("ok"));
    one_turn(&mut session).await;
    let body = up.last_request().unwrap().body;
    assert!(body.get("reasoning_effort").is_none());
    session.set_model("thinker/m2").unwrap();
    assert_eq!(session.thinking_warning(), None);
    up.push(Reply::text("ok"));
    one_turn(&mut session).await;
    assert_eq!(up.last_request().unwrap().body["reasoning_effort"], "high");
}

#[tokio::test]
async fn slot_affinity_pins_a_session_to_one_llama_server_slot() {
    let server = FakeLlamaServer::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ llamacpp: {{ baseUrl: '{}', api: 'openai-completions', slotAffinity: 4, models: [{{ id: '{MODEL}', name: 'q' }}] }} }} }}, agents: {{ defaults: {{ model: {{ primary: 'llamacpp/{MODEL}' }} }} }} }}",
        server.base_url()
    ));
    let rt = s.runtime();
    let mut a = open(&s, &rt, Some("session-a"), ThinkingLevel::Off);
    one_turn(&mut a).await;
    one_turn(&mut a).await;
    // Resumed in a fresh runtime (another process): the same slot.
    let rt2 = s.runtime();
    let mut again = open(&s, &rt2, Some("session-a"), ThinkingLevel::Off);
    one_turn(&mut again).await;
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    let slot = reqs[0].body["id_slot"].as_u64().unwrap();
    assert!(slot < 4);
    for r in &reqs {
        assert_eq!(r.body["id_slot"].as_u64(), Some(slot));
        assert_eq!(r.body["cache_prompt"], true);
    }
    // Sessions spread over the slots.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..16 {
        let mut other = open(&s, &rt, Some(&format!("session-{i}")), ThinkingLevel::Off);
        one_turn(&mut other).await;
        seen.insert(
            server.requests().last().unwrap().body["id_slot"]
                .as_u64()
                .unwrap(),
        );
    }
    assert!(seen.len() > 1 && seen.iter().all(|s| *s < 4), "{seen:?}");

    // Without slotAffinity nothing is pinned.
    let plain = FakeLlamaServer::start().await;
    let s2 = Scratch::new();
    s2.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: {{ primary: 'llamacpp/{MODEL}' }} }} }} }}",
        provider_json("llamacpp", &plain.base_url(), MODEL, "")
    ));
    let rt3 = s2.runtime();
    let mut p = open(&s2, &rt3, None, ThinkingLevel::Off);
    one_turn(&mut p).await;
    assert!(plain.requests()[0].body.get("id_slot").is_none());
}

#[test]
fn bad_slot_affinity_and_thinking_format_name_the_field() {
    for (extra_provider, extra_model, field) in [
        (
            ", slotAffinity: 'yes'",
            "",
            "models.providers.local.slotAffinity",
        ),
        (
            ", slotAffinity: 0",
            "",
            "models.providers.local.slotAffinity",
        ),
        (
            "",
            ", compat: { thinkingFormat: 'deepseek' }",
            "models.providers.local.models[0].compat.thinkingFormat",
        ),
    ] {
        let s = Scratch::new();
        s.write_config(&format!(
            "{{ models: {{ providers: {{ local: {{ baseUrl: 'http://127.0.0.1:9/v1', api: 'openai-completions'{extra_provider}, models: [{{ id: 'm1', name: 'm1'{extra_model} }}] }} }} }} }}"
        ));
        let err = idlehands_agent::Runtime::load(s.env.clone())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(field), "{field}: {err}");
        assert!(err.contains("idlehands.json"), "{err}");
    }
}
