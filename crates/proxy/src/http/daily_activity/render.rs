//! The daily activity answer in LiteLLM's shape (`SpendAnalyticsPaginatedResponse`): per day,
//! newest first, the sums and their breakdown by model, model group, provider, key and
//! entity, each bucket with its keys' parts, and the page's totals.

use std::collections::{BTreeMap, HashMap};

use chrono::{TimeZone, Utc};
use idlehands_store::daily_activity::{ActivityRow, KeyFacts};
use idlehands_store::money::nanos_to_usd;
use serde_json::{Map, Value, json};

/// The sums of one bucket; spend in nano-dollars.
#[derive(Default, Clone, Copy)]
struct Sums {
    spend: i64,
    prompt: i64,
    completion: i64,
    requests: i64,
    ok: i64,
    failed: i64,
}

impl Sums {
    fn add(&mut self, r: &ActivityRow) {
        self.spend = self.spend.saturating_add(r.spend);
        self.prompt = self.prompt.saturating_add(r.prompt_tokens);
        self.completion = self.completion.saturating_add(r.completion_tokens);
        self.requests = self.requests.saturating_add(r.requests);
        self.ok = self.ok.saturating_add(r.successful_requests);
        self.failed = self.failed.saturating_add(r.failed_requests);
    }

    /// LiteLLM's `SpendMetrics`.
    fn metrics(&self) -> Value {
        json!({
            "spend": nanos_to_usd(self.spend),
            "flat_cost": 0.0,
            "ptu_hours": 0.0,
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "compression_saved_tokens": 0,
            "compression_savings_spend": 0.0,
            "prompt_caching_savings_spend": 0.0,
            "gateway_injected_caching_savings_spend": 0.0,
            "autorouter_savings_spend": 0.0,
            "total_tokens": self.prompt.saturating_add(self.completion),
            "successful_requests": self.ok,
            "failed_requests": self.failed,
            "api_requests": self.requests,
            "total_response_time_ms": 0,
            "timed_requests": 0,
        })
    }
}

/// A breakdown bucket: its sums and each key's part of them.
#[derive(Default)]
struct Bucket {
    sums: Sums,
    keys: BTreeMap<String, Sums>,
}

impl Bucket {
    fn add(&mut self, r: &ActivityRow) {
        self.sums.add(r);
        self.keys.entry(r.api_key.clone()).or_default().add(r);
    }
}

#[derive(Default)]
struct Day {
    sums: Sums,
    models: BTreeMap<String, Bucket>,
    model_groups: BTreeMap<String, Bucket>,
    providers: BTreeMap<String, Bucket>,
    api_keys: BTreeMap<String, Sums>,
    entities: BTreeMap<String, Bucket>,
}

/// What the page's keys, users and entities are called.
pub(super) struct Names<'a> {
    pub(super) keys: &'a HashMap<String, KeyFacts>,
    pub(super) users: &'a HashMap<String, (Option<String>, Option<String>)>,
    pub(super) entities: &'a HashMap<String, Value>,
}

impl Names<'_> {
    /// LiteLLM's `KeyMetadata`.
    fn key(&self, token: &str) -> Value {
        if token.is_empty() {
            return json!({ "key_alias": "Unattributed", "team_id": null, "user_id": null, "user_email": null, "key_exists": false });
        }
        match self.keys.get(token) {
            Some(k) => {
                let email = k
                    .user_id
                    .as_deref()
                    .and_then(|u| self.users.get(u))
                    .and_then(|(e, _)| e.clone());
                json!({
                    "key_alias": k.key_alias,
                    "team_id": k.team_id,
                    "user_id": k.user_id,
                    "user_email": email,
                    "key_exists": true,
                })
            }
            None => json!({
                "key_alias": null, "team_id": null, "user_id": null, "user_email": null,
                "key_exists": false,
            }),
        }
    }

    fn keyed(&self, keys: &BTreeMap<String, Sums>) -> Value {
        let mut out = Map::new();
        for (token, sums) in keys {
            out.insert(
                key_bucket(token),
                json!({ "metrics": sums.metrics(), "metadata": self.key(token) }),
            );
        }
        Value::Object(out)
    }

    fn buckets(&self, buckets: &BTreeMap<String, Bucket>, metadata: bool) -> Value {
        let mut out = Map::new();
        for (name, b) in buckets {
            let meta = if metadata {
                self.entities
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| json!({}))
            } else {
                json!({})
            };
            out.insert(
                name.clone(),
                json!({
                    "metrics": b.sums.metrics(),
                    "metadata": meta,
                    "api_key_breakdown": self.keyed(&b.keys),
                }),
            );
        }
        Value::Object(out)
    }
}

/// How LiteLLM names a key in a breakdown: its hash; `unattributed` for calls without one
/// (a hash spelled like that, or like the escape, is escaped with `raw:`).
pub(super) fn key_bucket(token: &str) -> String {
    if token.is_empty() {
        "unattributed".to_owned()
    } else if token == "unattributed" || token.starts_with("raw:") {
        format!("raw:{token}")
    } else {
        token.to_owned()
    }
}

pub(super) fn render(
    rows: &[ActivityRow],
    names: &Names<'_>,
    page: u32,
    page_size: u32,
    total: i64,
) -> Value {
    let mut days: BTreeMap<i64, Day> = BTreeMap::new();
    let mut totals = Sums::default();
    for r in rows {
        totals.add(r);
        let d = days.entry(r.day_ms).or_default();
        d.sums.add(r);
        let model = if r.model.is_empty() {
            "unknown-model".to_owned()
        } else {
            r.model.clone()
        };
        let group = r
            .model_group
            .clone()
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| {
                if r.model.is_empty() {
                    "unknown-model-group".to_owned()
                } else {
                    r.model.clone()
                }
            });
        d.models.entry(model).or_default().add(r);
        d.model_groups.entry(group).or_default().add(r);
        let provider = r
            .provider
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        d.providers.entry(provider).or_default().add(r);
        d.api_keys.entry(r.api_key.clone()).or_default().add(r);
        let entity = r
            .entity
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "Unassigned".to_owned());
        d.entities.entry(entity).or_default().add(r);
    }
    let results: Vec<Value> = days
        .iter()
        .rev()
        .map(|(day_ms, d)| {
            let date = Utc
                .timestamp_millis_opt(*day_ms)
                .single()
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            let mut api_keys = Map::new();
            for (token, sums) in &d.api_keys {
                api_keys.insert(
                    key_bucket(token),
                    json!({ "metrics": sums.metrics(), "metadata": names.key(token) }),
                );
            }
            json!({
                "date": date,
                "metrics": d.sums.metrics(),
                "breakdown": {
                    "mcp_servers": {},
                    "models": names.buckets(&d.models, false),
                    "model_groups": names.buckets(&d.model_groups, false),
                    "providers": names.buckets(&d.providers, false),
                    "endpoints": {},
                    "api_keys": api_keys,
                    "entities": names.buckets(&d.entities, true),
                    "guardrails": {},
                },
            })
        })
        .collect();
    let size = i64::from(page_size);
    let total_pages = (total + size - 1) / size;
    let m = totals.metrics();
    let num = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
    let mut meta = Map::new();
    for k in [
        "spend",
        "flat_cost",
        "ptu_hours",
        "prompt_tokens",
        "completion_tokens",
    ] {
        meta.insert(format!("total_{k}"), num(k));
    }
    meta.insert("total_tokens".into(), num("total_tokens"));
    for k in [
        "api_requests",
        "successful_requests",
        "failed_requests",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "compression_saved_tokens",
        "compression_savings_spend",
        "prompt_caching_savings_spend",
        "gateway_injected_caching_savings_spend",
        "autorouter_savings_spend",
        "response_time_ms",
        "timed_requests",
    ] {
        let source = if k == "response_time_ms" {
            "total_response_time_ms"
        } else {
            k
        };
        meta.insert(format!("total_{k}"), num(source));
    }
    meta.insert("page".into(), json!(page));
    meta.insert("total_pages".into(), json!(total_pages));
    meta.insert(
        "has_more".into(),
        json!(i64::from(page).saturating_mul(size) < total),
    );
    meta.insert("api_key_limit".into(), Value::Null);
    meta.insert("total_api_keys".into(), Value::Null);
    meta.insert("entity_total_api_keys".into(), Value::Null);
    json!({ "results": results, "metadata": meta })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_count_groups() {
        let names = Names {
            keys: &HashMap::new(),
            users: &HashMap::new(),
            entities: &HashMap::new(),
        };
        let empty = render(&[], &names, 1, 10, 0);
        assert_eq!(empty["results"], json!([]));
        assert_eq!(empty["metadata"]["total_pages"], 0);
        assert_eq!(empty["metadata"]["has_more"], false);
        let m = render(&[], &names, 2, 10, 21)["metadata"].clone();
        assert_eq!(
            (m["total_pages"].clone(), m["has_more"].clone()),
            (json!(3), json!(true))
        );
        let m = render(&[], &names, 3, 10, 21)["metadata"].clone();
        assert_eq!(m["has_more"], false);
    }
}
