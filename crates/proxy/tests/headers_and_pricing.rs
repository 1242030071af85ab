#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The x-litellm-* headers (snapshot) and prices: built-in, overrides, base_model, price file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{KEY, chat_body, client, config, start, start_cfg};
use idlehands_proxy::PriceTable;
use idlehands_proxy::pricing::load_litellm_price_file;
use idlehands_wire::Usage;

fn litellm_headers(h: &reqwest::header::HeaderMap) -> BTreeMap<String, String> {
    h.iter()
        .filter(|(k, _)| k.as_str().starts_with("x-litellm-"))
        .map(|(k, v)| {
            let v = v.to_str().unwrap().to_string();
            let shown = match k.as_str() {
                "x-litellm-call-id" => {
                    // A UUID like LiteLLM's, version 7 (time-ordered) rather than 4.
                    assert_eq!(uuid::Uuid::parse_str(&v).unwrap().get_version_num(), 7);
                    "[uuid]".to_string()
                }
                "x-litellm-overhead-duration-ms" | "x-litellm-response-duration-ms" => {
                    v.parse::<u64>().unwrap();
                    "[ms]".to_string()
                }
                "x-litellm-version" => {
                    assert_eq!(v, env!("CARGO_PKG_VERSION"));
                    "[version]".to_string()
                }
                _ => v,
            };
            (k.as_str().to_string(), shown)
        })
        .collect()
}

const CFG: &str = "model_list:
  - model_name: mocky
    litellm_params:
      model: openai/mock-model
      mock_response: hi there
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
    model_info: {id: mock-deployment-1}
  - model_name: down
    litellm_params: {model: openai/gpt-4o-mini, api_base: 'http://127.0.0.1:9/v1?tenant=x', api_key: k}
    model_info: {id: down-deployment-1}
general_settings: {master_key: sk-test-master-0001}
";

#[tokio::test]
async fn headers_on_success_and_error() {
    let gw = start(CFG).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("mocky", false))
        .send()
        .await
        .unwrap();
    insta::assert_yaml_snapshot!("success_headers", litellm_headers(resp.headers()));
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("down", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    insta::assert_yaml_snapshot!("error_headers", litellm_headers(resp.headers()));
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("down", false))
        .send()
        .await
        .unwrap();
    insta::assert_yaml_snapshot!("auth_error_headers", litellm_headers(resp.headers()));
}

/// An excerpt of LiteLLM's price list, in its own format (copied into the repository: no test
/// reads outside it).
fn excerpt() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litellm_prices_excerpt.json")
}

#[test]
fn litellm_price_file_loads_and_agrees_with_the_builtin_table() {
    let table = load_litellm_price_file(&excerpt()).unwrap();
    assert_eq!(table.len(), 8);
    let opus = table.get("claude-opus-4-6").unwrap();
    assert_eq!(opus.input, 5_000_000);
    assert_eq!(opus.output, 25_000_000);
    assert_eq!(opus.cache_read, Some(500_000));
    assert_eq!(opus.cache_creation, Some(6_250_000));
    assert_eq!(opus.max_input_tokens, Some(1_000_000));
    assert_eq!(opus.provider.as_deref(), Some("anthropic"));
    // Tiers other than 200k are read with their threshold.
    let gpt54 = table.get("gpt-5.4").unwrap();
    assert_eq!(gpt54.tier_tokens, Some(272_000));
    assert_eq!(gpt54.input_above_tier, Some(5_000_000));
    assert_eq!(gpt54.cache_read_above_tier, Some(500_000));
    // Entries of other modes load too, as LiteLLM's map has them.
    assert_eq!(
        table.get("gpt-image-1.5").unwrap().mode.as_deref(),
        Some("image_generation")
    );
    let builtin = PriceTable::builtin();
    for name in [
        "claude-opus-4-6",
        "gpt-4o",
        "azure/gpt-4o",
        "gpt-5.4",
        "gemini/gemini-2.5-pro",
        "text-embedding-3-small",
        "ollama/codegeex4",
    ] {
        // The generator and the loader read the same fields the same way.
        assert_eq!(builtin.get(name), table.get(name), "{name}");
    }
    let u = Usage::new(1_000_000, 1_000_000);
    // 1M in at $5/M + 1M out at $25/M = $30
    assert_eq!(opus.cost(&u), 30_000_000_000);
}

#[tokio::test]
async fn price_file_from_config_base_model_and_overrides_price_calls() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.json");
    std::fs::write(
        &prices,
        r#"{"sample_spec": {"input_cost_per_token": 9}, "my-custom-model": {"input_cost_per_token": 0.00001, "output_cost_per_token": 0.00002, "litellm_provider": "openai", "mode": "chat"}}"#,
    )
    .unwrap();
    let yaml = format!(
        "litellm_settings: {{model_cost_map_path: '{}'}}
model_list:
  - model_name: from-file
    litellm_params: {{model: openai/my-custom-model, mock_response: abcd}}
  - model_name: via-base
    litellm_params: {{model: openai/whatever, mock_response: abcd}}
    model_info: {{base_model: gpt-4o}}
  - model_name: override
    litellm_params: {{model: openai/gpt-4o, mock_response: abcd, output_cost_per_token: 0.001}}
general_settings: {{master_key: {KEY}}}
",
        prices.display()
    );
    let gw = start_cfg(config(&yaml, &[]), |b| b).await;
    for m in ["from-file", "via-base", "override"] {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body(m, false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let recs = gw.records(3).await;
    let cost = |i: usize| {
        let r = &recs[i];
        (r.prompt_tokens, r.completion_tokens, r.cost_nanos)
    };
    let (p, c, n) = cost(0);
    assert_eq!(n, p * 10_000 + c * 20_000);
    let (p, c, n) = cost(1);
    assert_eq!(n, (p * 2_500_000 + c * 10_000_000) / 1000);
    let (p, c, n) = cost(2);
    assert_eq!(n, (p * 2_500_000 + c * 1_000_000_000) / 1000);
}
