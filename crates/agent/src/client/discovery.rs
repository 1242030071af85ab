//! The context window a local server actually runs with. A 200k default on a 32k
//! llama-server makes compaction start far too late and sends tool output the server
//! refuses, so when the config does not say, the server is asked: llama-server's `/props`
//! (`default_generation_settings.n_ctx`, the running context) and `meta.n_ctx` in its
//! `/v1/models`; vLLM's `max_model_len`; LM Studio's `/api/v0/models/<id>`
//! (`loaded_context_length`); Ollama's `/api/show` (`num_ctx` in its parameters, else the
//! model's `context_length`); a LiteLLM-style gateway's `/model/info`
//! (`model_info.max_input_tokens`). The first answer that names a size wins.

use std::time::Duration;

use serde_json::{Value, json};

/// A context size and where it came from, e.g. `llama-server /props n_ctx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub tokens: u64,
    pub source: String,
}

/// The server's root: the base URL without a trailing `/v1`.
pub fn server_root(base_url: &str) -> String {
    let base = base_url.trim().trim_end_matches('/');
    base.strip_suffix("/v1").unwrap_or(base).to_string()
}

fn positive(v: Option<&Value>) -> Option<u64> {
    v.and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    })
    .filter(|n| *n > 0)
}

/// llama-server `GET /props`.
pub fn from_props(body: &Value) -> Option<u64> {
    positive(body.pointer("/default_generation_settings/n_ctx"))
        .or_else(|| positive(body.get("n_ctx")))
}

/// An OpenAI-style `GET /v1/models` list: the entry for `model` (or the only entry).
pub fn from_models_list(body: &Value, model: &str) -> Option<(u64, &'static str)> {
    let data = body.get("data")?.as_array()?;
    let entry = data
        .iter()
        .find(|m| m.get("id").and_then(Value::as_str) == Some(model))
        .or_else(|| (data.len() == 1).then(|| &data[0]))?;
    [
        ("/max_model_len", "vLLM /v1/models max_model_len"),
        ("/meta/n_ctx", "llama-server /v1/models meta.n_ctx"),
        ("/context_length", "/v1/models context_length"),
        ("/context_window", "/v1/models context_window"),
        ("/max_input_tokens", "/v1/models max_input_tokens"),
    ]
    .into_iter()
    .find_map(|(p, src)| positive(entry.pointer(p)).map(|n| (n, src)))
}

/// LM Studio `GET /api/v0/models/<id>`.
pub fn from_lmstudio(body: &Value) -> Option<(u64, &'static str)> {
    positive(body.get("loaded_context_length"))
        .map(|n| (n, "LM Studio /api/v0/models loaded_context_length"))
        .or_else(|| {
            positive(body.get("max_context_length"))
                .map(|n| (n, "LM Studio /api/v0/models max_context_length"))
        })
}

/// Ollama `POST /api/show`: the `num_ctx` the model runs with, else its trained maximum.
pub fn from_ollama_show(body: &Value) -> Option<(u64, &'static str)> {
    let num_ctx = body
        .get("parameters")
        .and_then(Value::as_str)
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some("num_ctx"))
                    .then(|| it.next().and_then(|n| n.parse::<u64>().ok()))
                    .flatten()
            })
        })
        .filter(|n| *n > 0);
    if let Some(n) = num_ctx {
        return Some((n, "Ollama /api/show num_ctx"));
    }
    body.get("model_info")
        .and_then(Value::as_object)
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.ends_with(".context_length"))
                .and_then(|(_, v)| positive(Some(v)))
        })
        .map(|n| (n, "Ollama /api/show context_length"))
}

/// A LiteLLM-style gateway's `GET /model/info`.
pub fn from_model_info(body: &Value, model: &str) -> Option<u64> {
    body.get("data")?
        .as_array()?
        .iter()
        .filter(|m| m.get("model_name").and_then(Value::as_str) == Some(model))
        .find_map(|m| {
            positive(m.pointer("/model_info/max_input_tokens"))
                .or_else(|| positive(m.pointer("/model_info/max_tokens")))
        })
}

impl super::ChatClient {
    /// Ask the server behind `base_url` how large a context `model` has. Each probe is
    /// short and a missing route is simply skipped; `None` when no server said.
    pub async fn discover_context_window(
        &self,
        base_url: &str,
        model: &str,
        api_key: &str,
        timeout: Duration,
    ) -> Option<Discovered> {
        let root = server_root(base_url);
        let get = |url: String| self.probe(url, None, api_key, timeout);
        if let Some(n) = get(format!("{root}/props"))
            .await
            .as_ref()
            .and_then(from_props)
        {
            return Some(found(n, "llama-server /props n_ctx"));
        }
        if let Some((n, src)) = get(super::models_url(base_url))
            .await
            .and_then(|b| from_models_list(&b, model))
        {
            return Some(found(n, src));
        }
        if let Some((n, src)) = get(format!("{root}/api/v0/models/{model}"))
            .await
            .as_ref()
            .and_then(from_lmstudio)
        {
            return Some(found(n, src));
        }
        if let Some((n, src)) = self
            .probe(
                format!("{root}/api/show"),
                Some(json!({"model": model})),
                api_key,
                timeout,
            )
            .await
            .as_ref()
            .and_then(from_ollama_show)
        {
            return Some(found(n, src));
        }
        get(format!("{root}/model/info"))
            .await
            .and_then(|b| from_model_info(&b, model))
            .map(|n| found(n, "gateway /model/info max_input_tokens"))
    }

    /// Ask the server behind `base_url` how many parameters `model` has: llama-server's
    /// `/v1/models` (`meta.n_params`) or `/props`, else Ollama's `/api/show`
    /// (`general.parameter_count`). `(count, source)`; `None` when no server said.
    pub async fn discover_parameter_count(
        &self,
        base_url: &str,
        model: &str,
        api_key: &str,
        timeout: Duration,
    ) -> Option<(u64, &'static str)> {
        use crate::tools::profile::{params_from_llama, params_from_ollama_show};
        let root = server_root(base_url);
        if let Some(n) = self
            .probe(super::models_url(base_url), None, api_key, timeout)
            .await
            .and_then(|b| params_from_llama(&b, model))
        {
            return Some((n, "llama-server /v1/models meta.n_params"));
        }
        if let Some(n) = self
            .probe(format!("{root}/props"), None, api_key, timeout)
            .await
            .and_then(|b| params_from_llama(&b, model))
        {
            return Some((n, "llama-server /props n_params"));
        }
        self.probe(
            format!("{root}/api/show"),
            Some(json!({"model": model})),
            api_key,
            timeout,
        )
        .await
        .as_ref()
        .and_then(params_from_ollama_show)
        .map(|n| (n, "Ollama /api/show general.parameter_count"))
    }

    async fn probe(
        &self,
        url: String,
        post: Option<Value>,
        api_key: &str,
        timeout: Duration,
    ) -> Option<Value> {
        let mut rb = match post {
            Some(body) => self.http.post(&url).json(&body),
            None => self.http.get(&url),
        }
        .timeout(timeout);
        if !api_key.is_empty() {
            rb = rb.bearer_auth(api_key);
        }
        let resp = rb.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json::<Value>().await.ok()
    }
}

fn found(tokens: u64, source: &str) -> Discovered {
    Discovered {
        tokens,
        source: source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_captured_llama_server_model_list_gives_n_ctx() {
        let body: Value = serde_json::from_slice(include_bytes!(
            "../../../testkit/fixtures/llama-server/models.json"
        ))
        .unwrap_or_default();
        assert_eq!(
            from_models_list(&body, "qwen2.5-coder-0.5b"),
            Some((2048, "llama-server /v1/models meta.n_ctx"))
        );
    }

    #[test]
    fn each_servers_shape_is_read() {
        assert_eq!(
            from_props(&json!({"default_generation_settings": {"n_ctx": 32768}, "total_slots": 1})),
            Some(32768)
        );
        assert_eq!(
            from_models_list(
                &json!({"object": "list", "data": [{"id": "a", "max_model_len": 8192}, {"id": "Qwen/Qwen3-8B", "max_model_len": 40960}]}),
                "Qwen/Qwen3-8B"
            ),
            Some((40960, "vLLM /v1/models max_model_len"))
        );
        assert_eq!(
            from_lmstudio(
                &json!({"id": "q", "max_context_length": 32768, "loaded_context_length": 4096})
            ),
            Some((4096, "LM Studio /api/v0/models loaded_context_length"))
        );
        assert_eq!(
            from_ollama_show(
                &json!({"parameters": "stop \"<|im_end|>\"\nnum_ctx 16384", "model_info": {"qwen2.context_length": 32768}})
            ),
            Some((16384, "Ollama /api/show num_ctx"))
        );
        assert_eq!(
            from_ollama_show(
                &json!({"model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768}})
            ),
            Some((32768, "Ollama /api/show context_length"))
        );
        assert_eq!(
            from_model_info(
                &json!({"data": [{"model_name": "m", "model_info": {"max_input_tokens": 128000, "max_tokens": 4096}}]}),
                "m"
            ),
            Some(128000)
        );
        assert_eq!(from_models_list(&json!({"data": [{"id": "x"}]}), "x"), None);
        assert_eq!(server_root("http://h:8080/v1/"), "http://h:8080");
    }
}
