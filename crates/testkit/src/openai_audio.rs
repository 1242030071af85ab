//! The fake OpenAI's audio endpoints: `POST /v1/audio/transcriptions` (a multipart upload) and
//! `POST /v1/audio/speech` (audio bytes streamed back), with the real API's refusals of a
//! request missing what it requires.

use axum::body::Bytes;
use serde_json::{Value, json};

use crate::reply::Reply;

/// `POST /v1/audio/transcriptions`: why the real API would refuse the upload, if it would;
/// else the transcription in the asked `response_format` (content type, body). The scripted
/// reply's text is the transcript and its prompt tokens stand for the audio's seconds.
pub(crate) fn transcription(
    content_type: &str,
    body: &[u8],
    reply: &Reply,
) -> Result<(&'static str, String), String> {
    use crate::multipart;
    let b = multipart::boundary(content_type).ok_or("Expected multipart/form-data")?;
    let parts = multipart::fields(body, &b).map_err(|e| format!("Invalid multipart body: {e}"))?;
    let text = |name: &str| parts.iter().find(|p| p.name == name).and_then(|p| p.text());
    if !parts
        .iter()
        .any(|p| p.name == "file" && p.filename.is_some())
    {
        return Err("Missing required parameter: 'file'.".to_string());
    }
    if text("model").is_none_or(str::is_empty) {
        return Err("Missing required parameter: 'model'.".to_string());
    }
    let seconds = reply.usage.prompt_tokens;
    let usage = json!({"type": "duration", "seconds": seconds});
    match text("response_format").unwrap_or("json") {
        "json" => Ok((
            "application/json",
            json!({"text": reply.text, "usage": usage}).to_string(),
        )),
        "verbose_json" => Ok((
            "application/json",
            json!({"task": "transcribe", "language": "english", "duration": seconds as f64,
                   "text": reply.text, "segments": [], "usage": usage})
            .to_string(),
        )),
        "text" => Ok(("text/plain; charset=utf-8", format!("{}\n", reply.text))),
        other => Err(format!(
            "Invalid value: '{other}'. Supported values are: 'json', 'text', 'srt', 'verbose_json', and 'vtt'."
        )),
    }
}

/// `POST /v1/audio/speech`: why the real API would refuse the request, if it would; else the
/// audio in pieces (an MP3 header, then the input's bytes three times: deterministic, and long
/// enough to arrive in several chunks).
pub(crate) fn speech(body: &Value) -> Result<Vec<Bytes>, String> {
    for k in ["model", "input", "voice"] {
        if !body.get(k).is_some_and(Value::is_string) {
            return Err(format!("Missing required parameter: '{k}'."));
        }
    }
    let input = body["input"].as_str().unwrap_or_default();
    let mut out = vec![Bytes::from_static(b"ID3\x04\x00\x00\x00\x00\x00\x00")];
    for _ in 0..3 {
        out.push(Bytes::copy_from_slice(input.as_bytes()));
    }
    Ok(out)
}
