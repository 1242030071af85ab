#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Tag routing (`router_settings.enable_tag_filtering`): a request's tags (its metadata's, its
//! body's `tags`, the `x-litellm-tags` header, its key's) choose among a group's deployments
//! by their `tags`, a `tag_regex` matches the caller's user agent, `default` deployments take
//! untagged calls, and a call its tags leave nothing for is refused with LiteLLM's 401 (the
//! words and type LiteLLM 1.110.2 answered for the same config), one failure row each.

mod store_support;

use serde_json::{Value, json};
use store_support::{
    Answer, Backend, MASTER, Place, Proxy, client, config, generate, send, settings, spend_rows,
    start_with,
};

fn yaml() -> String {
    format!(
        "model_list:
  - model_name: g
    litellm_params: {{model: openai/m, mock_response: free answer, tags: [free, default]}}
    model_info: {{id: g-free}}
  - model_name: g
    litellm_params: {{model: openai/m, mock_response: paid answer, tags: [paid]}}
    model_info: {{id: g-paid}}
  - model_name: plain
    litellm_params: {{model: openai/m, mock_response: plain free answer, tags: [free]}}
  - model_name: plain
    litellm_params: {{model: openai/m, mock_response: plain paid answer, tags: [paid]}}
  - model_name: agents
    litellm_params: {{model: openai/m, mock_response: agent answer, tag_regex: ['^User-Agent: claude-code/']}}
  - model_name: agents
    litellm_params: {{model: openai/m, mock_response: everyone answer, tags: [default]}}
  - model_name: untouched
    litellm_params: {{model: openai/m, mock_response: first, tags: [a]}}
    model_info: {{enable_tag_filtering: false}}
  - model_name: untouched
    litellm_params: {{model: openai/m, mock_response: second, tags: [b]}}
general_settings:
  master_key: {MASTER}
router_settings:
  enable_tag_filtering: true
"
    )
}

async fn start(place: &Place) -> Proxy {
    let cfg = config(&yaml());
    let s = settings(&cfg, place);
    start_with(cfg, s).await
}

async fn ask(p: &Proxy, key: &str, model: &str, extra: Value, headers: &[(&str, &str)]) -> Answer {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    let mut req = client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req).await
}

/// The answer's text, the call having succeeded.
fn text(a: &Answer) -> String {
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_choose_the_deployment_and_unservable_tags_are_refused() {
    let place = Place::new(Backend::Sqlite);
    let p = start(&place).await;
    let mut calls = 0;
    let mut ask_n = async |key: &str, model: &str, extra: Value, headers: &[(&str, &str)]| {
        calls += 1;
        ask(&p, key, model, extra, headers).await
    };

    // Each way a call can carry a tag routes it: metadata, body, header.
    for _ in 0..5 {
        let a = ask_n(MASTER, "g", json!({"metadata": {"tags": ["paid"]}}), &[]).await;
        assert_eq!(text(&a), "paid answer");
        assert_eq!(a.headers["x-litellm-model-id"], "g-paid");
        let a = ask_n(MASTER, "g", json!({"tags": ["paid"]}), &[]).await;
        assert_eq!(text(&a), "paid answer");
        let a = ask_n(MASTER, "g", json!({}), &[("x-litellm-tags", "paid")]).await;
        assert_eq!(text(&a), "paid answer");
        // Untagged, or a tag no deployment knows: the default deployment.
        assert_eq!(
            text(&ask_n(MASTER, "g", json!({}), &[]).await),
            "free answer"
        );
        let a = ask_n(MASTER, "g", json!({"tags": ["gold"]}), &[]).await;
        assert_eq!(text(&a), "free answer");
    }

    // A key's tags route every call of the key.
    let (paid_key, _) = generate(&p, json!({"tags": ["paid"]})).await;
    for _ in 0..5 {
        assert_eq!(
            text(&ask_n(&paid_key, "g", json!({}), &[]).await),
            "paid answer"
        );
    }

    // Without defaults: an exclusion leaves the other deployment; an unknown tag, nothing.
    for _ in 0..5 {
        let a = ask_n(MASTER, "plain", json!({"tags": ["!free"]}), &[]).await;
        assert_eq!(text(&a), "plain paid answer");
    }
    let a = ask_n(
        MASTER,
        "plain",
        json!({"metadata": {"tags": ["gold", "it's"]}}),
        &[],
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"error": {
            "message": "Not allowed to access model due to tags configuration. Passed model=plain and tags=['gold', \"it's\"]",
            "type": "internal_server_error",
            "param": null,
            "code": "401"
        }})
    );
    // On a group with a default, a tag its deployments know but the call's constraints rule
    // out is refused too, not sent to the default.
    let a = ask_n(MASTER, "g", json!({"tags": ["paid", "!paid"]}), &[]).await;
    assert_eq!(a.status, 401, "{}", a.body);

    // A pattern over the user agent.
    for _ in 0..5 {
        let a = ask_n(
            MASTER,
            "agents",
            json!({}),
            &[("user-agent", "claude-code/1.0.31")],
        )
        .await;
        assert_eq!(text(&a), "agent answer");
        let a = ask_n(MASTER, "agents", json!({}), &[("user-agent", "curl/8.5")]).await;
        assert_eq!(text(&a), "everyone answer");
    }

    // A group that turned tag routing off in its model_info serves whatever the tags.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(text(
            &ask_n(MASTER, "untouched", json!({"tags": ["a"]}), &[]).await,
        ));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["first", "second"]);

    // Every call left one row; the refused ones are failures that name the refusal.
    let rows = spend_rows(&p, "", calls).await;
    assert_eq!(rows.len(), calls);
    let refused: Vec<&Value> = rows.iter().filter(|r| r["status"] == "failure").collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    p.stop().await;
}
