#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `general_settings.allowed_ips` (with `use_x_forwarded_for`) and `enforce_user_param`, over
//! real HTTP on loopback: refused with LiteLLM's status and words on model and management
//! routes, admitted when the address (or the user) is there.

mod common;
use common::{KEY, client, start};
use serde_json::{Value, json};

fn yaml(general: &str) -> String {
    format!(
        "model_list:
  - model_name: mocky
    litellm_params:
      model: openai/mock-model
      mock_response: Hello from the mock deployment
  - model_name: embed
    litellm_params:
      model: openai/text-embedding-3-small
      mock_response: ok
general_settings:
  master_key: {KEY}
{general}"
    )
}

fn chat(user: Option<&str>) -> Value {
    let mut b = json!({"model": "mocky", "messages": [{"role": "user", "content": "hi"}]});
    if let Some(u) = user {
        b["user"] = json!(u);
    }
    b
}

async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    forwarded: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = client()
        .request(method, format!("{base}{path}"))
        .bearer_auth(KEY);
    if let Some(f) = forwarded {
        r = r.header("x-forwarded-for", f);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_address_not_listed_is_refused_on_model_and_management_routes() {
    let gw = start(&yaml("  allowed_ips: [10.9.9.9, 192.168.0.0/16]\n")).await;
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/v1/chat/completions",
            Some(chat(None)),
        ),
        (reqwest::Method::GET, "/v1/models", None),
        (reqwest::Method::GET, "/model/info", None),
        (reqwest::Method::GET, "/model_group/info", None),
    ] {
        let (status, body) = call(&gw.base, method, path, None, body).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(
            body["error"]["message"], "Access forbidden: IP address 127.0.0.1 not allowed.",
            "{path}"
        );
        assert_eq!(body["error"]["type"], "auth_error", "{path}");
        assert_eq!(body["error"]["code"], "403", "{path}");
    }
    // Liveness stays public (a load balancer asks it from anywhere).
    let live = client()
        .get(gw.url("/health/liveliness"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    gw.shutdown().await.unwrap();

    let gw = start(&yaml("  allowed_ips: ['127.0.0.0/8']\n")).await;
    let (status, body) = call(
        &gw.base,
        reqwest::Method::POST,
        "/v1/chat/completions",
        None,
        Some(chat(None)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&gw.base, reqwest::Method::GET, "/model/info", None, None).await;
    assert_eq!(status, 200, "{body}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn behind_a_proxy_the_address_it_saw_is_judged_not_the_clients_claim() {
    let gw = start(&yaml(
        "  allowed_ips: [203.0.113.7]\n  use_x_forwarded_for: true\n",
    ))
    .await;
    let post = reqwest::Method::POST;
    // The proxy appended the address it saw: admitted.
    let (status, body) = call(
        &gw.base,
        post.clone(),
        "/v1/chat/completions",
        Some("198.51.100.1, 203.0.113.7"),
        Some(chat(None)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A client claiming the listed address ahead of its real one: refused, naming the real one.
    let (status, body) = call(
        &gw.base,
        post.clone(),
        "/v1/chat/completions",
        Some("203.0.113.7, 198.51.100.1"),
        Some(chat(None)),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["message"],
        "Access forbidden: IP address 198.51.100.1 not allowed."
    );
    // No header: the peer (127.0.0.1) is judged.
    let (status, _) = call(
        &gw.base,
        post,
        "/v1/chat/completions",
        None,
        Some(chat(None)),
    )
    .await;
    assert_eq!(status, 403);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn enforce_user_param_refuses_model_calls_without_a_user() {
    let gw = start(&yaml("  enforce_user_param: true\n")).await;
    let post = reqwest::Method::POST;
    for (path, body) in [
        ("/v1/chat/completions", chat(None)),
        (
            "/v1/embeddings",
            json!({"model": "embed", "input": "hello"}),
        ),
    ] {
        let (status, answer) = call(&gw.base, post.clone(), path, None, Some(body)).await;
        assert_eq!(status, 401, "{path}: {answer}");
        assert_eq!(
            answer["error"]["message"],
            "Authentication Error, 'user' param not passed in. 'enforce_user_param'=True",
            "{path}"
        );
    }
    let (status, answer) = call(
        &gw.base,
        post.clone(),
        "/v1/chat/completions",
        None,
        Some(chat(Some("alice"))),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = call(
        &gw.base,
        post,
        "/v1/embeddings",
        None,
        Some(json!({"model": "embed", "input": "hello", "user": "alice"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // Management routes do not take a user.
    let (status, answer) = call(&gw.base, reqwest::Method::GET, "/model/info", None, None).await;
    assert_eq!(status, 200, "{answer}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn spend_records_carry_the_callers_address_unless_disabled() {
    // (settings, X-Forwarded-For sent, address recorded): behind a proxy, the address it
    // wrote, not the client's own claim before it.
    for (settings, forwarded, recorded) in [
        ("", None, Some("127.0.0.1")),
        (
            "  use_x_forwarded_for: true\n",
            Some("10.0.0.1, 198.51.100.4"),
            Some("198.51.100.4"),
        ),
        ("  disable_requester_ip_address_logging: true\n", None, None),
    ] {
        // A model route, and a pass-through route (relayed as is, recorded all the same).
        let up = idlehands_testkit::FakeOpenAi::start().await;
        let relay = format!(
            "  pass_through_endpoints:\n    - path: /relay\n      target: {}/chat/completions\n",
            up.base_url()
        );
        let gw = start(&yaml(&format!("{settings}{relay}"))).await;
        for (n, path) in [(1, "/v1/chat/completions"), (2, "/relay")] {
            let (status, answer) = call(
                &gw.base,
                reqwest::Method::POST,
                path,
                forwarded,
                Some(chat(None)),
            )
            .await;
            assert_eq!(status, 200, "{settings} {path}: {answer}");
            assert_eq!(
                gw.records(n).await[n - 1].requester_ip.as_deref(),
                recorded,
                "{settings} {path}"
            );
        }
        gw.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn reject_clientside_metadata_tags_refuses_every_way_a_client_tags_a_call() {
    let gw = start(&yaml("  reject_clientside_metadata_tags: true\n")).await;
    let tagged = |field: &str, value: Value| {
        let mut b = chat(None);
        b[field] = value;
        b
    };
    for (body, place) in [
        (
            tagged("metadata", json!({"tags": ["free"]})),
            "metadata.tags",
        ),
        (
            tagged("litellm_metadata", json!({"tags": ["free"]})),
            "litellm_metadata.tags",
        ),
        (tagged("tags", json!(["free"])), "tags"),
    ] {
        let (status, answer) = call(
            &gw.base,
            reqwest::Method::POST,
            "/v1/chat/completions",
            None,
            Some(body),
        )
        .await;
        assert_eq!(status, 400, "{place}: {answer}");
        assert_eq!(
            answer["error"]["message"],
            format!(
                "Client-side '{place}' not allowed in request. 'reject_clientside_metadata_tags'=True. Tags can only be set via key or team metadata, or by configured request_tag_mappings."
            )
        );
    }
    let by_header = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-litellm-tags", "free")
        .json(&chat(None))
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 400);
    // Metadata without tags is fine.
    let (status, answer) = call(
        &gw.base,
        reqwest::Method::POST,
        "/v1/chat/completions",
        None,
        Some(tagged("metadata", json!({"trace": "t1"}))),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    gw.shutdown().await.unwrap();
}
