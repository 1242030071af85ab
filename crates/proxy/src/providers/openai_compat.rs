//! OpenAI-compatible upstreams (`openai/`, `hosted_vllm/`, `ollama/`, bare names, any
//! `api_base`): the request goes out as built, the answer comes back as bytes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use http::{HeaderMap, HeaderValue, header};
use http_body_util::Full;
use serde_json::Value;

use super::{ChatCall, ChatReply, EmbeddingReply, Endpoint, JsonRoute, Provider};
use crate::error::{ProxyError, upstream_failure};
use crate::providers::Deployment;

static ORGANIZATION: http::HeaderName = http::HeaderName::from_static("openai-organization");

pub struct OpenAiCompatible {
    /// `OpenAIException`, `Hosted_vllmException`: the prefix LiteLLM puts in messages.
    label: Arc<str>,
    /// Parsed once: URL parsing showed up in request-path profiles.
    chat_url: Result<Target, String>,
    completions_url: Result<Target, String>,
    embeddings_url: Result<Target, String>,
    /// `None`: `Authorization: Bearer`; Azure's `api-key` otherwise.
    key_header: Option<&'static str>,
    /// `litellm_params.organization`, sent as `OpenAI-Organization`.
    organization: Option<HeaderValue>,
    /// The server's root (`api_base` without `/v1`) where it may count tokens: a server of
    /// one's own (a base other than the provider's public one; never Ollama's or LM Studio's,
    /// which have no tokenizer API).
    tokenize_root: Option<reqwest::Url>,
    /// Until when the server is not asked to count again (Unix ms): one that answered it has
    /// no tokenizer route is not sent a request per count.
    no_tokenizer_until: Arc<std::sync::atomic::AtomicI64>,
    /// Calls may use the direct client (false under `ssl_verify` or `force_ipv4` settings).
    direct: bool,
}

/// An upstream endpoint in both clients' forms.
struct Target {
    /// reqwest's, which also serves an HTTP proxy (absolute-form is right there).
    url: reqwest::Url,
    /// The direct client's request target: path and query only (origin-form).
    path: http::Uri,
    /// The `Host` header that goes with `path`, formatted once rather than on every call.
    host: Option<HeaderValue>,
    /// The direct client's pool key and connection address.
    origin: super::direct::Origin,
}

impl Target {
    fn new(url: reqwest::Url) -> Result<Self, String> {
        let uri = url
            .as_str()
            .parse::<http::Uri>()
            .map_err(|e| format!("api_base gives an invalid URL: {e}"))?;
        // The URL parser has already dropped a port that is the scheme's default, and keeps
        // an IPv6 host in its brackets.
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => HeaderValue::from_str(&format!("{h}:{p}")).ok(),
            (Some(h), None) => HeaderValue::from_str(h).ok(),
            (None, _) => None,
        };
        let origin = super::direct::origin(&uri)
            .ok_or_else(|| "api_base gives a URL with no host".to_string())?;
        Ok(Target {
            path: super::direct::origin_form(&uri),
            url,
            host,
            origin,
        })
    }
}

/// `{api_base}{path}`, keeping a query string of the base (`...?api-version=x`) at the end.
fn endpoint(base: &str, path: &str) -> Result<Target, String> {
    let mut url = reqwest::Url::parse(base)
        .map_err(|e| format!("api_base {base:?} is not a valid URL: {e}"))?;
    let joined = format!("{}{path}", url.path().trim_end_matches('/'));
    url.set_path(&joined);
    Target::new(url)
}

impl OpenAiCompatible {
    pub fn new(provider: &str, api_base: &str) -> Self {
        let label = if provider == "openai" {
            "OpenAIException".to_string()
        } else {
            let mut c = provider.chars();
            match c.next() {
                Some(f) => format!("{}{}Exception", f.to_ascii_uppercase(), c.as_str()),
                None => "OpenAIException".to_string(),
            }
        };
        Self {
            label: label.into(),
            chat_url: endpoint(api_base, "/chat/completions"),
            completions_url: endpoint(api_base, "/completions"),
            embeddings_url: endpoint(api_base, "/embeddings"),
            key_header: None,
            organization: None,
            tokenize_root: tokenize_root(provider, api_base),
            no_tokenizer_until: Arc::default(),
            direct: true,
        }
    }

    /// Sends `OpenAI-Organization: org` with every call (a value no header can carry is
    /// refused at start-up by the config check, so it is dropped here).
    /// Whether calls may use the direct client (see `super::adapter_for`).
    pub fn with_direct(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    pub fn with_organization(mut self, org: Option<&str>) -> Self {
        self.organization = org
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .and_then(|o| HeaderValue::from_str(o).ok());
        self
    }

    /// An OpenAI-format upstream at exact URLs, keyed by a header of its own (Azure).
    pub fn with_urls(
        label: &str,
        chat_url: Result<String, String>,
        embeddings_url: Result<String, String>,
        key_header: &'static str,
    ) -> Self {
        let parse = |u: Result<String, String>| {
            u.and_then(|u| {
                reqwest::Url::parse(&u)
                    .map_err(|e| format!("api_base gives an invalid URL: {e}"))
                    .and_then(Target::new)
            })
        };
        // Azure's text completions sit beside its chat completions.
        let completions_url = chat_url
            .clone()
            .map(|u| u.replacen("/chat/completions", "/completions", 1));
        Self {
            label: label.into(),
            chat_url: parse(chat_url),
            completions_url: parse(completions_url),
            embeddings_url: parse(embeddings_url),
            key_header: Some(key_header),
            organization: None,
            tokenize_root: None,
            no_tokenizer_until: Arc::default(),
            direct: true,
        }
    }
}

/// Where a deployment's server may count tokens (see `tokenize_root` of [`OpenAiCompatible`]).
fn tokenize_root(provider: &str, api_base: &str) -> Option<reqwest::Url> {
    let public = crate::config::openai_compatible_base(provider)
        .is_some_and(|b| b.trim_end_matches('/') == api_base.trim_end_matches('/'));
    let own_server = matches!(provider, "hosted_vllm" | "vllm" | "llamafile") || !public;
    if !own_server || provider.starts_with("ollama") || provider == "lm_studio" {
        return None;
    }
    let mut url = reqwest::Url::parse(api_base).ok()?;
    let path = url.path().trim_end_matches('/');
    let root = path.strip_suffix("/v1").unwrap_or(path).to_string();
    url.set_path(&root);
    url.set_query(None);
    Some(url)
}

/// Headers of the upstream answer worth passing on: its rate-limit state (OpenAI's names).
fn kept_headers(h: &HeaderMap) -> HeaderMap {
    super::upstream::headers_named(h, &["x-ratelimit-"])
}

/// The message, `type` and `code` of an OpenAI-style error body.
fn upstream_message(body: &[u8]) -> (String, Option<String>, String) {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let err = v.get("error").unwrap_or(&v);
        let kind = err.get("type").and_then(Value::as_str).map(str::to_string);
        let code = match err.get("code") {
            Some(Value::String(c)) => c.clone(),
            _ => String::new(),
        };
        let msg = match err {
            Value::String(s) => Some(s.clone()),
            _ => err.get("message").or_else(|| err.get("detail")).map(|m| {
                m.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| m.to_string())
            }),
        };
        if let Some(m) = msg {
            return (m, kind, code);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(2000).collect();
    (text, None, String::new())
}

pub(crate) fn upstream_error(
    label: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<String>,
) -> ProxyError {
    let (msg, kind, code) = upstream_message(body);
    let hint = match &kind {
        Some(k) => format!("{code} {k}"),
        None => code,
    };
    upstream_failure(
        status,
        &format!("{label} - {msg}"),
        hint.trim(),
        kind,
        retry_after,
    )
}

/// A failed exchange with the upstream, from either client.
enum SendError {
    Reqwest(reqwest::Error),
    Direct { connect: bool, text: String },
}

impl SendError {
    fn direct(e: &(dyn std::error::Error + 'static), connect: bool) -> Self {
        SendError::Direct {
            connect,
            text: super::direct::error_text(e),
        }
    }
}

fn send_error(label: &str, d: &Deployment, timeout: Duration, e: &SendError) -> ProxyError {
    let (connect, text) = match e {
        SendError::Reqwest(e) if e.is_timeout() => return d.timed_out(timeout),
        SendError::Reqwest(e) => (e.is_connect(), e.without_url_text()),
        SendError::Direct { connect, text } => (*connect, text.clone()),
    };
    let base = d.api_base.as_deref().unwrap_or("");
    let message = if connect {
        format!("Connection error: cannot connect to {base}")
    } else {
        format!("Connection error talking to {base}: {text}")
    };
    ProxyError::UpstreamUnreachable {
        label: label.to_string(),
        message,
    }
}

trait ErrorText {
    fn without_url_text(&self) -> String;
}

impl ErrorText for reqwest::Error {
    fn without_url_text(&self) -> String {
        let mut s = self.to_string();
        if let Some(u) = self.url() {
            s = s.replace(u.as_str(), "");
        }
        s.replace(" ()", "")
            .replace("for url ", "")
            .trim()
            .to_string()
    }
}

/// The upstream's answer, from either client.
enum Sent {
    Reqwest(reqwest::Response),
    Direct(http::Response<super::direct::PooledBody>),
}

impl Sent {
    fn status(&self) -> http::StatusCode {
        match self {
            Sent::Reqwest(r) => r.status(),
            Sent::Direct(r) => r.status(),
        }
    }

    fn headers(&self) -> &HeaderMap {
        match self {
            Sent::Reqwest(r) => r.headers(),
            Sent::Direct(r) => r.headers(),
        }
    }

    async fn bytes(self) -> Result<Bytes, SendError> {
        match self {
            Sent::Reqwest(r) => r.bytes().await.map_err(SendError::Reqwest),
            Sent::Direct(r) => http_body_util::BodyExt::collect(r.into_body())
                .await
                .map(http_body_util::Collected::to_bytes)
                .map_err(|e| SendError::direct(&e, false)),
        }
    }

    fn into_stream(self) -> BoxStream<'static, Result<Bytes, SendError>> {
        match self {
            Sent::Reqwest(r) => r
                .bytes_stream()
                .map(|c| c.map_err(SendError::Reqwest))
                .boxed(),
            Sent::Direct(r) => http_body_util::BodyExt::into_data_stream(r.into_body())
                .map(|c| c.map_err(|e| SendError::direct(&e, false)))
                .boxed(),
        }
    }
}

/// A request ready to go: over the direct client when there is one, else over reqwest.
enum Outgoing {
    Reqwest(reqwest::RequestBuilder),
    Direct(http::Request<Full<Bytes>>, super::direct::Origin),
}

impl Outgoing {
    async fn send(self) -> Result<Sent, SendError> {
        match self {
            Outgoing::Reqwest(r) => r
                .send()
                .await
                .map(Sent::Reqwest)
                .map_err(SendError::Reqwest),
            Outgoing::Direct(request, origin) => {
                match super::direct::request(request, &origin).await {
                    Ok(r) => Ok(Sent::Direct(r)),
                    Err(e) => Err(SendError::direct(&*e.source, e.connect)),
                }
            }
        }
    }
}

struct Prepared {
    label: Arc<str>,
    deployment: Arc<Deployment>,
    request: Outgoing,
}

impl OpenAiCompatible {
    fn prepare(
        &self,
        client: &reqwest::Client,
        d: &Arc<Deployment>,
        url: &Result<Target, String>,
        body: Bytes,
        extra_headers: &HeaderMap,
    ) -> Result<Prepared, ProxyError> {
        let target = url
            .as_ref()
            .map_err(|message| ProxyError::UpstreamUnreachable {
                label: self.label.to_string(),
                message: message.clone(),
            })?;
        let mut headers = self.headers(d, extra_headers)?;
        let request = if self.direct && super::direct::enabled() {
            if let Some(host) = &target.host {
                headers.insert(header::HOST, host.clone());
            }
            let mut request = http::Request::new(Full::new(body));
            *request.method_mut() = http::Method::POST;
            *request.uri_mut() = target.path.clone();
            *request.headers_mut() = headers;
            Outgoing::Direct(request, target.origin.clone())
        } else {
            Outgoing::Reqwest(client.post(target.url.clone()).headers(headers).body(body))
        };
        Ok(Prepared {
            label: self.label.clone(),
            deployment: d.clone(),
            request,
        })
    }

    /// The same headers whichever client carries the call: JSON, the key, the organization,
    /// then `extra_headers`/`headers` of the deployment and request (which may replace ours).
    fn headers(&self, d: &Deployment, extra_headers: &HeaderMap) -> Result<HeaderMap, ProxyError> {
        let key = match (&d.api_key, self.key_header) {
            (Some(k), None) => Some((
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {}", k.expose())),
            )),
            (Some(k), Some(h)) => Some((
                http::HeaderName::from_static(h),
                HeaderValue::from_str(k.expose()),
            )),
            (None, _) => None,
        };
        let key = match key {
            Some((name, Ok(mut value))) => {
                value.set_sensitive(true);
                Some((name, value))
            }
            Some((_, Err(_))) => {
                return Err(ProxyError::UpstreamUnreachable {
                    label: self.label.to_string(),
                    message: "the deployment's api_key cannot be sent in an HTTP header"
                        .to_string(),
                });
            }
            None => None,
        };
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some((name, value)) = key {
            headers.insert(name, value);
        }
        if let Some(org) = &self.organization {
            headers.insert(ORGANIZATION.clone(), org.clone());
        }
        for (name, value) in extra_headers {
            headers.insert(name.clone(), value.clone());
        }
        Ok(headers)
    }
}

async fn fail_from(label: &str, resp: Sent, timeout: Duration) -> ProxyError {
    let status = resp.status().as_u16();
    let retry_after = super::upstream::retry_after(resp.headers());
    let body = tokio::time::timeout(timeout, resp.bytes())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    upstream_error(label, status, &body, retry_after)
}

/// Sends with the whole-request timeout and reads the whole answer within it too.
async fn exchange(p: Prepared) -> Result<(Bytes, HeaderMap), ProxyError> {
    let d = p.deployment;
    let label = p.label;
    let timeout = d.timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let resp = tokio::time::timeout_at(deadline, p.request.send())
        .await
        .map_err(|_| d.timed_out(timeout))?
        .map_err(|e| send_error(&label, &d, timeout, &e))?;
    if !resp.status().is_success() {
        return Err(fail_from(&label, resp, timeout).await);
    }
    let headers = kept_headers(resp.headers());
    let body = tokio::time::timeout_at(deadline, resp.bytes())
        .await
        .map_err(|_| d.timed_out(timeout))?
        .map_err(|e| send_error(&label, &d, timeout, &e))?;
    Ok((body, headers))
}

/// What the gateway reads of a 200's body (id, model, usage), read once here. A body that is
/// not JSON (an HTML error page from a proxy in between, a truncated answer) is the upstream's
/// failure, not an answer: a 502 naming the provider with an excerpt, so the client and the
/// spend row both see a failure. JSON whose id, model or usage have unexpected types is an
/// answer of which nothing is read.
fn read_answer(label: &str, body: &[u8]) -> Result<super::Peek, ProxyError> {
    if let Ok(peek) = serde_json::from_slice::<super::Peek>(body) {
        return Ok(peek);
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) => Ok(super::Peek::default()),
        Err(e) => Err(super::upstream::translate_error(
            label,
            idlehands_translate::TranslateError::untranslatable(
                format!("{label} - the upstream answered 200 with a body that is not JSON ({e})"),
                &String::from_utf8_lossy(body),
            ),
        )),
    }
}

impl Provider for OpenAiCompatible {
    fn chat(
        &self,
        client: &reqwest::Client,
        d: &Arc<Deployment>,
        call: ChatCall,
    ) -> BoxFuture<'static, Result<ChatReply, ProxyError>> {
        let url = match call.endpoint {
            Endpoint::Chat => &self.chat_url,
            Endpoint::TextCompletion => &self.completions_url,
        };
        let p = self.prepare(client, d, url, call.body, &call.extra_headers);
        let stream = call.stream;
        Box::pin(async move {
            let p = p?;
            if !stream {
                let label = p.label.clone();
                let (body, headers) = exchange(p).await?;
                let peek = read_answer(&label, &body)?;
                return Ok(ChatReply::Full {
                    body,
                    headers,
                    peek: Some(peek),
                });
            }
            let d = p.deployment;
            let label = p.label;
            let idle = d.stream_timeout;
            let resp = match tokio::time::timeout(idle, p.request.send()).await {
                Err(_) => return Err(d.timed_out(idle)),
                Ok(r) => r.map_err(|e| send_error(&label, &d, idle, &e))?,
            };
            if !resp.status().is_success() {
                return Err(fail_from(&label, resp, idle).await);
            }
            let headers = kept_headers(resp.headers());
            // An idle timeout between chunks: a stalled upstream ends the stream with an error.
            let frames = super::idle::IdleTimeout::new(resp.into_stream(), idle)
                .map(move |item| match item {
                    Ok(Ok(b)) => Ok(b),
                    Ok(Err(e)) => Err(send_error(&label, &d, idle, &e)),
                    Err(super::idle::Stalled) => Err(d.timed_out(idle)),
                })
                .boxed();
            Ok(ChatReply::Stream { frames, headers })
        })
    }

    fn embeddings(
        &self,
        client: &reqwest::Client,
        d: &Arc<Deployment>,
        body: Bytes,
    ) -> BoxFuture<'static, Result<EmbeddingReply, ProxyError>> {
        let p = self.prepare(client, d, &self.embeddings_url, body, &d.params.headers);
        Box::pin(async move {
            let (body, headers) = exchange(p?).await?;
            Ok(EmbeddingReply { body, headers })
        })
    }

    fn text_completions(&self) -> bool {
        true
    }

    fn count_tokens(
        &self,
        client: &reqwest::Client,
        d: &Arc<Deployment>,
        chat: Value,
    ) -> Option<BoxFuture<'static, Result<super::ServerCount, ProxyError>>> {
        let root = self.tokenize_root.clone()?;
        let server = super::tokenize::Server {
            no_tokenizer_until: self.no_tokenizer_until.clone(),
            client: client.clone(),
            root,
            headers: self.headers(d, &d.params.headers),
            label: self.label.clone(),
            timeout: d.timeout,
        };
        Some(Box::pin(server.count(chat)))
    }

    fn forward_json(
        &self,
        client: &reqwest::Client,
        d: &Arc<Deployment>,
        route: JsonRoute,
        body: Bytes,
    ) -> BoxFuture<'static, Result<EmbeddingReply, ProxyError>> {
        // Every such endpoint sits beside chat completions (Azure's deployment URLs too).
        let url = self
            .chat_url
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|chat| {
                let mut url = chat.url.clone();
                let base = url.path().trim_end_matches("/chat/completions").to_string();
                url.set_path(&format!("{base}{}", route.path()));
                Target::new(url)
            });
        let p = self.prepare(client, d, &url, body, &d.params.headers);
        Box::pin(async move {
            let (body, headers) = exchange(p?).await?;
            Ok(EmbeddingReply { body, headers })
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn only_servers_of_ones_own_are_asked_to_count_tokens() {
        let root = |p: &str, b: &str| tokenize_root(p, b).map(|u| u.to_string());
        assert_eq!(
            root("openai", "http://10.0.0.5:8080/v1/").as_deref(),
            Some("http://10.0.0.5:8080/")
        );
        assert_eq!(
            root("hosted_vllm", "http://localhost:8000/v1").as_deref(),
            Some("http://localhost:8000/")
        );
        assert_eq!(
            root("openai", "http://gpu:9000/llm/v1?x=1").as_deref(),
            Some("http://gpu:9000/llm")
        );
        assert_eq!(root("openai", "https://api.openai.com/v1"), None);
        assert_eq!(root("groq", "https://api.groq.com/openai/v1"), None);
        assert_eq!(root("ollama", "http://localhost:11434/v1"), None);
        assert_eq!(root("lm_studio", "http://box:1234/v1"), None);
    }

    #[test]
    fn endpoints_join_paths_and_keep_queries() {
        let u = endpoint("http://h:1/v1/", "/chat/completions").map(|t| t.url.to_string());
        assert_eq!(u.as_deref(), Ok("http://h:1/v1/chat/completions"));
        let u = endpoint("http://h/openai?api-version=2", "/embeddings").map(|t| t.url.to_string());
        assert_eq!(u.as_deref(), Ok("http://h/openai/embeddings?api-version=2"));
    }

    #[test]
    fn the_direct_target_is_origin_form() {
        let t = endpoint("http://h:1/v1/", "/chat/completions").unwrap();
        assert_eq!(t.path.to_string(), "/v1/chat/completions");
        assert!(t.path.scheme().is_none() && t.path.authority().is_none());
        let t = endpoint(
            "https://x.openai.azure.com/openai?api-version=2",
            "/embeddings",
        );
        assert_eq!(
            t.map(|t| t.path.to_string()).as_deref(),
            Ok("/openai/embeddings?api-version=2")
        );
        let err = endpoint("not a url", "/x")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("is not a valid URL"), "{err:?}");
    }

    #[test]
    fn upstream_errors_carry_litellm_prefix_and_status() {
        let e = upstream_error(
            "OpenAIException",
            429,
            br#"{"error":{"message":"Rate limit reached","type":"rate_limit_exceeded"}}"#,
            Some("3".into()),
        );
        assert_eq!(e.status(), 429);
        assert_eq!(
            e.to_string(),
            "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached"
        );
        let e = upstream_error("Hosted_vllmException", 502, b"bad gateway", None);
        assert!(
            e.to_string()
                .ends_with("Hosted_vllmException - bad gateway")
        );
        assert_eq!(
            OpenAiCompatible::new("hosted_vllm", "http://h/v1")
                .label
                .as_ref(),
            "Hosted_vllmException"
        );
    }

    #[test]
    fn overflow_errors_become_context_window_exceeded() {
        // llama.cpp's answer, as captured from llama-server.
        let e = upstream_error(
            "OpenAIException",
            400,
            br#"{"error":{"code":400,"message":"request (3030 tokens) exceeds the available context size (2048 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":3030,"n_ctx":2048}}"#,
            None,
        );
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.to_string(),
            "litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: OpenAIException - request (3030 tokens) exceeds the available context size (2048 tokens), try increasing it"
        );
        assert_eq!(e.kind(), "exceed_context_size_error");
        // Recognised by its code alone, and whatever status the server used.
        let e = upstream_error(
            "OpenAIException",
            413,
            br#"{"error":{"message":"Request too big","code":"context_length_exceeded"}}"#,
            None,
        );
        assert_eq!(e.status(), 400);
        assert!(
            e.to_string()
                .starts_with("litellm.ContextWindowExceededError:")
        );
        let e = upstream_error(
            "Hosted_vllmException",
            400,
            br#"{"error":{"message":"bad temperature"}}"#,
            None,
        );
        assert!(
            e.to_string()
                .starts_with("litellm.BadRequestError: BadRequestError:")
        );
    }

    #[test]
    fn host_header_is_what_the_http_client_would_send() {
        let host = |base: &str| {
            endpoint(base, "/chat/completions")
                .ok()
                .and_then(|t| t.host)
                .and_then(|h| h.to_str().ok().map(str::to_string))
        };
        assert_eq!(
            host("http://127.0.0.1:18080/v1").as_deref(),
            Some("127.0.0.1:18080")
        );
        assert_eq!(
            host("https://api.openai.com/v1").as_deref(),
            Some("api.openai.com")
        );
        assert_eq!(
            host("http://example.com:80/v1").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            host("https://example.com:443").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            host("https://example.com:8443").as_deref(),
            Some("example.com:8443")
        );
        assert_eq!(host("http://[::1]:8000/v1").as_deref(), Some("[::1]:8000"));
    }
}
