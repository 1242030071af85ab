//! What a fake keeps of each request it serves: the request line, the headers and the body
//! bytes exactly as they arrived, with the body also parsed for convenience.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Uri, Version};
use parking_lot::Mutex;
use serde_json::Value;

/// What a fake has received: every request counted, each kept while recording is on (the
/// benchmark turns it off so the fake does not grow without bound).
pub(crate) struct RequestLog {
    requests: Mutex<Vec<Recorded>>,
    served: AtomicUsize,
    keep: AtomicBool,
}

impl Default for RequestLog {
    fn default() -> Self {
        RequestLog {
            requests: Mutex::default(),
            served: AtomicUsize::new(0),
            keep: AtomicBool::new(true),
        }
    }
}

impl RequestLog {
    /// Counts the request and keeps it while recording; returns its number, 1-based.
    pub(crate) fn record(
        &self,
        line: &RequestLine,
        uri: &Uri,
        headers: &HeaderMap,
        raw: &Bytes,
        body: &Value,
    ) -> usize {
        let n = self.served.fetch_add(1, Ordering::SeqCst) + 1;
        if self.keep.load(Ordering::SeqCst) {
            self.requests
                .lock()
                .push(Recorded::new(line, uri, headers, raw, body));
        }
        n
    }

    pub(crate) fn set_recording(&self, on: bool) {
        self.keep.store(on, Ordering::SeqCst);
    }

    pub(crate) fn all(&self) -> Vec<Recorded> {
        self.requests.lock().clone()
    }

    pub(crate) fn last(&self) -> Option<Recorded> {
        self.requests.lock().last().cloned()
    }

    /// Requests counted so far, faults and unrecorded ones included.
    pub(crate) fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST /v1/chat/completions HTTP/1.1`: method, target as sent (query included) and
    /// version.
    pub request_line: String,
    pub path: String,
    /// The query string, if any (`api-version=...`, `alt=sse`).
    pub query: Option<String>,
    /// Every header in arrival order (a repeated name once per value, next to its first),
    /// names lower-cased as HTTP/1 parsing gives them, values as sent.
    pub raw_headers: Vec<(String, Vec<u8>)>,
    /// Header names lower-cased; a repeated header keeps its last value.
    pub headers: HashMap<String, String>,
    /// The body bytes exactly as received.
    pub raw_body: Bytes,
    /// The body parsed as JSON (for a multipart upload: its text fields), so tests can read
    /// fields without parsing; what went over the wire is `raw_body`.
    pub body: Value,
}

impl Recorded {
    /// A request as a handler sees it; `body` is `raw_body` as the fake parsed it.
    pub fn new(
        line: &RequestLine,
        uri: &Uri,
        headers: &HeaderMap,
        raw_body: &Bytes,
        body: &Value,
    ) -> Self {
        Self {
            request_line: line.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            raw_headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            raw_body: raw_body.clone(),
            body: body.clone(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Every value sent for `name`, in order.
    pub fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.raw_headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

/// A request's line as received, taken by a handler so its [`Recorded`] carries it; written
/// out only when recorded (the benchmark's upstream keeps nothing).
#[derive(Debug, Clone)]
pub struct RequestLine {
    method: Method,
    uri: Uri,
    version: Version,
}

impl RequestLine {
    pub(crate) fn of(method: &Method, uri: &Uri, version: Version) -> Self {
        Self {
            method: method.clone(),
            uri: uri.clone(),
            version,
        }
    }
}

impl std::fmt::Display for RequestLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {:?}", self.method, self.uri, self.version)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestLine {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self::of(&parts.method, &parts.uri, parts.version))
    }
}
