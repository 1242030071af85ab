//! What the translating adapters (Anthropic, Gemini, Bedrock) share: sending with the
//! deployment's timeouts, reading error answers, turning translation failures into gateway
//! errors, and running an upstream byte stream through a translator into OpenAI SSE frames.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt};
use http::HeaderMap;
use idlehands_translate::TranslateError;
use idlehands_translate::anthropic::MappedError;
use idlehands_translate::stream_to_openai::{BodyToOpenAi, ProviderStream};
use serde_json::Value;

use crate::error::{ProxyError, upstream_failure};
use crate::providers::Deployment;

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `litellm.<Class>: <Class>: <message>`, the shape LiteLLM gives provider errors (an overflow
/// becomes its ContextWindowExceededError).
pub(super) fn upstream(status: u16, message: &str, retry_after: Option<String>) -> ProxyError {
    upstream_failure(status, message, "", None, retry_after)
}

pub(super) fn mapped(m: MappedError, retry_after: Option<String>) -> ProxyError {
    upstream(m.status, &m.message, retry_after)
}

/// A translation failure as the gateway answers it: 400 for a request the provider cannot
/// express, 502 with the upstream excerpt for an answer that cannot be read.
pub(super) fn translate_error(label: &str, e: TranslateError) -> ProxyError {
    match e {
        TranslateError::InvalidRequest(msg) => upstream(400, &format!("{label} - {msg}"), None),
        TranslateError::Untranslatable { .. } => ProxyError::Upstream {
            status: 502,
            message: e.to_string(),
            kind: None,
            retry_after: None,
        },
        TranslateError::Upstream { status, message } => upstream(status, &message, None),
    }
}

/// A credential or setting the deployment lacks: said plainly, naming where it comes from.
pub(super) fn missing(label: &str, what: &str) -> ProxyError {
    upstream(401, &format!("{label} - {what}"), None)
}

fn send_error(label: &str, d: &Deployment, timeout: Duration, e: &reqwest::Error) -> ProxyError {
    if e.is_timeout() {
        return d.timed_out(timeout);
    }
    let what = if e.is_connect() {
        "cannot connect to the provider"
    } else {
        "connection to the provider failed"
    };
    // reqwest's text names the URL, which may carry a key (`?key=`): keep only its kind.
    let detail = e
        .source_text()
        .unwrap_or_else(|| "request failed".to_string());
    ProxyError::UpstreamUnreachable {
        label: label.to_string(),
        message: format!("Connection error: {what} ({detail})"),
    }
}

trait SourceText {
    fn source_text(&self) -> Option<String>;
}

impl SourceText for reqwest::Error {
    fn source_text(&self) -> Option<String> {
        std::error::Error::source(self).map(ToString::to_string)
    }
}

/// Send with the deployment's timeouts: the whole-request one for plain calls, the idle
/// stream one until the headers arrive for streams.
pub(super) async fn send(
    label: &str,
    d: &Deployment,
    request: reqwest::RequestBuilder,
    stream: bool,
) -> Result<reqwest::Response, ProxyError> {
    if !stream {
        return request
            .timeout(d.timeout)
            .send()
            .await
            .map_err(|e| send_error(label, d, d.timeout, &e));
    }
    let idle = d.stream_timeout;
    match tokio::time::timeout(idle, request.send()).await {
        Err(_) => Err(d.timed_out(idle)),
        Ok(r) => r.map_err(|e| send_error(label, d, idle, &e)),
    }
}

/// The whole body of an answer (a plain answer, or an error), within the request timeout.
pub(super) async fn body(
    label: &str,
    d: &Deployment,
    resp: reqwest::Response,
) -> Result<Bytes, ProxyError> {
    match tokio::time::timeout(d.timeout, resp.bytes()).await {
        Err(_) => Err(d.timed_out(d.timeout)),
        Ok(r) => r.map_err(|e| send_error(label, d, d.timeout, &e)),
    }
}

pub(super) fn retry_after(h: &HeaderMap) -> Option<String> {
    h.get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// An empty map for the headers of a response to the client, sized for what the gateway adds
/// to it (a dozen `x-litellm-*` headers and the content type): grown from empty it was
/// reallocated twice a response.
pub(super) fn answer_headers() -> HeaderMap {
    HeaderMap::with_capacity(24)
}

/// Rate-limit headers of the upstream answer, passed on to the client.
pub(super) fn kept_headers(h: &HeaderMap) -> HeaderMap {
    headers_named(h, &["x-ratelimit-", "anthropic-ratelimit-"])
}

/// The upstream answer's headers whose names start with one of `prefixes`, in a map for the
/// client's response.
pub(super) fn headers_named(h: &HeaderMap, prefixes: &[&str]) -> HeaderMap {
    let mut out = answer_headers();
    for (k, v) in h {
        let name = k.as_str();
        if prefixes.iter().any(|p| name.starts_with(p)) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// The deployment's `extra_body` fields, into a body built for the provider where it has none.
pub(super) fn add_extra_body(body: &mut Value, extra: Option<&serde_json::Map<String, Value>>) {
    if let (Some(extra), Value::Object(out)) = (extra, body) {
        for (k, v) in extra {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// `extra_headers` of the deployment and request, on a request to the provider.
pub(super) fn with_headers(
    mut request: reqwest::RequestBuilder,
    extra: &HeaderMap,
) -> reqwest::RequestBuilder {
    for (name, value) in extra {
        request = request.header(name.clone(), value.clone());
    }
    request
}

/// Parse a plain answer body, or say with an excerpt why it cannot be read.
pub(super) fn parse(label: &str, body: &[u8]) -> Result<Value, ProxyError> {
    idlehands_translate::openai::parse_upstream(&String::from_utf8_lossy(body))
        .map_err(|e| translate_error(label, e))
}

/// Serialise a translated completion; a `Value` always serialises.
pub(super) fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn frame(out: &mut BytesMut, chunk: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&to_bytes(chunk));
    out.extend_from_slice(b"\n\n");
}

struct Pump<P: ProviderStream> {
    body: super::idle::IdleTimeout<BoxStream<'static, reqwest::Result<Bytes>>>,
    source: BodyToOpenAi<P>,
    label: Arc<str>,
    deployment: Arc<Deployment>,
}

/// The upstream body, translated into `data: {chunk}` frames ending with the usage chunk and
/// `[DONE]`; a stalled upstream (nothing for `stream_timeout`) ends it with an error.
pub(super) fn translated_stream<P>(
    label: &str,
    d: &Arc<Deployment>,
    resp: reqwest::Response,
    source: BodyToOpenAi<P>,
) -> BoxStream<'static, Result<Bytes, ProxyError>>
where
    P: ProviderStream + Send + 'static,
    P::Decoder: Send,
{
    let pump = Pump {
        body: super::idle::IdleTimeout::new(resp.bytes_stream().boxed(), d.stream_timeout),
        source,
        label: label.into(),
        deployment: d.clone(),
    };
    stream::unfold(Some(pump), |state| async move {
        let mut p = state?;
        let idle = p.deployment.stream_timeout;
        loop {
            let next = match p.body.next().await {
                Some(Err(super::idle::Stalled)) => {
                    return Some((Err(p.deployment.timed_out(idle)), None));
                }
                Some(Ok(n)) => Some(n),
                None => None,
            };
            let mut out = BytesMut::new();
            match next {
                Some(Ok(bytes)) => match p.source.push(&bytes) {
                    Ok(chunks) => {
                        chunks.iter().for_each(|c| frame(&mut out, c));
                        if !out.is_empty() {
                            return Some((Ok(out.freeze()), Some(p)));
                        }
                    }
                    Err(e) => return Some((Err(translate_error(&p.label, e)), None)),
                },
                Some(Err(e)) => {
                    let e = send_error(&p.label, &p.deployment, idle, &e);
                    return Some((Err(e), None));
                }
                None => {
                    return match p.source.finish() {
                        Ok(usage) => {
                            // Without one, the client stream counts the call itself.
                            if let Some(usage) = usage {
                                frame(&mut out, &usage);
                            }
                            out.extend_from_slice(idlehands_wire::sse::DONE);
                            Some((Ok(out.freeze()), None))
                        }
                        Err(e) => Some((Err(translate_error(&p.label, e)), None)),
                    };
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_answer_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-ratelimit-remaining-requests", "9"),
            ("x-ratelimit-remaining-requests", "8"),
            ("anthropic-ratelimit-tokens-remaining", "700"),
            ("set-cookie", "s=1"),
            ("x-request-id", "r1"),
        ] {
            h.append(
                http::HeaderName::from_static(k),
                http::HeaderValue::from_static(v),
            );
        }
        h
    }

    #[test]
    fn only_rate_limit_headers_are_passed_on() {
        let kept = kept_headers(&upstream_answer_headers());
        let all: Vec<_> = kept
            .get_all("x-ratelimit-remaining-requests")
            .iter()
            .collect();
        assert_eq!(all, ["9", "8"]);
        assert_eq!(kept["anthropic-ratelimit-tokens-remaining"], "700");
        assert_eq!(kept.len(), 3);
        let openai_only = headers_named(&upstream_answer_headers(), &["x-ratelimit-"]);
        assert_eq!(openai_only.len(), 2);
        assert!(!openai_only.contains_key("anthropic-ratelimit-tokens-remaining"));
    }

    #[test]
    fn untranslatable_answers_are_502_with_the_excerpt() {
        let e = translate_error(
            "AnthropicException",
            TranslateError::untranslatable("no 'content' array", "{\"odd\":1}"),
        );
        assert_eq!(e.status(), 502);
        assert_eq!(
            e.to_string(),
            "Upstream response could not be translated: no 'content' array: {\"odd\":1}"
        );
        let e = translate_error(
            "AnthropicException",
            TranslateError::invalid("image URL not allowed"),
        );
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.to_string(),
            "litellm.BadRequestError: BadRequestError: AnthropicException - image URL not allowed"
        );
    }
}
