//! OpenTelemetry traces (`litellm_settings.callbacks: ["otel"]`, or `success_callback` /
//! `failure_callback`): one span per call (`litellm_request`, GenAI semantic-convention
//! attributes) with a child span per upstream attempt (`raw_gen_ai_request`: retries and
//! fallbacks), exported as OTLP over HTTP/protobuf or gRPC.
//!
//! A call's spans go into a bounded queue and a background task sends them in batches, so the
//! request path never waits on the collector; when the queue is full (a dead or slow
//! collector) spans are dropped and counted, never the call. A client's W3C `traceparent` is
//! continued, and each upstream request carries one naming its attempt's span.

mod grpc;
mod proto;
mod span;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http::{HeaderName, HeaderValue};
use parking_lot::Mutex;

use crate::batch::BatchQueue;
use crate::config::ProxyConfig;
use crate::hooks::{CallRecord, CallStatus};
use span::{Kind, SpanData, Value};
pub(crate) use span::{TraceContext, span_id};

/// Where and how spans are sent.
#[derive(Debug, Clone)]
pub struct OtelSettings {
    /// The full traces URL (`.../v1/traces`) for HTTP; the collector's base URL for gRPC.
    pub endpoint: String,
    /// OTLP over gRPC rather than HTTP/protobuf.
    pub grpc: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub service_name: String,
    pub timeout: Duration,
    pub schedule_delay: Duration,
    pub max_batch: usize,
    pub max_queue: usize,
    /// Which calls are traced: `callbacks` means both, `success_callback` successes,
    /// `failure_callback` failures.
    pub on_success: bool,
    pub on_failure: bool,
}

fn listed(list: &[String]) -> bool {
    list.iter().any(|c| c.trim() == "otel")
}

/// LiteLLM's rule: the endpoint is the collector's base unless it already names the traces
/// path.
fn traces_url(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        return base.to_string();
    }
    for other in ["/v1/logs", "/v1/metrics"] {
        if let Some(stem) = base.strip_suffix(other) {
            return format!("{stem}/v1/traces");
        }
    }
    format!("{base}/v1/traces")
}

/// `key=value,key2=value2` (the OTLP headers variable), values percent-decoded as the
/// OpenTelemetry spec says. Names or values that are not valid headers are an error.
fn parse_headers(raw: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut out = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("{pair:?} is not key=value"));
        };
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| format!("{:?} is not a header name", k.trim()))?;
        let value = HeaderValue::from_str(&percent_decode(v.trim()))
            .map_err(|_| format!("the value of {name} is not a valid header value"))?;
        out.push((name, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(text) = std::str::from_utf8(hex)
            && let Ok(v) = u8::from_str_radix(text, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl OtelSettings {
    /// The settings when `otel` is among the callbacks. `Err` says why tracing cannot run
    /// (it is then named at start-up and the gateway serves without it).
    pub fn from_config(cfg: &ProxyConfig) -> Option<Result<Self, String>> {
        let ls = &cfg.file.litellm_settings;
        let both = listed(&ls.callbacks);
        let on_success = both || listed(&ls.success_callback);
        let on_failure = both || listed(&ls.failure_callback);
        if !on_success && !on_failure {
            return None;
        }
        let env = |k: &str| cfg.observe_env.get(k).filter(|v| !v.trim().is_empty());
        Some((|| {
            let protocol = env("OTEL_EXPORTER_OTLP_PROTOCOL")
                .or_else(|| env("OTEL_EXPORTER"))
                .map(|p| p.trim().to_ascii_lowercase());
            let grpc = match protocol.as_deref() {
                None | Some("otlp_http" | "http/protobuf" | "otlp") => false,
                Some("grpc" | "otlp_grpc") => true,
                Some(other) => {
                    return Err(format!(
                        "OTEL exporter {other:?} is not supported; only OTLP over HTTP/protobuf (http/protobuf, otlp_http) or gRPC (grpc, otlp_grpc)"
                    ));
                }
            };
            let base = env("OTEL_EXPORTER_OTLP_ENDPOINT").or_else(|| env("OTEL_ENDPOINT"));
            let endpoint = match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(e) => e.trim().to_string(),
                None => {
                    let base = base.ok_or("no collector: set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_ENDPOINT), e.g. http://127.0.0.1:4318")?;
                    if grpc {
                        base.trim().to_string()
                    } else {
                        traces_url(base)
                    }
                }
            };
            let url = reqwest::Url::parse(&endpoint)
                .map_err(|_| "the OTLP endpoint is not a URL".to_string())?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err("the OTLP endpoint must be http:// or https://".to_string());
            }
            let headers = match env("OTEL_EXPORTER_OTLP_HEADERS").or_else(|| env("OTEL_HEADERS")) {
                Some(raw) => {
                    parse_headers(raw).map_err(|e| format!("OTEL_EXPORTER_OTLP_HEADERS: {e}"))?
                }
                None => Vec::new(),
            };
            let number = |k: &str, default: u64| -> Result<u64, String> {
                match env(k) {
                    None => Ok(default),
                    Some(v) => v
                        .trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("{k} must be a positive whole number")),
                }
            };
            if grpc {
                grpc::GrpcClient::new(&endpoint)?;
            }
            Ok(OtelSettings {
                endpoint,
                grpc,
                headers,
                service_name: env("OTEL_SERVICE_NAME")
                    .map_or_else(|| "litellm".to_string(), |s| s.trim().to_string()),
                timeout: Duration::from_millis(number("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?),
                schedule_delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5_000)?),
                max_batch: number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)? as usize,
                max_queue: number("OTEL_BSP_MAX_QUEUE_SIZE", 2048)? as usize,
                on_success,
                on_failure,
            })
        })())
    }
}

/// One upstream attempt of a call, for its child span.
#[derive(Debug, Clone)]
pub(crate) struct AttemptSpan {
    pub span_id: [u8; 8],
    pub model: String,
    pub model_id: String,
    pub provider: String,
    pub api_base: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The attempt's failure: status and message.
    pub error: Option<(u16, String)>,
}

tokio::task_local! {
    static UPSTREAM_TRACEPARENT: HeaderValue;
}

/// Run `f` (an upstream attempt) so that its request carries `traceparent`.
pub(crate) fn with_traceparent<R>(tp: Option<HeaderValue>, f: impl FnOnce() -> R) -> R {
    match tp {
        Some(tp) => UPSTREAM_TRACEPARENT.sync_scope(tp, f),
        None => f(),
    }
}

/// The same for the attempt's future. Not an `async fn`, which would hold `f` beside the
/// future that runs it.
pub(crate) fn scoped<F: std::future::Future>(
    tp: Option<HeaderValue>,
    f: F,
) -> futures_util::future::Either<tokio::task::futures::TaskLocalFuture<HeaderValue, F>, F> {
    match tp {
        Some(tp) => futures_util::future::Either::Left(UPSTREAM_TRACEPARENT.scope(tp, f)),
        None => futures_util::future::Either::Right(f),
    }
}

/// The `traceparent` the upstream request being built should carry, when tracing is on.
pub(crate) fn upstream_traceparent() -> Option<HeaderValue> {
    UPSTREAM_TRACEPARENT.try_with(Clone::clone).ok()
}

/// The exporter: a bounded queue in front of a batching task.
pub struct Otel {
    on_success: bool,
    on_failure: bool,
    /// One entry per call (its spans).
    queue: BatchQueue<Vec<SpanData>>,
}

impl std::fmt::Debug for Otel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otel")
            .field("dropped", &self.queue.dropped())
            .finish_non_exhaustive()
    }
}

impl Otel {
    pub fn new(settings: OtelSettings, client: reqwest::Client) -> Arc<Self> {
        let resource: Arc<[(String, Value)]> = Arc::from(vec![
            (
                "service.name".to_string(),
                Value::from(settings.service_name.as_str()),
            ),
            ("telemetry.sdk.name".to_string(), Value::from("idlehands")),
            ("telemetry.sdk.language".to_string(), Value::from("rust")),
        ]);
        let last_warning: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (on_success, on_failure) = (settings.on_success, settings.on_failure);
        let (cap, batch, delay) = (
            settings.max_queue,
            settings.max_batch,
            settings.schedule_delay,
        );
        // Checked when the settings were read; should it fail here, HTTP is used.
        let grpc: Option<Arc<grpc::GrpcClient>> = settings
            .grpc
            .then(|| grpc::GrpcClient::new(&settings.endpoint).ok().map(Arc::new))
            .flatten();
        let queue = BatchQueue::new(
            "OpenTelemetry",
            cap,
            batch,
            delay,
            move |calls: Vec<Vec<SpanData>>| {
                let (client, settings, resource) =
                    (client.clone(), settings.clone(), resource.clone());
                let last_warning = last_warning.clone();
                let grpc = grpc.clone();
                async move {
                    let spans: Vec<SpanData> = calls.into_iter().flatten().collect();
                    let body = proto::export_request(&resource, "litellm", &spans);
                    let sent = match &grpc {
                        Some(g) => export_grpc(g, &settings, body).await,
                        None => export(&client, &settings, body).await,
                    };
                    if let Err(e) = sent {
                        let mut last = last_warning.lock();
                        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                            *last = Some(Instant::now());
                            tracing::warn!(spans = spans.len(), error = %e, "OpenTelemetry: export failed; spans dropped");
                        }
                    }
                }
            },
        );
        Arc::new(Self {
            on_success,
            on_failure,
            queue,
        })
    }

    /// Calls whose spans were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    /// Queue a finished call's spans; never waits.
    pub(crate) fn record(
        &self,
        record: &CallRecord,
        ctx: &TraceContext,
        attempts: Vec<AttemptSpan>,
    ) {
        let failed = record.status == CallStatus::Failure;
        if (failed && !self.on_failure) || (!failed && !self.on_success) {
            return;
        }
        self.queue.push(call_spans(record, ctx, attempts));
    }
}

fn unix_nanos(t: DateTime<Utc>) -> u64 {
    t.timestamp_nanos_opt()
        .map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

fn operation(call_type: &str) -> &str {
    match call_type {
        "acompletion" => "chat",
        "atext_completion" => "text_completion",
        "aembedding" => "embeddings",
        other => other.trim_start_matches('a'),
    }
}

/// The call's span and one child per attempt.
fn call_spans(r: &CallRecord, ctx: &TraceContext, attempts: Vec<AttemptSpan>) -> Vec<SpanData> {
    let mut a: Vec<(&'static str, Value)> = vec![
        ("gen_ai.operation.name", operation(r.call_type).into()),
        ("gen_ai.system", r.custom_llm_provider.as_str().into()),
        (
            "gen_ai.provider.name",
            r.custom_llm_provider.as_str().into(),
        ),
        ("gen_ai.request.model", r.model_group.as_str().into()),
        ("gen_ai.response.model", r.model.as_str().into()),
        (
            "gen_ai.usage.input_tokens",
            Value::Int(r.prompt_tokens as i64),
        ),
        (
            "gen_ai.usage.output_tokens",
            Value::Int(r.completion_tokens as i64),
        ),
        (
            "gen_ai.usage.total_tokens",
            Value::Int(r.total_tokens as i64),
        ),
        (
            "gen_ai.cost.total_cost",
            Value::F64(r.cost_nanos as f64 / 1e9),
        ),
        ("llm.request.type", r.call_type.into()),
        ("llm.is_streaming", Value::Bool(r.stream)),
        ("litellm.call_id", r.call_id.as_str().into()),
        ("litellm.model_id", r.model_id.as_str().into()),
        (
            "http.response.status_code",
            Value::Int(i64::from(r.http_status)),
        ),
    ];
    let mut opt = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            a.push((k, v.into()));
        }
    };
    opt("gen_ai.response.id", &r.response_id);
    opt("gen_ai.user", &r.end_user);
    opt("metadata.user_api_key_hash", &r.api_key_hash);
    opt("metadata.user_api_key_alias", &r.key_alias);
    opt("metadata.user_api_key_team_id", &r.team_id);
    opt("metadata.user_api_key_user_id", &r.user_id);
    opt("metadata.user_api_key_end_user_id", &r.end_user);
    opt("server.address", &r.api_base);
    let failed = r.status == CallStatus::Failure;
    if failed {
        a.push((
            "error.type",
            crate::metrics::exception_class(&r.custom_llm_provider, r.http_status).into(),
        ));
    }
    let mut spans = Vec::with_capacity(1 + attempts.len());
    spans.push(SpanData {
        trace_id: ctx.trace_id,
        span_id: ctx.span_id,
        parent_span_id: ctx.parent_span_id,
        flags: ctx.flags,
        name: "litellm_request".to_string(),
        kind: Kind::Server,
        start_unix_nanos: unix_nanos(r.start_time),
        end_unix_nanos: unix_nanos(r.end_time),
        attributes: a,
        error: failed.then(|| r.error_message.clone().unwrap_or_default()),
    });
    for (i, at) in attempts.into_iter().enumerate() {
        let mut attrs: Vec<(&'static str, Value)> = vec![
            ("gen_ai.operation.name", operation(r.call_type).into()),
            ("gen_ai.system", at.provider.as_str().into()),
            ("gen_ai.provider.name", at.provider.into()),
            ("gen_ai.request.model", at.model.into()),
            ("litellm.model_id", at.model_id.into()),
            ("litellm.attempt", Value::Int(i as i64 + 1)),
        ];
        if let Some(base) = at.api_base {
            attrs.push(("server.address", base.into()));
        }
        if let Some((status, _)) = &at.error {
            attrs.push(("http.response.status_code", Value::Int(i64::from(*status))));
        }
        spans.push(SpanData {
            trace_id: ctx.trace_id,
            span_id: at.span_id,
            parent_span_id: Some(ctx.span_id),
            flags: ctx.flags,
            name: "raw_gen_ai_request".to_string(),
            kind: Kind::Client,
            start_unix_nanos: unix_nanos(at.start),
            end_unix_nanos: unix_nanos(at.end),
            attributes: attrs,
            error: at.error.map(|(_, m)| m),
        });
    }
    spans
}

/// One gRPC call, retried once after a short pause.
async fn export_grpc(g: &grpc::GrpcClient, s: &OtelSettings, body: Vec<u8>) -> Result<(), String> {
    match g.export(body.clone(), &s.headers, s.timeout).await {
        Ok(()) => Ok(()),
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            g.export(body, &s.headers, s.timeout).await
        }
    }
}

/// One POST, retried once after a short pause when the collector is unreachable or busy.
async fn export(client: &reqwest::Client, s: &OtelSettings, body: Vec<u8>) -> Result<(), String> {
    let body = bytes::Bytes::from(body);
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut req = client
            .post(&s.endpoint)
            .timeout(s.timeout)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body.clone());
        for (k, v) in &s.headers {
            req = req.header(k.clone(), v.clone());
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => {
                let status = resp.status().as_u16();
                last = format!("the collector answered {status}");
                if !matches!(status, 429 | 502 | 503 | 504) {
                    return Err(last);
                }
            }
            Err(e) => {
                last = if e.is_timeout() {
                    "the collector did not answer in time".to_string()
                } else {
                    "the collector could not be reached".to_string()
                };
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_the_traces_path_as_litellm() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/logs"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn headers_are_pairs_with_percent_decoded_values() {
        let h = parse_headers("api-key=abc%20def, x-team = t1").unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].0, "api-key");
        assert_eq!(h[0].1, "abc def");
        assert_eq!(h[1].1, "t1");
        assert!(parse_headers("novalue").is_err());
    }
}
