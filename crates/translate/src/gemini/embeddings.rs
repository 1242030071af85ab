//! OpenAI `/v1/embeddings` <-> Gemini `embedContent` / `batchEmbedContents`.

use serde_json::{Value, json};

use super::model_path;
use crate::TranslateError;

/// `:batchEmbedContents`, which takes one input or many.
pub fn embeddings_endpoint(api_base: Option<&str>, model: &str) -> String {
    format!("{}:batchEmbedContents", model_path(api_base, model))
}

/// `:embedContent`, for exactly one input.
pub fn embed_content_endpoint(api_base: Option<&str>, model: &str) -> String {
    format!("{}:embedContent", model_path(api_base, model))
}

/// The texts of an OpenAI `input` (a string or a list of strings; token arrays have no
/// meaning to Gemini).
fn inputs(req: &Value) -> Result<Vec<&str>, TranslateError> {
    match req.get("input") {
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str().ok_or_else(|| {
                    TranslateError::invalid(
                        "Gemini embeddings take text inputs only, not token arrays",
                    )
                })
            })
            .collect(),
        _ => Err(TranslateError::invalid(
            "input must be a string or a non-empty list of strings",
        )),
    }
}

fn embed_request(model: &str, text: &str, dims: Option<&Value>) -> Value {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let mut r = json!({"model": format!("models/{model}"), "content": {"parts": [{"text": text}]}});
    if let Some(d) = dims {
        r["outputDimensionality"] = d.clone();
    }
    r
}

pub fn to_batch_embed_request(req: &Value, model: &str) -> Result<Value, TranslateError> {
    let dims = req.get("dimensions").filter(|v| !v.is_null());
    let requests: Vec<Value> = inputs(req)?
        .into_iter()
        .map(|t| embed_request(model, t, dims))
        .collect();
    Ok(json!({"requests": requests}))
}

pub fn to_embed_content_request(req: &Value, model: &str) -> Result<Value, TranslateError> {
    match inputs(req)?.as_slice() {
        [one] => Ok(embed_request(
            model,
            one,
            req.get("dimensions").filter(|v| !v.is_null()),
        )),
        _ => Err(TranslateError::invalid(
            "embedContent takes one input; use batchEmbedContents for several",
        )),
    }
}

/// Gemini reports no token counts for embeddings, so usage is estimated at four characters
/// a token (the rule of thumb Google documents) to keep spend tracking non-zero.
fn usage(req: &Value) -> Value {
    let chars: usize = inputs(req)
        .unwrap_or_default()
        .iter()
        .map(|t| t.chars().count())
        .sum();
    let tokens = chars.div_ceil(4);
    json!({"prompt_tokens": tokens, "total_tokens": tokens})
}

fn list(model: &str, vectors: Vec<&Value>, req: &Value) -> Value {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": usage(req)})
}

/// `{"embeddings":[{"values":[...]}]}` -> OpenAI embedding list. `req` is the client's
/// request (for the usage estimate).
pub fn from_batch_embed_response(
    resp: &Value,
    req: &Value,
    model: &str,
) -> Result<Value, TranslateError> {
    let vectors: Option<Vec<&Value>> = resp
        .get("embeddings")
        .and_then(Value::as_array)
        .map(|es| es.iter().filter_map(|e| e.get("values")).collect());
    match vectors {
        Some(v) if !v.is_empty() => Ok(list(model, v, req)),
        _ => Err(TranslateError::untranslatable(
            "no embeddings[].values in the Gemini response",
            &resp.to_string(),
        )),
    }
}

/// `{"embedding":{"values":[...]}}` -> OpenAI embedding list.
pub fn from_embed_content_response(
    resp: &Value,
    req: &Value,
    model: &str,
) -> Result<Value, TranslateError> {
    let values = resp.pointer("/embedding/values").ok_or_else(|| {
        TranslateError::untranslatable(
            "no embedding.values in the Gemini response",
            &resp.to_string(),
        )
    })?;
    Ok(list(model, vec![values], req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip() {
        let req = json!({"model": "text-embedding-004", "input": ["hello world", "abc"], "dimensions": 3});
        let body = to_batch_embed_request(&req, "text-embedding-004").unwrap_or(Value::Null);
        let resp =
            json!({"embeddings": [{"values": [0.1, 0.2, 0.3]}, {"values": [0.4, 0.5, 0.6]}]});
        let out =
            from_batch_embed_response(&resp, &req, "text-embedding-004").unwrap_or(Value::Null);
        insta::assert_json_snapshot!(json!({"request": body, "response": out}));
    }

    #[test]
    fn single_and_errors() {
        let req = json!({"input": "hi"});
        let body = to_embed_content_request(&req, "models/e").unwrap_or(Value::Null);
        assert_eq!(
            body,
            json!({"model": "models/e", "content": {"parts": [{"text": "hi"}]}})
        );
        let out = from_embed_content_response(&json!({"embedding": {"values": [1.0]}}), &req, "e");
        assert_eq!(
            out.ok().map(|o| o["data"][0]["embedding"].clone()),
            Some(json!([1.0]))
        );
        let err = to_batch_embed_request(&json!({"input": [[1, 2]]}), "e")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("text inputs only"), "{err:?}");
        let err = from_batch_embed_response(&json!({}), &req, "e")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("no embeddings[].values"), "{err:?}");
        assert_eq!(
            embeddings_endpoint(None, "text-embedding-004"),
            "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:batchEmbedContents"
        );
    }
}
