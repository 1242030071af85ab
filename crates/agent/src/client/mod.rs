//! The `openai-completions` client: one streaming `POST <baseUrl>/chat/completions` per model
//! call, with usage, tool calls, reasoning, same-model retries on transient failures, and the
//! `x-litellm-response-cost` header captured as the call's cost.

pub mod discovery;
pub mod error;
pub mod ollama;
pub mod request;
pub mod stream;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use error::{ClientError, FailureKind};
pub use request::{CompletionRequest, ToolSpec, build_body};
pub use stream::{ParsedTurn, StreamDelta, StreamParser};

use crate::message::{AssistantMessage, ContentBlock, TokenUsage, now_ms};
use crate::models::ResolvedModel;

/// `<base>/chat/completions`; a base with or without `/v1` and trailing slashes is accepted
/// (LiteLLM and `idlehands proxy` serve both paths).
pub fn chat_url(base_url: &str) -> String {
    format!("{}/chat/completions", base_url.trim().trim_end_matches('/'))
}

/// `<base>/v1/models`, or `<base>/models` when the base already ends in `/v1`.
pub fn models_url(base_url: &str) -> String {
    let base = base_url.trim().trim_end_matches('/');
    if base.ends_with("/v1") {
        format!("{base}/models")
    } else {
        format!("{base}/v1/models")
    }
}

#[derive(Debug, Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    /// Extra attempts against the same model on 408/409/429/5xx and connection failures,
    /// made only while nothing has been streamed yet.
    pub max_retries: u32,
    pub retry_base: Duration,
    /// Cap on a `retry-after` wait.
    pub max_retry_wait: Duration,
}

impl Default for ChatClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ChatClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            // Servers log it, and a LiteLLM-style gateway tags the call's spend with it.
            .user_agent(concat!("idlehands/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            max_retries: 2,
            retry_base: Duration::from_millis(500),
            max_retry_wait: Duration::from_secs(10),
        }
    }

    pub fn with_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Stream one assistant reply. Deltas go to `on_delta` as they arrive.
    pub async fn stream(
        &self,
        model: &ResolvedModel,
        api_key: &str,
        req: &CompletionRequest,
        cancel: &CancellationToken,
        on_delta: &mut (dyn FnMut(StreamDelta) + Send),
    ) -> Result<AssistantMessage, ClientError> {
        let ollama = model.api == crate::config::ModelApi::Ollama;
        let body = if ollama {
            ollama::build_body(model, req, req.context_window)
        } else {
            build_body(model, req)
        };
        let mut attempt = 0;
        loop {
            let mut emitted = false;
            // With tools offered, text that may be a call written as text is held back.
            let mut gate = (!req.tools.is_empty()).then(crate::quirks::text_tools::StreamGate::new);
            let res = self
                .attempt(
                    model,
                    api_key,
                    req.session_id.as_deref(),
                    &body,
                    cancel,
                    &mut |d| {
                        emitted = true;
                        match (d, gate.as_mut()) {
                            (StreamDelta::Text(t), Some(g)) => {
                                let shown = g.push(&t);
                                if !shown.is_empty() {
                                    on_delta(StreamDelta::Text(shown));
                                }
                            }
                            (d, _) => on_delta(d),
                        }
                    },
                )
                .await;
            let res = res.map(|mut msg| {
                let took = crate::quirks::promote_text_tool_calls(&mut msg, &req.tools);
                if let Some(g) = gate.as_mut() {
                    let rest = g.finish();
                    if !took && !rest.is_empty() {
                        on_delta(StreamDelta::Text(rest));
                    }
                }
                msg
            });
            match res {
                Err(e) if e.is_retryable() && !emitted && attempt < self.max_retries => {
                    attempt += 1;
                    let wait = e
                        .retry_after
                        .map(Duration::from_secs)
                        .unwrap_or(self.retry_base * 2u32.saturating_pow(attempt - 1))
                        .min(self.max_retry_wait);
                    tracing::debug!(attempt, ?wait, error = %e.message, "retrying model call");
                    tokio::select! {
                        () = cancel.cancelled() => return Err(ClientError::aborted()),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                other => return other,
            }
        }
    }

    async fn attempt(
        &self,
        model: &ResolvedModel,
        api_key: &str,
        session: Option<&str>,
        body: &Value,
        cancel: &CancellationToken,
        on_delta: &mut (dyn FnMut(StreamDelta) + Send),
    ) -> Result<AssistantMessage, ClientError> {
        let ollama = model.api == crate::config::ModelApi::Ollama;
        let url = if ollama {
            ollama::chat_url(&model.base_url)
        } else {
            chat_url(&model.base_url)
        };
        let mut rb = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .json(body);
        if !api_key.is_empty() {
            rb = rb.bearer_auth(api_key);
        }
        if let Some(s) = session {
            rb = rb.header("x-litellm-session-id", s);
        }
        for (k, v) in &model.headers {
            rb = rb.header(k, v);
        }
        let resp = tokio::select! {
            () = cancel.cancelled() => return Err(ClientError::aborted()),
            r = rb.send() => r.map_err(|e| connect_error(&model.base_url, &e))?,
        };
        let status = resp.status().as_u16();
        let header_cost = resp
            .headers()
            .get("x-litellm-response-cost")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_usd_to_nanos);
        if status >= 400 {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<f64>().ok())
                .map(|s| s.ceil().max(0.0) as u64);
            let text = tokio::select! {
                () = cancel.cancelled() => return Err(ClientError::aborted()),
                t = resp.text() => t.unwrap_or_default(),
            };
            let message = error_message(&text);
            let mut e = ClientError::from_status(
                status,
                format!("HTTP {status} from {url}: {message}"),
                retry_after,
            );
            if status == 401 || status == 403 {
                e.message.push_str(" (the provider rejected the API key)");
            }
            return Err(e);
        }
        let is_json = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.contains("application/json"));
        let mut parser = StreamParser::new();
        if ollama {
            let turn = self
                .read_ndjson(resp, &mut parser, cancel, on_delta)
                .await?;
            return Ok(to_message(model, turn, header_cost));
        }
        if is_json {
            // Some servers ignore `stream: true`; take the whole reply as one chunk.
            let text = tokio::select! {
                () = cancel.cancelled() => return Err(ClientError::aborted()),
                t = resp.text() => t.map_err(|e| ClientError::new(FailureKind::Transient, e.to_string()))?,
            };
            for d in parser.push_data(&non_stream_as_chunk(&text)?)? {
                on_delta(d);
            }
            parser.push_data("[DONE]")?;
            let turn = parser.finish(false)?;
            return Ok(to_message(model, turn, header_cost));
        }
        let mut body = resp.bytes_stream();
        // The gateway sends a streamed call's cost as a comment before `[DONE]`.
        let mut dec = idlehands_wire::SseDecoder::keeping_comments();
        let mut cut_short = false;
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return Err(ClientError::aborted()),
                n = body.next() => n,
            };
            match next {
                Some(Ok(bytes)) => {
                    for ev in dec.push(&bytes) {
                        for d in parser.push_data(&ev.data)? {
                            on_delta(d);
                        }
                    }
                    for comment in dec.take_comments() {
                        parser.push_comment(&comment);
                    }
                    if parser.saw_done() {
                        break;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "stream error");
                    cut_short = true;
                    break;
                }
                None => break,
            }
        }
        if let Some(ev) = dec.finish() {
            for d in parser.push_data(&ev.data)? {
                on_delta(d);
            }
        }
        let turn = parser.finish(cut_short)?;
        Ok(to_message(model, turn, header_cost))
    }

    /// Ollama's NDJSON stream, line by line through [`ollama::LineTranslator`].
    async fn read_ndjson(
        &self,
        resp: reqwest::Response,
        parser: &mut StreamParser,
        cancel: &CancellationToken,
        on_delta: &mut (dyn FnMut(StreamDelta) + Send),
    ) -> Result<ParsedTurn, ClientError> {
        let mut body = resp.bytes_stream();
        let mut tr = ollama::LineTranslator::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut cut_short = false;
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return Err(ClientError::aborted()),
                n = body.next() => n,
            };
            match next {
                Some(Ok(bytes)) => {
                    buf.extend_from_slice(&bytes);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        if let Some(c) = tr.chunk(&String::from_utf8_lossy(&line))? {
                            for d in parser.push_data(&c)? {
                                on_delta(d);
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "stream error");
                    cut_short = true;
                    break;
                }
                None => break,
            }
        }
        if let Some(c) = tr.chunk(&String::from_utf8_lossy(&buf))? {
            for d in parser.push_data(&c)? {
                on_delta(d);
            }
        }
        std::mem::take(parser).finish(cut_short)
    }

    /// `GET /v1/models`: the model ids a proxy serves.
    pub async fn list_models(
        &self,
        base_url: &str,
        api_key: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<String>, ClientError> {
        let url = models_url(base_url);
        let mut rb = self.http.get(&url).timeout(timeout);
        if let Some(k) = api_key.filter(|k| !k.is_empty()) {
            rb = rb.bearer_auth(k);
        }
        let resp = rb.send().await.map_err(|e| connect_error(base_url, &e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status >= 400 {
            let mut e = ClientError::from_status(
                status,
                format!("HTTP {status} from {url}: {}", error_message(&text)),
                None,
            );
            if status == 401 || status == 403 {
                e.message.push_str(" (the provider rejected the API key)");
            }
            return Err(e);
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            ClientError::new(
                FailureKind::Format,
                format!("{url} did not answer with a model list: {e}"),
            )
        })?;
        Ok(v.get("data")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

fn connect_error(base_url: &str, e: &reqwest::Error) -> ClientError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    ClientError::new(
        FailureKind::Transient,
        format!(
            "cannot reach {base_url} ({what}: {}). Is the proxy running? Check models.providers.<id>.baseUrl.",
            root_cause(e)
        ),
    )
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The human part of a provider's error body.
fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(m) = v.pointer("/error/message").and_then(Value::as_str) {
            return m.to_string();
        }
        if let Some(m) = v.get("detail").and_then(Value::as_str) {
            return m.to_string();
        }
        if let Some(m) = v.get("error").and_then(Value::as_str) {
            return m.to_string();
        }
    }
    let t = body.trim();
    if t.is_empty() {
        "(empty body)".into()
    } else {
        t.chars().take(500).collect()
    }
}

/// A non-streamed completion rewritten as one streamed chunk.
fn non_stream_as_chunk(text: &str) -> Result<String, ClientError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ClientError::new(FailureKind::Format, format!("invalid JSON reply: {e}")))?;
    let mut chunk =
        serde_json::json!({"choices": [], "usage": v.get("usage").cloned().unwrap_or(Value::Null)});
    if let Some(c) = v.pointer("/choices/0") {
        let mut delta = c.get("message").cloned().unwrap_or(Value::Null);
        if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
            for (i, call) in calls.iter_mut().enumerate() {
                call["index"] = serde_json::json!(i);
            }
        }
        chunk["choices"] = serde_json::json!([{"index": 0, "delta": delta, "finish_reason": c.get("finish_reason")}]);
    }
    if chunk["usage"].is_null()
        && let Some(o) = chunk.as_object_mut()
    {
        o.remove("usage");
    }
    Ok(chunk.to_string())
}

/// `"0.000123"` (USD, as LiteLLM sends it) to nano-dollars, without going through a float.
pub fn parse_usd_to_nanos(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.contains(['e', 'E']) {
        let f: f64 = s.parse().ok()?;
        return f.is_finite().then(|| (f * 1e9).round() as i64);
    }
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let int: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut frac9: String = frac.chars().take(9).collect();
    if !frac9.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while frac9.len() < 9 {
        frac9.push('0');
    }
    let n = int
        .checked_mul(1_000_000_000)?
        .checked_add(frac9.parse::<i64>().ok()?)?;
    Some(if neg { -n } else { n })
}

/// Token cost from the model's configured prices (USD per million tokens).
pub fn cost_from_prices(model: &ResolvedModel, u: &TokenUsage) -> Option<i64> {
    let c = model.cost;
    if c.input == 0.0 && c.output == 0.0 && c.cache_read == 0.0 && c.cache_write == 0.0 {
        return None;
    }
    // USD per 1M tokens is exactly 1000 nano-USD per token per unit price.
    let part = |tokens: u64, price: f64| (tokens as f64 * price * 1000.0).round() as i64;
    Some(
        part(u.input, c.input)
            + part(u.output, c.output)
            + part(u.cache_read, c.cache_read)
            + part(u.cache_write, c.cache_write),
    )
}

fn to_message(model: &ResolvedModel, t: ParsedTurn, header_cost: Option<i64>) -> AssistantMessage {
    let mut usage = TokenUsage::default();
    if let Some(u) = &t.usage {
        let cached = u.cached_tokens();
        usage.input = u.prompt_tokens.saturating_sub(cached);
        usage.output = u.completion_tokens;
        usage.cache_read = cached;
        usage.cache_write = u.cache_creation_input_tokens.unwrap_or(0);
        usage.total_tokens = usage.input + usage.output + usage.cache_read;
    }
    // The streamed `usage.cost` is the final figure; a header on a streamed response may be
    // absent or provisional. Configured prices are the last resort.
    usage.cost_nanos = t
        .usage_cost_nanos
        .or(header_cost)
        .or_else(|| cost_from_prices(model, &usage));
    let mut content = Vec::new();
    if !t.reasoning.is_empty() {
        content.push(ContentBlock::Thinking {
            thinking: t.reasoning,
            signature: t.reasoning_field.map(str::to_string),
        });
    }
    if !t.text.is_empty() {
        content.push(ContentBlock::Text { text: t.text });
    }
    for (id, name, arguments) in t.tool_calls {
        content.push(ContentBlock::ToolCall {
            id,
            name,
            arguments,
        });
    }
    AssistantMessage {
        content,
        provider: model.provider.clone(),
        model: model.id.clone(),
        usage,
        stop_reason: t.stop_reason,
        error_message: None,
        timestamp: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_accept_bases_with_or_without_v1() {
        assert_eq!(chat_url("http://h:4000"), "http://h:4000/chat/completions");
        assert_eq!(
            chat_url("http://h:4000/v1/"),
            "http://h:4000/v1/chat/completions"
        );
        assert_eq!(models_url("http://h:4000/"), "http://h:4000/v1/models");
        assert_eq!(models_url("http://h:4000/v1"), "http://h:4000/v1/models");
    }

    #[test]
    fn usd_strings_become_nanos_exactly() {
        assert_eq!(parse_usd_to_nanos("0.000123"), Some(123_000));
        assert_eq!(parse_usd_to_nanos("1.5"), Some(1_500_000_000));
        assert_eq!(parse_usd_to_nanos("0"), Some(0));
        assert_eq!(parse_usd_to_nanos("1.2e-05"), Some(12_000));
        assert_eq!(parse_usd_to_nanos("abc"), None);
    }
}
