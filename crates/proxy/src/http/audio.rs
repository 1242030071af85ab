//! `POST /v1/audio/transcriptions` (a multipart upload) and `POST /v1/audio/speech` (audio
//! streamed back), forwarded to OpenAI-compatible and Azure deployments with the gateway's
//! duties (keys, limits, routing, retries, fallbacks, spend row). Costs on LiteLLM's basis
//! (`pricing::audio`): seconds transcribed, characters spoken.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use idlehands_wire::multipart;
use serde_json::Value;

use super::attempts::{Attempts, CallOptions, plan_options, within};
use super::body::RawBody;
use super::chat::{Early, Routed, route, token_usage};
use super::guard::Pre;
use super::passthrough::Relay;
use super::usage_scan::Framing;
use crate::error::ProxyError;
use crate::providers::Deployment;
use crate::state::App;

const TRANSCRIPTION: &str = "atranscription";
const SPEECH: &str = "aspeech";
/// Azure's audio `api-version` when the deployment names none.
const AZURE_AUDIO_API_VERSION: &str = "2024-06-01";
/// A transcription answer is text; this only bounds a bad one.
const ANSWER_LIMIT: usize = 16 * 1024 * 1024;

fn invalid(param: &'static str, message: String) -> ProxyError {
    ProxyError::InvalidParam { param, message }
}

/// The deployment's URL for `/audio/{what}` and its credential.
fn request(
    client: &reqwest::Client,
    d: &Deployment,
    options: &CallOptions,
    what: &str,
) -> Result<reqwest::RequestBuilder, ProxyError> {
    if !d.adapter.text_completions() {
        return Err(crate::providers::needs_openai_compatible(
            &format!("/v1/audio/{what}"),
            d,
            "has no such API here",
        ));
    }
    let base = d.api_base.as_deref().unwrap_or("https://api.openai.com/v1");
    let mut url = reqwest::Url::parse(base).map_err(|e| ProxyError::UpstreamUnreachable {
        label: d.provider.clone(),
        message: format!("api_base is not a URL: {e}"),
    })?;
    let azure = d.provider == "azure";
    let path = if azure {
        let p = url.path();
        let root = p
            .find("/openai")
            .map_or(p, |i| &p[..i])
            .trim_end_matches('/');
        format!(
            "{root}/openai/deployments/{}/audio/{what}",
            d.upstream_model
        )
    } else {
        format!("{}/audio/{what}", url.path().trim_end_matches('/'))
    };
    url.set_path(&path);
    if azure {
        url.set_query(None);
        url.query_pairs_mut().append_pair(
            "api-version",
            d.api_version.as_deref().unwrap_or(AZURE_AUDIO_API_VERSION),
        );
    }
    let mut req = client.post(url);
    if let Some(k) = &d.api_key {
        req = if azure {
            req.header("api-key", k.expose())
        } else {
            req.bearer_auth(k.expose())
        };
    }
    Ok(req.headers(options.headers_for(d)))
}

async fn send(
    d: &Deployment,
    req: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProxyError> {
    let resp = req
        .send()
        .await
        .map_err(|e| ProxyError::UpstreamUnreachable {
            label: d.provider.clone(),
            message: format!(
                "Connection error talking to {}: {}",
                d.api_base.as_deref().unwrap_or(""),
                e.without_url()
            ),
        })?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.unwrap_or_default();
    let label = if d.provider == "azure" {
        "AzureException"
    } else {
        "OpenAIException"
    };
    Err(crate::providers::openai_compat::upstream_error(
        label,
        status,
        &body,
        retry_after,
    ))
}

/// Seconds of audio a transcription answer reports: `usage.seconds` (`type: duration`),
/// else `duration` (`verbose_json`).
fn seconds(answer: &Value) -> Option<f64> {
    answer
        .get("usage")
        .filter(|u| u.get("type").and_then(Value::as_str) == Some("duration"))
        .and_then(|u| u.get("seconds"))
        .and_then(Value::as_f64)
        .or_else(|| answer.get("duration").and_then(Value::as_f64))
        .filter(|s| *s > 0.0 && s.is_finite())
}

/// Token usage a transcription answer reports (`gpt-4o-transcribe`: `type: tokens`).
fn tokens(answer: &Value) -> Option<idlehands_wire::Usage> {
    let u = answer
        .get("usage")
        .filter(|u| u.get("type").and_then(Value::as_str) == Some("tokens"))?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(idlehands_wire::Usage::new(
        n("input_tokens"),
        n("output_tokens"),
    ))
}

pub(crate) async fn transcriptions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Pre(pre): Pre,
    RawBody(bytes): RawBody,
) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(multipart::boundary)
        .ok_or_else(|| {
            invalid(
                "file",
                "send the audio as multipart/form-data with `file` and `model` fields".to_string(),
            )
        })
        .and_then(|b| {
            multipart::parts(&bytes, &b)
                .map_err(|why| invalid("file", format!("the multipart body is malformed: {why}")))
        });
    let parts = match form {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if !parts.iter().any(|p| p.name == "file") {
        return ProxyError::MissingParam("file").into_response();
    }
    if multipart::text(&bytes, &parts, "stream").is_some_and(|s| s.trim() == "true") {
        return invalid(
            "stream",
            "streamed transcriptions are not served; send the call without stream".to_string(),
        )
        .into_response();
    }
    // The routing step reads a JSON body: it gets the form's routing fields as one.
    let mut fields = serde_json::Map::new();
    for name in ["model", "user", "timeout", "num_retries"] {
        if let Some(v) = multipart::text(&bytes, &parts, name) {
            let v = v.trim();
            let value = if name == "model" || name == "user" {
                Value::String(v.to_string())
            } else {
                serde_json::from_str(v).unwrap_or(Value::String(v.to_string()))
            };
            fields.insert(name.to_string(), value);
        }
    }
    let routing = Bytes::from(Value::Object(fields).to_string());
    let Routed {
        body,
        mut trace,
        group,
    } = match route(&app, None, &headers, pre, &routing, TRANSCRIPTION, "model").await {
        Ok(r) => r,
        Err(Early::Done(resp)) => return resp,
        Err(Early::Models(_)) => {
            return ProxyError::Internal("unexpected model list".to_string()).into_response();
        }
    };
    trace.prompt_estimate = 0;
    if let Err(e) = trace.pre_call(None).await {
        return trace.error_response(e);
    }
    let options = match CallOptions::from_request(&body, &headers, &trace.app, &trace.model_group) {
        Ok(o) => o,
        Err(e) => return trace.error_response(e),
    };
    let Some(content_type) = headers.get(header::CONTENT_TYPE).cloned() else {
        return trace.error_response(ProxyError::MissingParam("file"));
    };
    let mut attempts = Attempts::new(&group, plan_options(&body, &headers), &trace)
        .with_caller_timeout(options.sets_timeout());
    let (options, client, bytes, parts) = (&options, &app.client, &bytes, &parts);
    let won = attempts
        .run(&mut trace, |d| {
            let d = options.deployment(d);
            let upload = multipart::replace_field(bytes, parts, "model", &d.upstream_model)
                .unwrap_or_else(|| bytes.clone());
            let req = request(client, &d, options, "transcriptions").map(|r| {
                r.header(header::CONTENT_TYPE, content_type.clone())
                    .body(upload)
            });
            async move {
                let req = req?;
                within(d.timeout, &d, async {
                    let resp = send(&d, req).await?;
                    let h = resp.headers().clone();
                    let body = resp
                        .bytes()
                        .await
                        .map_err(|e| ProxyError::UpstreamUnreachable {
                            label: d.provider.clone(),
                            message: format!("the answer broke off: {}", e.without_url()),
                        })?;
                    Ok((h, body))
                })
                .await
            }
        })
        .await;
    let won = match won {
        Ok(w) => w,
        Err(e) => {
            let mut resp = trace.error_response(e);
            attempts.headers(resp.headers_mut());
            return resp;
        }
    };
    let (up_headers, answer) = won.value;
    if answer.len() > ANSWER_LIMIT {
        return trace.error_response(ProxyError::Internal(
            "the transcription is larger than the gateway relays".to_string(),
        ));
    }
    let parsed: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    let usage = tokens(&parsed);
    let secs = seconds(&parsed);
    // Token-priced models report tokens; the others are billed by the audio's length, which
    // only a JSON answer states (`text`, `srt` and `vtt` answers are recorded at no cost).
    if usage.is_none() {
        trace.fixed_cost = Some(
            secs.and_then(|s| trace.deployment.audio_price.transcription(s))
                .unwrap_or(0),
        );
    }
    won.pick
        .success(won.started.elapsed(), token_usage(usage.as_ref()));
    let cost = trace.cost(usage.as_ref());
    let mut h = HeaderMap::new();
    if let Some(ct) = up_headers.get(header::CONTENT_TYPE) {
        h.insert(header::CONTENT_TYPE, ct.clone());
    }
    trace.headers(&mut h, Some(cost));
    attempts.headers(&mut h);
    trace.finish(usage.as_ref(), None, Some(Utc::now()), None, 200);
    let mut resp = Response::new(Body::from(answer));
    *resp.headers_mut() = h;
    resp
}

pub(crate) async fn speech(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Pre(pre): Pre,
    RawBody(bytes): RawBody,
) -> Response {
    let Routed {
        body,
        mut trace,
        group,
    } = match route(&app, None, &headers, pre, &bytes, SPEECH, "input").await {
        Ok(r) => r,
        Err(Early::Done(resp)) => return resp,
        Err(Early::Models(_)) => {
            return ProxyError::Internal("unexpected model list".to_string()).into_response();
        }
    };
    let chars = body
        .raw("input")
        .and_then(|r| serde_json::from_str::<String>(r.get()).ok())
        .map(|s| s.chars().count());
    let Some(chars) = chars else {
        return trace.error_response(invalid("input", "input must be a string".to_string()));
    };
    if let Err(e) = trace.pre_call(None).await {
        return trace.error_response(e);
    }
    let options = match CallOptions::from_request(&body, &headers, &trace.app, &trace.model_group) {
        Ok(o) => o,
        Err(e) => return trace.error_response(e),
    };
    let mut attempts = Attempts::new(&group, plan_options(&body, &headers), &trace)
        .with_caller_timeout(options.sets_timeout());
    let (options, client, body) = (&options, &app.client, &body);
    let won = attempts
        .run(&mut trace, |d| {
            let d = options.deployment(d);
            let req = request(client, &d, options, "speech").map(|r| {
                r.header(header::CONTENT_TYPE, "application/json")
                    .body(body.rewrite(&d.upstream_model, false))
            });
            async move {
                let req = req?;
                within(d.timeout, &d, send(&d, req)).await
            }
        })
        .await;
    let won = match won {
        Ok(w) => w,
        Err(e) => {
            let mut resp = trace.error_response(e);
            attempts.headers(resp.headers_mut());
            return resp;
        }
    };
    let cost = trace.deployment.audio_price.speech(chars).unwrap_or(0);
    trace.fixed_cost = Some(cost);
    let upstream = won.value;
    let mut h = HeaderMap::new();
    let ct = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("audio/mpeg"));
    h.insert(header::CONTENT_TYPE, ct);
    trace.headers(&mut h, Some(cost));
    attempts.headers(&mut h);
    let (pick, started, slot) = (won.pick, won.started, won.slot);
    // The audio goes to the client as it arrives; the row is written when it has all gone.
    let relay = Relay::new(upstream, Framing::Opaque, trace).on_end(Box::new(move |_| {
        drop(slot);
        pick.success(started.elapsed(), token_usage(None));
    }));
    let mut resp = Response::new(Body::from_stream(relay));
    *resp.status_mut() = StatusCode::OK;
    *resp.headers_mut() = h;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transcription_length_and_tokens_come_from_the_answer() {
        assert_eq!(
            seconds(&json!({"text": "x", "usage": {"type": "duration", "seconds": 12}})),
            Some(12.0)
        );
        assert_eq!(seconds(&json!({"text": "x", "duration": 3.5})), Some(3.5));
        assert_eq!(seconds(&json!({"text": "x"})), None);
        let u =
            tokens(&json!({"usage": {"type": "tokens", "input_tokens": 14, "output_tokens": 5}}));
        assert_eq!(
            u.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((14, 5))
        );
    }
}
