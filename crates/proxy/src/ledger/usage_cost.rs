//! `usage.cost` on the streamed usage chunk: a stream's cost is known only at its end, after
//! the headers went out, so it rides in the body as OpenRouter does (`"cost": <USD>`).

use serde_json::Value;

/// The chunk with `usage.cost` set to `cost_nanos` in USD, or `None` when it has no usage
/// object (left untouched then).
pub fn with_usage_cost(chunk: &str, cost_nanos: u64) -> Option<String> {
    let mut v: Value = serde_json::from_str(chunk).ok()?;
    let usage = v.get_mut("usage")?.as_object_mut()?;
    // Exact to the nano-dollar: the integer is converted once, not accumulated.
    let usd = cost_nanos as f64 / 1e9;
    usage.insert("cost".to_string(), serde_json::json!(usd));
    serde_json::to_string(&v).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn adds_cost_to_the_usage_object_only() {
        let chunk = r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#;
        let out = with_usage_cost(chunk, 123_000).expect("has usage");
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["usage"]["cost"].as_f64(), Some(0.000123));
        assert_eq!(v["usage"]["total_tokens"], 15);
        assert_eq!(v["id"], "c1");
        assert!(with_usage_cost(r#"{"choices":[]}"#, 1).is_none());
        assert!(with_usage_cost(r#"{"usage":null}"#, 1).is_none());
    }
}
