//! `model: "gpt-4o,claude"`: LiteLLM runs one chat call on each named group at once and
//! answers with the list of their answers (in the order named; a failed call is its error
//! body), or with `fastest_response: true`, with the first successful answer alone, the others
//! being cancelled. Each call is a call of its own: its own auth check, limits, routing,
//! headers and spend row.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value};

use crate::error::ProxyError;
use crate::state::App;

/// The request once per model: `model` replaced, `fastest_response` gone.
fn bodies(bytes: &Bytes, models: &[String]) -> Result<Vec<Bytes>, ProxyError> {
    let mut fields: Map<String, Value> =
        serde_json::from_slice(bytes).map_err(|e| ProxyError::InvalidJson(e.to_string()))?;
    fields.remove("fastest_response");
    models
        .iter()
        .map(|m| {
            fields.insert("model".to_string(), Value::String(m.clone()));
            serde_json::to_vec(&fields)
                .map(Bytes::from)
                .map_err(|e| ProxyError::Internal(e.to_string()))
        })
        .collect()
}

fn call(
    app: &Arc<App>,
    headers: &HeaderMap,
    body: Bytes,
    call_type: &'static str,
) -> BoxFuture<'static, Response> {
    // Each call authenticates from the headers again: the key's state (spend, limits) may
    // have moved since the list was split.
    Box::pin(super::chat::handle(
        app.clone(),
        None,
        headers.clone(),
        None,
        body,
        call_type,
    ))
}

pub(crate) async fn run(
    app: Arc<App>,
    headers: HeaderMap,
    bytes: Bytes,
    models: Vec<String>,
    call_type: &'static str,
) -> Response {
    let flag = |k: &str| {
        serde_json::from_slice::<Map<String, Value>>(&bytes)
            .ok()
            .and_then(|m| m.get(k).and_then(Value::as_bool))
            .unwrap_or(false)
    };
    let fastest = flag("fastest_response");
    if flag("stream") && !fastest {
        return ProxyError::InvalidParam {
            param: "stream",
            message: "a comma-separated model list is answered with a list, which cannot be streamed; send fastest_response: true to stream the first model to answer".to_string(),
        }
        .into_response();
    }
    let bodies = match bodies(&bytes, &models) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if fastest {
        let mut calls: FuturesUnordered<_> = bodies
            .into_iter()
            .map(|b| call(&app, &headers, b, call_type))
            .collect();
        let mut last = None;
        while let Some(resp) = calls.next().await {
            if resp.status().is_success() {
                // Dropping the rest cancels them; each leaves its own (cancelled) record.
                return resp;
            }
            last = Some(resp);
        }
        return last.unwrap_or_else(|| {
            ProxyError::Internal("no model was called".to_string()).into_response()
        });
    }
    let answers = futures_util::future::join_all(
        bodies
            .into_iter()
            .map(|b| call(&app, &headers, b, call_type)),
    )
    .await;
    let mut list = Vec::with_capacity(answers.len());
    for resp in answers {
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        list.push(serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null));
    }
    let mut resp = Response::new(Body::from(Value::Array(list).to_string()));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn each_body_names_one_model_and_keeps_the_rest() {
        let src = Bytes::from_static(
            br#"{"model":"a,b","messages":[{"role":"user","content":"hi"}],"fastest_response":true,"metadata":{"k":1}}"#,
        );
        let out = bodies(&src, &["a".into(), "b".into()]).unwrap();
        let v: Vec<Value> = out
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        assert_eq!(v[0]["model"], "a");
        assert_eq!(v[1]["model"], "b");
        assert!(v[1].get("fastest_response").is_none());
        assert_eq!(v[1]["metadata"]["k"], 1);
        assert_eq!(v[0]["messages"][0]["content"], "hi");
    }
}
