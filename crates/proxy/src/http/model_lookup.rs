//! LiteLLM's `GET /utils/model_info?model=&custom_llm_provider=` (any key): what the price list
//! knows of a model, whether or not this gateway serves it: `{model, custom_llm_provider,
//! model_info}` with the prices (USD per token), token limits, `mode`, the `supports_*` flags
//! and the OpenAI parameters it takes here. The fields are those the price list is loaded
//! with here (prices, limits, mode, flags), not every field of LiteLLM's cost map; a model the
//! list does not have is LiteLLM's 404.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Uri};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::keys::{Mgmt, Shared, bad_request, not_found, query, tri};
use super::roles::caller_role;
use crate::models::usd;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/utils/model_info",
            get(|State(m): Shared, h: HeaderMap, u: Uri| lookup(m, h, u)),
        )
        .with_state(state)
}

#[derive(Deserialize, Default)]
struct Ask {
    model: Option<String>,
    custom_llm_provider: Option<String>,
}

async fn lookup(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    tri!(caller_role(&m, &headers).await);
    let ask: Ask = tri!(query(&uri));
    let Some(model) = ask.model.filter(|s| !s.trim().is_empty()) else {
        return bad_request("model is required", "model").into_response();
    };
    let provider = ask.custom_llm_provider.filter(|s| !s.trim().is_empty());
    let Some(p) = m
        .app
        .models
        .prices()
        .model_info(&model, provider.as_deref())
    else {
        return not_found(
            format!(
                "model={model}, custom_llm_provider={} is not in the model cost map",
                provider.as_deref().unwrap_or("None")
            ),
            "model",
        )
        .into_response();
    };
    let found_provider = p.provider.clone().or(provider).unwrap_or_default();
    let mut info = Map::new();
    info.insert("key".into(), json!(model));
    info.insert("litellm_provider".into(), json!(found_provider));
    info.insert("mode".into(), json!(p.mode));
    crate::models::price_fields(&p, &mut info);
    let tier = p.tier_tokens.unwrap_or(200_000) / 1000;
    let tiered = [
        ("input_cost_per_token", p.input_above_tier),
        ("output_cost_per_token", p.output_above_tier),
        ("cache_read_input_token_cost", p.cache_read_above_tier),
        (
            "cache_creation_input_token_cost",
            p.cache_creation_above_tier,
        ),
    ];
    for (name, rate) in tiered {
        if let Some(r) = rate {
            info.insert(format!("{name}_above_{tier}k_tokens"), json!(usd(r)));
        }
    }
    let upstream = model
        .strip_prefix(&format!("{found_provider}/"))
        .unwrap_or(&model);
    info.insert(
        "supported_openai_params".into(),
        json!(super::supported_params::params_of(
            &found_provider,
            upstream
        )),
    );
    axum::Json(json!({
        "model": model,
        "custom_llm_provider": found_provider,
        "model_info": Value::Object(info),
    }))
    .into_response()
}
