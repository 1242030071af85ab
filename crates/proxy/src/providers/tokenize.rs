//! Counting a request's tokens on the server that will read it, so a count is the model's own
//! and not an estimate. vLLM's `POST /tokenize` takes the messages (and tools), applies the
//! model's chat template and answers `count`; llama.cpp's takes text only (`content`; a body
//! without it gets an empty `tokens` list, not an error), so there `/apply-template` renders
//! the messages first, as the server renders them for a chat call. Both routes sit at the
//! server's root, beside `/v1`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use http::HeaderMap;
use serde_json::{Map, Value, json};

use super::ServerCount;
use super::openai_compat::upstream_error;
use crate::error::ProxyError;

/// One deployment's server, with the headers its calls carry (key, organization, extras).
pub(super) struct Server {
    /// Shared with the deployment's adapter: see `no_tokenizer_until` there.
    pub no_tokenizer_until: Arc<AtomicI64>,
    pub client: reqwest::Client,
    pub root: reqwest::Url,
    pub headers: Result<HeaderMap, ProxyError>,
    pub label: Arc<str>,
    pub timeout: Duration,
}

/// How long a server that has no tokenizer route is left alone.
const NO_TOKENIZER_FOR_MS: i64 = 10 * 60 * 1000;

impl Server {
    pub(super) async fn count(self, chat: Value) -> Result<ServerCount, ProxyError> {
        let now = chrono::Utc::now().timestamp_millis();
        if self.no_tokenizer_until.load(Ordering::Relaxed) > now {
            return Err(self.unexpected(
                "the server has no tokenizer route (it said so within the last 10 minutes)",
            ));
        }
        let counted = self.count_now(chat).await;
        if let Err(e) = &counted
            && matches!(e.status(), 404 | 405)
        {
            self.no_tokenizer_until
                .store(now + NO_TOKENIZER_FOR_MS, Ordering::Relaxed);
        }
        counted
    }

    async fn count_now(&self, chat: Value) -> Result<ServerCount, ProxyError> {
        let messages = chat.get("messages").filter(|m| m.is_array());
        let tools = chat
            .get("tools")
            .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()));
        let prompt = chat.get("prompt").and_then(Value::as_str);
        let model = chat.get("model").cloned().unwrap_or(Value::Null);
        let mut first = Map::new();
        first.insert("model".into(), model);
        match (messages, prompt) {
            (Some(m), _) => {
                first.insert("messages".into(), m.clone());
                first.insert("add_generation_prompt".into(), Value::Bool(true));
                if let Some(t) = tools {
                    first.insert("tools".into(), t.clone());
                }
            }
            (None, Some(p)) => {
                first.insert("prompt".into(), p.into());
            }
            (None, None) => return Err(self.unexpected("nothing to count")),
        }
        let answer = self.post("/tokenize", &Value::Object(first)).await?;
        if let Some(n) = answer.get("count").and_then(Value::as_u64) {
            return Ok(ServerCount {
                tokens: n,
                tokenizer: "vllm_api",
                original: without_tokens(answer),
            });
        }
        if !answer.get("tokens").is_some_and(Value::is_array) {
            return Err(self.unexpected("/tokenize answered neither `count` nor `tokens`"));
        }
        let text = match messages {
            Some(m) => {
                let mut ask = json!({"messages": m});
                if let Some(t) = tools {
                    ask["tools"] = t.clone();
                }
                let rendered = self.post("/apply-template", &ask).await?;
                match rendered.get("prompt").and_then(Value::as_str) {
                    Some(p) => p.to_string(),
                    None => return Err(self.unexpected("/apply-template answered no `prompt`")),
                }
            }
            None => prompt.unwrap_or_default().to_string(),
        };
        // Special tokens as a chat call's prompt gets them.
        let answer = self
            .post("/tokenize", &json!({"content": text, "add_special": true}))
            .await?;
        let Some(n) = answer.get("tokens").and_then(Value::as_array).map(Vec::len) else {
            return Err(self.unexpected("/tokenize answered no `tokens`"));
        };
        Ok(ServerCount {
            tokens: n as u64,
            tokenizer: "llama_cpp_api",
            original: without_tokens(answer),
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, ProxyError> {
        let headers = self.headers.as_ref().map_err(Clone::clone)?;
        let mut url = self.root.clone();
        let joined = format!("{}{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        let call = async {
            let resp = self
                .client
                .post(url)
                .headers(headers.clone())
                .body(body.to_string())
                .send()
                .await?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        };
        let (status, bytes) = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => {
                return Err(self.unreachable(format!(
                    "{path} did not answer within {}s",
                    self.timeout.as_secs_f64()
                )));
            }
            Ok(Err(e)) => return Err(self.unreachable(format!("{path}: {e}"))),
            Ok(Ok(answer)) => answer,
        };
        if !(200..300).contains(&status) {
            return Err(upstream_error(&self.label, status, &bytes, None));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| self.unexpected(&format!("{path} answered something not JSON ({e})")))
    }

    fn unreachable(&self, message: String) -> ProxyError {
        ProxyError::UpstreamUnreachable {
            label: self.label.to_string(),
            message,
        }
    }

    fn unexpected(&self, what: &str) -> ProxyError {
        self.unreachable(format!("the server's token count: {what}"))
    }
}

/// The answer without its token list.
fn without_tokens(mut answer: Value) -> Value {
    if let Some(o) = answer.as_object_mut() {
        o.remove("tokens");
    }
    answer
}
