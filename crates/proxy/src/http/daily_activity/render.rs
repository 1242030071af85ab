//! The daily activity answer in LiteLLM's shape (`SpendAnalyticsPaginatedResponse`): per day,
//! newest first, the sums and their breakdown by model, model group, provider, key and
//! entity, each bucket with its keys' parts, and the page's totals.

use std::collections::{BTreeMap, HashMap};

use chrono::{TimeZone, Utc};
use idlehands_store::KeyFacts;
use idlehands_store::daily_activity::ActivityRow;
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

/// A row's bucket names, as LiteLLM names missing ones.
fn names_of(r: &ActivityRow) -> [String; 4] {
    let model = if r.model.is_empty() {
        "unknown-model".to_owned()
    } else {
        r.model.clone()
    };
    let group = match r.model_group.as_deref() {
        Some(g) if !g.is_empty() => g.to_owned(),
        _ if r.model.is_empty() => "unknown-model-group".to_owned(),
        _ => r.model.clone(),
    };
    let provider = r
        .provider
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    let entity = r
        .entity
        .clone()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "Unassigned".to_owned());
    [model, group, provider, entity]
}

/// The answer's days, newest first when rendered, and the totals.
#[derive(Default)]
pub(super) struct Days {
    days: BTreeMap<i64, Day>,
    totals: Sums,
}

impl Days {
    /// A group of one key: its sums count everywhere, and as that key's part.
    pub(super) fn add_row(&mut self, r: &ActivityRow) {
        self.add_sums(r);
        self.add_keyed(r);
    }

    /// Every key's calls of a group: the day's, the buckets' and the totals' sums.
    pub(super) fn add_sums(&mut self, r: &ActivityRow) {
        self.totals.add(r);
        let [model, group, provider, entity] = names_of(r);
        let d = self.days.entry(r.day_ms).or_default();
        d.sums.add(r);
        d.models.entry(model).or_default().sums.add(r);
        d.model_groups.entry(group).or_default().sums.add(r);
        d.providers.entry(provider).or_default().sums.add(r);
        d.entities.entry(entity).or_default().sums.add(r);
    }

    /// One key's part of a group: the key's sums and its part in each bucket.
    pub(super) fn add_keyed(&mut self, r: &ActivityRow) {
        let [model, group, provider, entity] = names_of(r);
        let d = self.days.entry(r.day_ms).or_default();
        for bucket in [
            d.models.entry(model).or_default(),
            d.model_groups.entry(group).or_default(),
            d.providers.entry(provider).or_default(),
            d.entities.entry(entity).or_default(),
        ] {
            bucket.keys.entry(r.api_key.clone()).or_default().add(r);
        }
        d.api_keys.entry(r.api_key.clone()).or_default().add(r);
    }
}

/// The answer's `metadata` beyond the totals.
pub(super) struct Meta {
    pub(super) page: u32,
    pub(super) total_pages: i64,
    pub(super) has_more: bool,
    pub(super) api_key_limit: Option<usize>,
    pub(super) total_api_keys: Option<i64>,
    pub(super) entity_total_api_keys: Option<BTreeMap<String, i64>>,
}

impl Meta {
    /// Page `page` of `total` groups, `page_size` a page.
    pub(super) fn page(page: u32, page_size: u32, total: i64) -> Meta {
        let size = i64::from(page_size.max(1));
        Meta {
            page,
            total_pages: (total + size - 1) / size,
            has_more: i64::from(page).saturating_mul(size) < total,
            api_key_limit: None,
            total_api_keys: None,
            entity_total_api_keys: None,
        }
    }
}

pub(super) fn render(all: &Days, names: &Names<'_>, page: &Meta) -> Value {
    let (days, totals) = (&all.days, &all.totals);
    let results: Vec<Value> = days
        .iter()
        .rev()
        .map(|(day_ms, d)| {
            let date = Utc
                .timestamp_millis_opt(*day_ms)
                .single()
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            json!({
                "date": date,
                "metrics": d.sums.metrics(),
                "breakdown": {
                    "mcp_servers": {},
                    "models": names.buckets(&d.models, false),
                    "model_groups": names.buckets(&d.model_groups, false),
                    "providers": names.buckets(&d.providers, false),
                    "endpoints": {},
                    "api_keys": names.keyed(&d.api_keys),
                    "entities": names.buckets(&d.entities, true),
                    "guardrails": {},
                },
            })
        })
        .collect();
    // Each metric's total, as LiteLLM names them: `total_` before all but those that
    // start with it already (`total_tokens`, `total_response_time_ms`).
    let mut meta = Map::new();
    if let Value::Object(m) = totals.metrics() {
        for (k, v) in m {
            let name = if k.starts_with("total_") {
                k
            } else {
                format!("total_{k}")
            };
            meta.insert(name, v);
        }
    }
    meta.insert("page".into(), json!(page.page));
    meta.insert("total_pages".into(), json!(page.total_pages));
    meta.insert("has_more".into(), json!(page.has_more));
    meta.insert("api_key_limit".into(), json!(page.api_key_limit));
    meta.insert("total_api_keys".into(), json!(page.total_api_keys));
    meta.insert(
        "entity_total_api_keys".into(),
        json!(page.entity_total_api_keys),
    );
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
        let none = Days::default();
        let empty = render(&none, &names, &Meta::page(1, 10, 0));
        assert_eq!(empty["results"], json!([]));
        assert_eq!(empty["metadata"]["total_pages"], 0);
        assert_eq!(empty["metadata"]["has_more"], false);
        // LiteLLM's `DailySpendMetadata`, field for field.
        let mut fields: Vec<&str> = empty["metadata"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        let mut litellm = vec![
            "total_spend",
            "total_flat_cost",
            "total_ptu_hours",
            "total_prompt_tokens",
            "total_completion_tokens",
            "total_tokens",
            "total_api_requests",
            "total_successful_requests",
            "total_failed_requests",
            "total_cache_read_input_tokens",
            "total_cache_creation_input_tokens",
            "total_compression_saved_tokens",
            "total_compression_savings_spend",
            "total_prompt_caching_savings_spend",
            "total_gateway_injected_caching_savings_spend",
            "total_autorouter_savings_spend",
            "total_response_time_ms",
            "total_timed_requests",
            "page",
            "total_pages",
            "has_more",
            "api_key_limit",
            "total_api_keys",
            "entity_total_api_keys",
        ];
        litellm.sort_unstable();
        assert_eq!(fields, litellm);
        let m = render(&none, &names, &Meta::page(2, 10, 21))["metadata"].clone();
        assert_eq!(
            (m["total_pages"].clone(), m["has_more"].clone()),
            (json!(3), json!(true))
        );
        let m = render(&none, &names, &Meta::page(3, 10, 21))["metadata"].clone();
        assert_eq!(m["has_more"], false);
    }

    fn row(day: i64, key: &str, model: &str, spend: i64) -> ActivityRow {
        ActivityRow {
            day_ms: day * 86_400_000,
            api_key: key.to_owned(),
            model: model.to_owned(),
            model_group: None,
            provider: Some("openai".to_owned()),
            entity: None,
            spend,
            prompt_tokens: 1,
            completion_tokens: 2,
            requests: 1,
            successful_requests: 1,
            failed_requests: 0,
        }
    }

    /// Every key's sums and the top keys' parts come apart: buckets count every key, their
    /// key breakdowns only the keys given.
    #[test]
    fn sums_and_key_parts_are_kept_apart() {
        let names = Names {
            keys: &HashMap::new(),
            users: &HashMap::new(),
            entities: &HashMap::new(),
        };
        let mut days = Days::default();
        let mut all = row(20000, "", "m", 30);
        all.requests = 3;
        days.add_sums(&all);
        days.add_keyed(&row(20000, "k1", "m", 20));
        let out = render(&days, &names, &Meta::page(1, 1, 1));
        let d = &out["results"][0];
        assert_eq!(d["date"], "2024-10-04");
        assert_eq!(d["metrics"]["api_requests"], 3);
        assert_eq!(d["breakdown"]["models"]["m"]["metrics"]["api_requests"], 3);
        let parts = d["breakdown"]["models"]["m"]["api_key_breakdown"]
            .as_object()
            .unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts["k1"]["metrics"]["api_requests"], 1);
        assert_eq!(
            d["breakdown"]["entities"]["Unassigned"]["metrics"]["api_requests"],
            3
        );
        assert_eq!(out["metadata"]["total_api_requests"], 3);
    }
}
