//! Logs: the process's tracing setup (plain or JSON lines, LiteLLM's `json_logs`), a span per
//! request that carries the call id, and full request/response logging for debugging:
//!
//! - `general_settings.store_prompts_in_spend_logs: true` puts the request's `messages` and
//!   the `response` into the spend-log row ([`CallRecord::messages`] / `response`), each string
//!   cut at 2048 characters as LiteLLM does;
//! - `general_settings.request_log_path: <file>` (ours) appends one JSON line per call with
//!   the whole request and response bodies.
//!
//! Both are redacted: fields named like credentials and `sk-...` / `Bearer ...` strings are
//! replaced. When both are off nothing is captured and a call costs nothing extra.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::config::{ConfigError, ProxyConfig};
use crate::hooks::CallRecord;
use crate::pricing::nanos_to_usd_string;

/// LiteLLM's `MAX_STRING_LENGTH_PROMPT_IN_DB`.
pub const MAX_STRING_CHARS_IN_SPEND_LOG: usize = 2048;

const REDACTED: &str = "[redacted]";

/// How the process logs; see [`LogOptions::resolve`] and [`init`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// One JSON object per line instead of human-readable text.
    pub json: bool,
    /// An `EnvFilter` directive (`warn`, `info`, `idlehands_proxy=debug`, ...).
    pub filter: String,
}

fn truthy(v: Option<String>) -> bool {
    v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

impl LogOptions {
    /// The filter: `RUST_LOG`, else `--detailed_debug` (debug), else `--debug` (info), else
    /// `LITELLM_LOG`, else `warn`. JSON: env `JSON_LOGS=true` or `litellm_settings.json_logs`.
    pub fn resolve(
        cfg: Option<&ProxyConfig>,
        debug: bool,
        detailed_debug: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let filter = env("RUST_LOG")
            .filter(|f| !f.trim().is_empty())
            .or_else(|| detailed_debug.then(|| "debug".to_string()))
            .or_else(|| debug.then(|| "info".to_string()))
            .or_else(|| env("LITELLM_LOG").map(|l| l.trim().to_ascii_lowercase()))
            .unwrap_or_else(|| "warn".to_string());
        let json = truthy(env("JSON_LOGS"))
            || cfg.is_some_and(|c| c.file.litellm_settings.json_logs == Some(true));
        Self { json, filter }
    }
}

/// Install the global tracing subscriber (stderr). `false` when one was already installed.
/// In JSON mode every event carries the fields of its request span, `call_id` included.
pub fn init(opts: &LogOptions) -> bool {
    init_with_writer(opts, std::io::stderr)
}

/// [`init`] with another destination (tests, files).
pub fn init_with_writer<W>(opts: &LogOptions, writer: W) -> bool
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&opts.filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Redacting(writer));
    if opts.json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init()
            .is_ok()
    } else {
        builder.try_init().is_ok()
    }
}

/// The last line of defence: every formatted log line, at every level and from every crate
/// (an upstream's error text, a dependency's debug line), has its keys replaced before it is
/// written. The formatter hands over one whole event per write, so a key is never split.
struct Redacting<W>(W);

struct RedactingWriter<W>(W);

impl<'w, W: tracing_subscriber::fmt::MakeWriter<'w>> tracing_subscriber::fmt::MakeWriter<'w>
    for Redacting<W>
{
    type Writer = RedactingWriter<W::Writer>;
    fn make_writer(&'w self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
    fn make_writer_for(&'w self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter(self.0.make_writer_for(meta))
    }
}

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) if looks_secret(text) => self.0.write_all(redact_str(text).as_bytes())?,
            Ok(_) => self.0.write_all(buf)?,
            Err(_) => {
                let text = String::from_utf8_lossy(buf);
                self.0.write_all(redact_str(&text).as_bytes())?;
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A request path as logged: the key in `/key/{key}/regenerate` is replaced whatever its
/// shape (it may be a key without the `sk-` prefix, or percent-encoded), and any other
/// segment that looks like a key is too.
pub(crate) fn redact_path(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let mut out = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        let key_slot = i > 0
            && segments[i - 1] == "key"
            && segments.get(i + 1) == Some(&"regenerate")
            && !seg.is_empty();
        if key_slot {
            out.push(REDACTED.to_string());
        } else {
            out.push(redact_str(seg));
        }
    }
    out.join("/")
}

/// Whether the installed subscriber wants [`request_span`]'s span and line (decided when the
/// router is built: install logging first).
pub(crate) fn request_spans_enabled() -> bool {
    tracing::enabled!(target: "idlehands_proxy::logging", tracing::Level::INFO)
}

/// Middleware: every request runs in a `request` span; model calls fill in `call_id` (the
/// `x-litellm-call-id` they answer with) so that each log line of the call names it.
pub(crate) async fn request_span(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = redact_path(req.uri().path()).as_str(),
        call_id = tracing::field::Empty,
    );
    async move {
        let started = std::time::Instant::now();
        let resp = next.run(req).await;
        tracing::info!(
            status = resp.status().as_u16(),
            latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "request answered"
        );
        resp
    }
    .instrument(span)
    .await
}

/// Name the current request span's call.
pub(crate) fn record_call_id(call_id: &str) {
    tracing::Span::current().record("call_id", call_id);
}

/// What one call captured, only while payload logging is on.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    request: Bytes,
    response: Option<Bytes>,
    stream: Option<StreamText>,
}

/// A streamed answer put back together: the text, the reasoning, raw tool-call deltas.
#[derive(Debug, Default)]
struct StreamText {
    id: Option<String>,
    model: Option<String>,
    content: String,
    reasoning: String,
    tool_calls: Vec<Value>,
    finish_reason: Option<String>,
}

impl Capture {
    pub fn response(&mut self, body: &Bytes) {
        self.response = Some(body.clone());
    }

    /// One SSE `data:` payload of a streamed chat answer.
    pub fn stream_chunk(&mut self, data: &str) {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let s = self.stream.get_or_insert_with(StreamText::default);
        if s.id.is_none() {
            s.id = v.get("id").and_then(Value::as_str).map(str::to_string);
            s.model = v.get("model").and_then(Value::as_str).map(str::to_string);
        }
        let Some(choice) = v.pointer("/choices/0") else {
            return;
        };
        if let Some(d) = choice.get("delta") {
            if let Some(t) = d.get("content").and_then(Value::as_str) {
                s.content.push_str(t);
            }
            for k in ["reasoning_content", "reasoning"] {
                if let Some(t) = d.get(k).and_then(Value::as_str) {
                    s.reasoning.push_str(t);
                }
            }
            if let Some(Value::Array(calls)) = d.get("tool_calls") {
                s.tool_calls.extend(calls.iter().cloned());
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            s.finish_reason = Some(f.to_string());
        }
    }

    fn response_value(&self) -> Option<Value> {
        if let Some(s) = &self.stream {
            let mut message = Map::new();
            message.insert("role".into(), "assistant".into());
            message.insert("content".into(), s.content.clone().into());
            if !s.reasoning.is_empty() {
                message.insert("reasoning_content".into(), s.reasoning.clone().into());
            }
            if !s.tool_calls.is_empty() {
                message.insert("tool_call_deltas".into(), s.tool_calls.clone().into());
            }
            return Some(json!({
                "id": s.id,
                "object": "chat.completion",
                "model": s.model,
                "choices": [{"index": 0, "message": message, "finish_reason": s.finish_reason}],
            }));
        }
        let body = self.response.as_ref()?;
        Some(
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
        )
    }
}

/// The gateway's payload logging, fixed at start-up.
#[derive(Debug, Default)]
pub(crate) struct PayloadLog {
    store_prompts: bool,
    file: Option<mpsc::Sender<String>>,
}

impl PayloadLog {
    pub fn from_config(cfg: &ProxyConfig) -> Result<Self, ConfigError> {
        let gs = &cfg.file.general_settings;
        let path = gs
            .extra
            .get("request_log_path")
            .and_then(Value::as_str)
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from);
        let file = match path {
            Some(p) => Some(open_request_log(&p).map_err(|e| {
                ConfigError::Startup(format!(
                    "cannot open general_settings.request_log_path {}: {e}",
                    p.display()
                ))
            })?),
            None => None,
        };
        Ok(Self {
            store_prompts: gs.store_prompts_in_spend_logs == Some(true),
            file,
        })
    }

    /// Whether calls should capture their bodies at all.
    pub fn enabled(&self) -> bool {
        self.store_prompts || self.file.is_some()
    }

    /// A capture for a new call, holding its request body; `None` when logging is off.
    pub fn capture(&self, request: &Bytes) -> Option<Box<Capture>> {
        self.enabled().then(|| {
            Box::new(Capture {
                request: request.clone(),
                ..Capture::default()
            })
        })
    }

    /// Log the finished call (info), fill the record's payload columns and write the
    /// request-log line.
    pub fn finish(&self, record: &mut CallRecord, capture: Option<Box<Capture>>) {
        // Fields, not a span: a stream's record is made after its request span has closed.
        tracing::info!(
            call_id = record.call_id.as_str(),
            response_id = record.response_id.as_deref(),
            call_type = record.call_type,
            model_group = record.model_group.as_str(),
            model = record.model.as_str(),
            key_alias = record.key_alias.as_deref().map(redact_str).as_deref(),
            status = record.status.as_str(),
            http_status = record.http_status,
            prompt_tokens = record.prompt_tokens,
            completion_tokens = record.completion_tokens,
            spend = nanos_to_usd_string(record.cost_nanos).as_str(),
            duration_ms = u64::try_from(record.duration().as_millis()).unwrap_or(u64::MAX),
            stream = record.stream,
            "call finished"
        );
        let Some(capture) = capture else {
            return;
        };
        let mut request: Value = serde_json::from_slice(&capture.request).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&capture.request).into_owned())
        });
        redact(&mut request);
        let mut response = capture.response_value();
        if let Some(r) = &mut response {
            redact(r);
        }
        if let Some(tx) = &self.file {
            let mut line = json!({
                "time": record.end_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "call_id": record.call_id,
                "response_id": record.response_id,
                "call_type": record.call_type,
                "status": record.status.as_str(),
                "http_status": record.http_status,
                "error": record.error_message.as_deref().map(redact_str),
                "model_group": record.model_group,
                "model": record.model,
                "api_base": record.api_base,
                "key_alias": record.key_alias,
                "user": record.user_id,
                "end_user": record.end_user,
                "duration_ms": u64::try_from(record.duration().as_millis()).unwrap_or(u64::MAX),
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "spend": nanos_to_usd_string(record.cost_nanos),
                "request": request,
                "response": response,
            });
            // Every field, not only the bodies: a client can put a key anywhere (`user`,
            // `metadata`, a key alias), and an upstream's error text may echo one.
            redact(&mut line);
            if let Value::Object(m) = &mut line {
                // The key's hash, not the key: what `/spend/logs?api_key=` takes.
                m.insert("api_key".into(), json!(record.api_key_hash));
            }
            let _ = tx.send(line.to_string());
        }
        if self.store_prompts {
            let mut messages = request
                .get("messages")
                .or_else(|| request.get("input"))
                .cloned()
                .unwrap_or(request);
            truncate_strings(&mut messages, MAX_STRING_CHARS_IN_SPEND_LOG);
            record.messages = Some(messages);
            record.response = response.map(|mut r| {
                truncate_strings(&mut r, MAX_STRING_CHARS_IN_SPEND_LOG);
                r
            });
        }
    }
}

/// Lines go to a writer thread so a slow disk never holds a request; it ends when the
/// gateway (the sender) is dropped.
fn open_request_log(path: &Path) -> std::io::Result<mpsc::Sender<String>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut open = std::fs::OpenOptions::new();
    open.create(true).append(true);
    // Prompts and answers: for the owner's eyes only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let file = open.open(path)?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::Builder::new()
        .name("idlehands-request-log".to_string())
        .spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Ok(line) = rx.recv() {
                let mut ok = writeln!(out, "{line}").is_ok();
                while let Ok(more) = rx.try_recv() {
                    ok &= writeln!(out, "{more}").is_ok();
                }
                if !(ok && out.flush().is_ok()) {
                    tracing::warn!("cannot write the request log");
                }
            }
        })?;
    Ok(tx)
}

/// Names of JSON fields whose values are credentials (compared case-insensitively, with `-`
/// read as `_`).
const SECRET_FIELDS: &[&str] = &[
    "authorization",
    "api_key",
    "apikey",
    "x_api_key",
    "x_litellm_api_key",
    "api_token",
    "access_token",
    "refresh_token",
    "password",
    "secret",
    "client_secret",
    "master_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "vertex_credentials",
    "azure_ad_token",
];

/// Endings that make any field name a credential (`x-goog-api-key`, `openai_api_key`,
/// `session_token`, `proxy-authorization`, `db_password`).
const SECRET_SUFFIXES: &[&str] = &[
    "api_key",
    "apikey",
    "_token",
    "authorization",
    "password",
    "_secret",
    "cookie",
];

fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('-', "_");
    SECRET_FIELDS.contains(&n.as_str()) || SECRET_SUFFIXES.iter().any(|s| n.ends_with(s))
}

/// Replace credentials in a JSON value, in place.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if is_secret_field(k) && !val.is_null() {
                    *val = Value::String(REDACTED.to_string());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        Value::String(s) if looks_secret(s) => *s = redact_str(s),
        _ => {}
    }
}

fn looks_secret(s: &str) -> bool {
    s.contains("sk-") || find_bearer(s).is_some()
}

/// `Bearer ` in any case (headers are case-insensitive, and so are the clients that echo them).
fn find_bearer(s: &str) -> Option<usize> {
    s.as_bytes()
        .windows(7)
        .position(|w| w.eq_ignore_ascii_case(b"bearer "))
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// The text with `sk-...` keys (8+ key characters) and `Bearer <token>` replaced.
pub fn redact_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let sk = rest.find("sk-");
        let bearer = find_bearer(rest);
        let (at, skip) = match (sk, bearer) {
            (Some(a), Some(b)) if b < a => (b, 7),
            (Some(a), _) => (a, 3),
            (None, Some(b)) => (b, 7),
            (None, None) => break,
        };
        // A match inside a longer word (`task-...`) is not a key; after `-` or `_` it is
        // (`my_sk-...`, `prod-sk-...`: prefixes people put on keys).
        out.push_str(&rest[..at]);
        let inside_word = out
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let tail = &rest[at + skip..];
        if inside_word {
            // Only the match is skipped: a key may start right after it (`task-sk-...`).
            out.push_str(&rest[at..at + skip]);
            rest = tail;
            continue;
        }
        let token_len: usize = tail
            .chars()
            .take_while(|c| is_key_char(*c) || *c == '.')
            .map(char::len_utf8)
            .sum();
        if token_len >= 8 {
            out.push_str(&rest[at..at + skip]);
            out.push_str(REDACTED);
        } else {
            out.push_str(&rest[at..at + skip + token_len]);
        }
        rest = &tail[token_len..];
    }
    out.push_str(rest);
    out
}

/// Cut every string in the value to at most `max` characters.
pub fn truncate_strings(v: &mut Value, max: usize) {
    match v {
        Value::String(s) => {
            if let Some((i, _)) = s.char_indices().nth(max) {
                s.truncate(i);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| truncate_strings(x, max)),
        Value::Object(m) => m.values_mut().for_each(|x| truncate_strings(x, max)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_bearer_tokens_are_redacted_but_words_are_not() {
        assert_eq!(
            redact_str("use sk-abcdef123456 and Bearer eyJhbGciOi.x.y now"),
            "use sk-[redacted] and Bearer [redacted] now"
        );
        // After `-`/`_` it is a key people prefixed; after a letter, part of a word.
        assert_eq!(redact_str("task-sk-abcdefghijk"), "task-sk-[redacted]");
        assert_eq!(redact_str("my_sk-abcdefghijk"), "my_sk-[redacted]");
        assert_eq!(redact_str("disk-abcdefghijk"), "disk-abcdefghijk");
        assert_eq!(
            redact_str("authorization: BEARER abcdefghijk, bearer abcdefghijk"),
            "authorization: BEARER [redacted], bearer [redacted]"
        );
        assert_eq!(redact_str("the bearer of news"), "the bearer of news");
        assert_eq!(redact_str("sk-short"), "sk-short");
        assert_eq!(redact_str("é sk-ÄÖ"), "é sk-ÄÖ");
        let mut v = json!({
            "api_key": "anything",
            "Authorization": "x",
            "nested": [{"x-api-key": "k", "text": "key sk-live-0123456789"}],
            "max_tokens": 5,
            "password": null,
            "API-KEY": "k",
            "x-goog-api-key": "AIza-k",
            "session_token": "t",
            "Proxy-Authorization": "Basic x",
            "prompt_tokens": 3,
            "user": "my_sk-0123456789abc",
        });
        redact(&mut v);
        assert_eq!(
            v,
            json!({
                "api_key": REDACTED,
                "Authorization": REDACTED,
                "nested": [{"x-api-key": REDACTED, "text": "key sk-[redacted]"}],
                "max_tokens": 5,
                "password": null,
                "API-KEY": REDACTED,
                "x-goog-api-key": REDACTED,
                "session_token": REDACTED,
                "Proxy-Authorization": REDACTED,
                "prompt_tokens": 3,
                "user": "my_sk-[redacted]",
            })
        );
    }

    #[test]
    fn paths_lose_their_keys() {
        assert_eq!(
            redact_path("/key/sk-abcdefghijklmnop/regenerate"),
            "/key/[redacted]/regenerate"
        );
        assert_eq!(
            redact_path("/key/sk%2Dabcdefghijklmnop/regenerate"),
            "/key/[redacted]/regenerate"
        );
        assert_eq!(redact_path("/key/regenerate"), "/key/regenerate");
        assert_eq!(
            redact_path("/v1/models/sk-abcdefghijkl"),
            "/v1/models/sk-[redacted]"
        );
        assert_eq!(redact_path("/v1/chat/completions"), "/v1/chat/completions");
    }

    #[test]
    fn the_log_writer_redacts_every_line() {
        use std::io::Write as _;
        let mut out = RedactingWriter(Vec::new());
        let line = b"WARN upstream said: Incorrect API key provided: sk-proj-abcdefghijkl\n";
        assert_eq!(out.write(line).unwrap(), line.len());
        out.write_all(b"plain line\n").unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "WARN upstream said: Incorrect API key provided: sk-[redacted]\nplain line\n"
        );
    }

    #[test]
    fn strings_are_cut_at_a_char_boundary() {
        let mut v = json!({"a": "é".repeat(3000), "b": ["short", "x".repeat(2049)], "n": 1});
        truncate_strings(&mut v, 2048);
        assert_eq!(v["a"].as_str().unwrap().chars().count(), 2048);
        assert_eq!(v["b"][0], "short");
        assert_eq!(v["b"][1].as_str().unwrap().len(), 2048);
        assert_eq!(v["n"], 1);
    }

    #[test]
    fn stream_chunks_are_put_back_together() {
        let mut c = Capture::default();
        c.stream_chunk(
            r#"{"id":"c1","model":"m","choices":[{"delta":{"role":"assistant","content":"Hel"}}]}"#,
        );
        c.stream_chunk(
            r#"{"id":"c1","choices":[{"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
        );
        c.stream_chunk("not json");
        let v = c.response_value().unwrap();
        assert_eq!(v["id"], "c1");
        assert_eq!(v["choices"][0]["message"]["content"], "Hello");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn options_follow_flags_env_and_config() {
        let none = |_: &str| None;
        assert_eq!(
            LogOptions::resolve(None, false, false, &none),
            LogOptions {
                json: false,
                filter: "warn".into()
            }
        );
        let env = |k: &str| match k {
            "JSON_LOGS" => Some("True".to_string()),
            "LITELLM_LOG" => Some("DEBUG".to_string()),
            _ => None,
        };
        let o = LogOptions::resolve(None, false, false, &env);
        assert!(o.json);
        assert_eq!(o.filter, "debug");
        assert_eq!(LogOptions::resolve(None, true, true, &none).filter, "debug");
        assert_eq!(LogOptions::resolve(None, true, false, &none).filter, "info");
    }
}
