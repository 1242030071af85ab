//! Turning `/key/*` bodies into records: every value checked before anything is written, with
//! a 400 that names the field.

use chrono::{DateTime, Utc};

use crate::duration::LlmDuration;
use crate::error::StoreError;
use crate::keygen::{abbreviate, hash_key};
use crate::keys_db::UpdateScope;
use crate::money::usd_to_nanos;
use crate::types::{GenerateKeyRequest, KeyRecord, UpdateKeyRequest};

pub(crate) fn validate_custom_key(key: &str, field: &str) -> Result<(), StoreError> {
    if !key.starts_with("sk-") {
        return Err(StoreError::bad_request(
            format!(
                "Invalid key format. LiteLLM Virtual Key must start with 'sk-'. Check the `{field}` value"
            ),
            field,
        ));
    }
    if key.len() < 6 {
        return Err(StoreError::bad_request(
            format!("`{field}` is too short: use at least 3 characters after 'sk-'"),
            field,
        ));
    }
    Ok(())
}

pub(crate) fn money(v: Option<f64>, field: &str) -> Result<Option<i64>, StoreError> {
    let Some(v) = v else { return Ok(None) };
    match usd_to_nanos(v) {
        Some(n) if n >= 0 && v >= 0.0 => Ok(Some(n)),
        _ => Err(StoreError::bad_request(
            format!("{field} must be a non-negative number of USD, got {v}"),
            field,
        )),
    }
}

pub(crate) fn limit(v: Option<i64>, field: &str) -> Result<Option<i64>, StoreError> {
    match v {
        Some(n) if n < 0 => Err(StoreError::bad_request(
            format!("{field} must be >= 0, got {n}"),
            field,
        )),
        other => Ok(other),
    }
}

pub(crate) fn models(v: &[String]) -> Result<(), StoreError> {
    if let Some(i) = v.iter().position(|m| m.trim().is_empty()) {
        return Err(StoreError::bad_request(
            format!("models[{i}] is empty: list model names"),
            format!("models[{i}]"),
        ));
    }
    Ok(())
}

/// Alias targets are model names: LiteLLM would send a request with any other value on as its
/// model and fail there, so it is refused here, naming the alias.
fn aliases(v: &crate::types::JsonMap) -> Result<(), StoreError> {
    for (alias, target) in v {
        if target.as_str().is_none_or(|t| t.trim().is_empty()) {
            return Err(StoreError::bad_request(
                format!(
                    "aliases.{alias} must be the name of the model it stands for, got {target}"
                ),
                format!("aliases.{alias}"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn new_key_record(
    req: &GenerateKeyRequest,
    plaintext: &str,
    created_by: Option<&str>,
    now: DateTime<Utc>,
) -> Result<KeyRecord, StoreError> {
    let spend = money(req.spend, "spend")?.unwrap_or(0);
    let max_budget = money(req.max_budget, "max_budget")?;
    let soft_budget = money(req.soft_budget, "soft_budget")?;
    let tpm_limit = limit(req.tpm_limit, "tpm_limit")?;
    let rpm_limit = limit(req.rpm_limit, "rpm_limit")?;
    let max_parallel_requests = limit(req.max_parallel_requests, "max_parallel_requests")?;
    let expires = match &req.duration {
        Some(d) => Some(LlmDuration::parse_field(d, "duration")?.after(now)),
        None => None,
    };
    let budget_reset_at = match &req.budget_duration {
        Some(d) => Some(LlmDuration::parse_field(d, "budget_duration")?.next_reset(now)),
        None => None,
    };
    let model_list = req.models.clone().unwrap_or_default();
    models(&model_list)?;
    if let Some(a) = &req.aliases {
        aliases(a)?;
    }
    let mut metadata = req.metadata.clone().unwrap_or_default();
    for (field, limits) in [
        ("model_rpm_limit", &req.model_rpm_limit),
        ("model_tpm_limit", &req.model_tpm_limit),
    ] {
        if let Some(m) = limits {
            crate::key_model_budgets::check_model_limits(m, field)?;
            metadata.insert(field.to_owned(), serde_json::Value::Object(m.clone()));
        }
    }
    Ok(KeyRecord {
        token: hash_key(plaintext),
        key_name: abbreviate(plaintext),
        key_alias: req.key_alias.clone(),
        spend,
        max_budget,
        soft_budget,
        budget_duration: req.budget_duration.clone(),
        budget_reset_at,
        expires,
        models: model_list,
        aliases: req.aliases.clone().unwrap_or_default(),
        config: req.config.clone().unwrap_or_default(),
        permissions: req.permissions.clone().unwrap_or_default(),
        metadata,
        user_id: req.user_id.clone(),
        team_id: req.team_id.clone(),
        organization_id: req.organization_id.clone(),
        tpm_limit,
        rpm_limit,
        max_parallel_requests,
        blocked: req.blocked.unwrap_or(false),
        created_at: now,
        created_by: created_by.map(str::to_owned),
        updated_at: now,
        updated_by: created_by.map(str::to_owned),
        allowed_routes: routes_for(req.key_type.as_deref(), req.allowed_routes.as_deref())?,
        key_type: req.key_type.clone(),
        model_max_budget: match &req.model_max_budget {
            Some(m) => {
                crate::key_model_budgets::parse(m)?;
                m.clone()
            }
            None => Default::default(),
        },
        allowed_cache_controls: cache_controls(req.allowed_cache_controls.as_deref())?,
        budget_id: tier_id(req.budget_id.as_deref()),
    })
}

/// A key's `budget_id` as stored: trimmed, an empty one none.
pub(crate) fn tier_id(id: Option<&str>) -> Option<String> {
    id.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// LiteLLM's response-cache controls, the names `allowed_cache_controls` may list.
pub const CACHE_CONTROLS: [&str; 6] = [
    "no-cache",
    "no-store",
    "ttl",
    "s-maxage",
    "namespace",
    "use-cache",
];

/// A key's `allowed_cache_controls`: each a control a call can send.
fn cache_controls(list: Option<&[String]>) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for (i, c) in list.unwrap_or_default().iter().enumerate() {
        let c = c.trim();
        let name = if c == "s-max-age" { "s-maxage" } else { c };
        if !CACHE_CONTROLS.contains(&name) {
            return Err(StoreError::bad_request(
                format!(
                    "allowed_cache_controls[{i}] {c:?} is not a cache control ({})",
                    CACHE_CONTROLS.join(", ")
                ),
                format!("allowed_cache_controls[{i}]"),
            ));
        }
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// LiteLLM's key types; the first three choose the key's routes.
const KEY_TYPES: [(&str, Option<&str>); 4] = [
    ("llm_api", Some("llm_api_routes")),
    ("management", Some("management_routes")),
    ("read_only", Some("info_routes")),
    ("default", None),
];

/// A key's `allowed_routes`: a `key_type` preset (over any list given, as LiteLLM does), else
/// the list.
pub(crate) fn routes_for(
    key_type: Option<&str>,
    routes: Option<&[String]>,
) -> Result<Vec<String>, StoreError> {
    if let Some(t) = key_type {
        match KEY_TYPES.iter().find(|(name, _)| *name == t) {
            Some((_, Some(preset))) => return Ok(vec![(*preset).to_owned()]),
            Some((_, None)) => {}
            None => {
                return Err(StoreError::bad_request(
                    format!(
                        "Invalid key_type: {t}. Must be one of: llm_api, management, read_only, default"
                    ),
                    "key_type",
                ));
            }
        }
    }
    let routes = routes.unwrap_or_default();
    if let Some(i) = routes.iter().position(|r| r.trim().is_empty()) {
        return Err(StoreError::bad_request(
            format!("allowed_routes[{i}] is empty: list routes or route groups"),
            format!("allowed_routes[{i}]"),
        ));
    }
    Ok(routes.to_vec())
}

/// Applies the fields present in `req` to `k`; fails without touching anything on bad input.
pub(crate) fn apply_update(
    k: &mut KeyRecord,
    req: &UpdateKeyRequest,
    by: Option<&str>,
    now: DateTime<Utc>,
) -> Result<UpdateScope, StoreError> {
    let mut next = k.clone();
    let mut scope = UpdateScope::default();
    // `key_alias` names the key when `key` is absent; then it is not a change.
    if req.key.is_some()
        && let Some(alias) = &req.key_alias
    {
        next.key_alias = alias.clone();
    }
    if let Some(v) = &req.user_id {
        next.user_id = v.clone();
    }
    if let Some(v) = &req.team_id {
        next.team_id = v.clone();
    }
    if let Some(v) = &req.organization_id {
        next.organization_id = v.clone();
    }
    if let Some(d) = &req.duration {
        next.expires = match d {
            Some(d) => Some(LlmDuration::parse_field(d, "duration")?.after(now)),
            None => None,
        };
    }
    if let Some(spend) = req.spend {
        next.spend = money(Some(spend), "spend")?.unwrap_or(0);
        scope.spend = true;
    }
    if let Some(v) = req.max_budget {
        next.max_budget = money(v, "max_budget")?;
    }
    if let Some(v) = req.soft_budget {
        next.soft_budget = money(v, "soft_budget")?;
    }
    if let Some(d) = &req.budget_duration {
        next.budget_reset_at = match d {
            Some(d) => Some(LlmDuration::parse_field(d, "budget_duration")?.next_reset(now)),
            None => None,
        };
        next.budget_duration = d.clone();
        scope.budget_reset_at = true;
    }
    if let Some(v) = &req.models {
        models(v)?;
        next.models = v.clone();
    }
    if let Some(v) = &req.aliases {
        aliases(v)?;
        next.aliases = v.clone();
    }
    if let Some(v) = &req.config {
        next.config = v.clone();
    }
    if let Some(v) = &req.permissions {
        next.permissions = v.clone();
    }
    if let Some(v) = &req.metadata {
        next.metadata = v.clone();
    }
    if let Some(t) = &req.tags {
        next.metadata
            .insert("tags".to_owned(), serde_json::Value::Array(t.clone()));
    }
    if let Some(v) = req.tpm_limit {
        next.tpm_limit = limit(v, "tpm_limit")?;
    }
    if let Some(v) = req.rpm_limit {
        next.rpm_limit = limit(v, "rpm_limit")?;
    }
    if let Some(v) = req.max_parallel_requests {
        next.max_parallel_requests = limit(v, "max_parallel_requests")?;
    }
    if let Some(b) = req.blocked {
        next.blocked = b;
    }
    if let Some(routes) = &req.allowed_routes {
        next.allowed_routes = routes_for(None, routes.as_deref())?;
    }
    if let Some(controls) = &req.allowed_cache_controls {
        next.allowed_cache_controls = cache_controls(controls.as_deref())?;
    }
    if let Some(id) = &req.budget_id {
        next.budget_id = tier_id(id.as_deref());
    }
    for (field, limits) in [
        ("model_rpm_limit", &req.model_rpm_limit),
        ("model_tpm_limit", &req.model_tpm_limit),
    ] {
        match limits {
            Some(Some(m)) => {
                crate::key_model_budgets::check_model_limits(m, field)?;
                next.metadata
                    .insert(field.to_owned(), serde_json::Value::Object(m.clone()));
            }
            Some(None) => {
                next.metadata.remove(field);
            }
            None => {}
        }
    }
    if let Some(m) = &req.model_max_budget {
        let m = m.clone().unwrap_or_default();
        crate::key_model_budgets::parse(&m)?;
        next.model_max_budget = m;
    }
    if let Some(t) = &req.key_type {
        if t.is_some() {
            // The preset replaces the routes; `default` keeps them.
            let kept = next.allowed_routes.clone();
            next.allowed_routes = routes_for(t.as_deref(), Some(&kept))?;
        }
        next.key_type = t.clone();
    }
    next.updated_at = now;
    next.updated_by = by.map(str::to_owned);
    *k = next;
    Ok(scope)
}
