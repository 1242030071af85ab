//! LiteLLM's `POST /spend/calculate` (any key): what a call costs, priced as the gateway prices
//! its calls. With `completion_response`, its `model` and `usage` (exact when the answer carries
//! usage); with `model` and `messages`, the prompt before the call (a configured group is priced
//! as its deployment, custom prices included; another name from the price list), nothing
//! written yet. Token counts the gateway estimates (the prompt of `messages`, or an answer
//! without usage) are its estimate of about four characters a token, where LiteLLM runs a
//! tokenizer: the answer then says `usage_estimated: true`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::HeaderMap;
use idlehands_wire::Usage;
use serde_json::{Value, json};

use super::estimate;
use super::keys::{Mgmt, Shared, bad_request, tri};
use super::roles::caller_role;
use crate::error::ProxyError;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/spend/calculate",
            post(|State(m): Shared, h: HeaderMap, b: Bytes| calculate(m, h, b)),
        )
        .with_state(state)
}

fn not_mapped(model: &str) -> ProxyError {
    bad_request(
        format!(
            "This model isn't mapped yet. model={model}. Add it to the model list with input_cost_per_token/output_cost_per_token, or give its price in a model_cost_map file"
        ),
        "model",
    )
}

/// The cost in USD of `usage` for `model`: a configured group as its deployment prices it,
/// else the price list's entry.
fn cost_of(m: &Mgmt, model: &str, usage: &Usage) -> Result<f64, ProxyError> {
    let rt = m.app.runtime.load();
    if let Some(group) = rt.router.group(model) {
        let d = group.pick();
        return Ok(idlehands_store::money::nanos_to_usd(
            i64::try_from(d.pricing.cost(Some(usage), None)).unwrap_or(i64::MAX),
        ));
    }
    let price = m
        .app
        .models
        .prices()
        .model_info(model, None)
        .ok_or_else(|| not_mapped(model))?;
    Ok(idlehands_store::money::nanos_to_usd(
        i64::try_from(price.cost(usage)).unwrap_or(i64::MAX),
    ))
}

async fn calculate(m: Arc<Mgmt>, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(caller_role(&m, &headers).await);
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => return bad_request("the body must be a JSON object", "body").into_response(),
    };
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let (model, usage, estimated) = if let Some(model) = body.get("model").and_then(text) {
        let Some(messages) = body.get("messages").filter(|v| !v.is_null()) else {
            return bad_request(
                "Bad Request - messages must be provided if 'model' is provided",
                "messages",
            )
            .into_response();
        };
        let chars = estimate::json_chars(&messages.to_string());
        let usage = Usage::new(estimate::tokens_for_chars(chars), 0);
        (model, usage, true)
    } else if let Some(resp) = body.get("completion_response").filter(|v| v.is_object()) {
        let Some(model) = resp.get("model").and_then(text) else {
            return bad_request(
                "completion_response.model is required",
                "completion_response",
            )
            .into_response();
        };
        match resp.get("usage").filter(|u| !u.is_null()) {
            Some(u) => match serde_json::from_value::<Usage>(u.clone()) {
                Ok(usage) => (model, usage, false),
                Err(e) => {
                    return bad_request(
                        format!("completion_response.usage: {e}"),
                        "completion_response",
                    )
                    .into_response();
                }
            },
            None => {
                let answer = estimate::answer_chars(resp.to_string().as_bytes());
                (model, estimate::usage(0, answer), true)
            }
        }
    } else {
        return bad_request(
            "Bad Request - Either 'model' or 'completion_response' must be provided",
            "model",
        )
        .into_response();
    };
    let cost = tri!(cost_of(&m, &model, &usage));
    let mut out = json!({"cost": cost});
    if estimated {
        out["usage_estimated"] = json!(true);
        out["prompt_tokens"] = json!(usage.prompt_tokens);
        out["completion_tokens"] = json!(usage.completion_tokens);
    }
    axum::Json(out).into_response()
}
