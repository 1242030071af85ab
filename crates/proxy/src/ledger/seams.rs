//! The store behind the gateway's seams: virtual keys ([`KeyResolver`]), budget and rate-limit
//! reservations ([`CallHooks`]) and the spend log ([`CallSink`]).
//!
//! `post_call` only parks the reservation; `record` (which the gateway calls right after it,
//! with the same call) settles it with the spend-log row, or logs the row alone for calls that
//! reserved nothing (master key, refused before a reservation). Both are synchronous (they run
//! from a dropped stream), so the store work is spawned and counted, and
//! [`StoreSeams::drain`] waits for it at shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue};
use idlehands_store::organizations::OrgRecord;
use idlehands_store::teams::TeamView;
use idlehands_store::users::UserRecord;
use idlehands_store::{
    AccessError, ApiError, AuthedKey, JsonObjectText, KeyRecord, Ledger, RouteBudget, RouteRefusal,
    STATUS_FAILURE, STATUS_SUCCESS, SpendLogRow, StoreError,
};
use idlehands_wire::Usage;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::Notify;

use crate::auth::{KeyResolver, Principal, VirtualKey};
use crate::error::ProxyError;
use crate::hooks::{CallHooks, CallRecord, CallSink, CallStatus, PreCall, Reservation};
use crate::pricing::Nanos;
use idlehands_store::JWT_TOKEN_PREFIX;

/// Output tokens assumed for a budget reservation when the request sets no `max_tokens`.
/// Over-reserving only delays admission near the budget; under-reserving lets concurrent
/// requests overshoot it.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 1024;

static KEY_SPEND: HeaderName = HeaderName::from_static("x-litellm-key-spend");
static KEY_MAX_BUDGET: HeaderName = HeaderName::from_static("x-litellm-key-max-budget");
static KEY_RPM: HeaderName = HeaderName::from_static("x-litellm-key-rpm-limit");
static KEY_TPM: HeaderName = HeaderName::from_static("x-litellm-key-tpm-limit");

/// A store error in the gateway's envelope.
pub fn api_error(e: &dyn ApiError) -> ProxyError {
    let mut headers = Vec::new();
    if let Some(secs) = e.retry_after() {
        headers.push((http::header::RETRY_AFTER, HeaderValue::from(secs)));
    }
    ProxyError::Custom {
        status: e.status(),
        kind: e.error_type().to_string(),
        message: e.message(),
        param: e.param().map(str::to_string),
        headers,
    }
}

/// What `pre_call` reserved for a virtual key.
struct Held {
    reservation: idlehands_store::Reservation,
    token: String,
    spend_at_admission: i64,
    max_budget: Option<i64>,
    rpm_limit: Option<i64>,
    tpm_limit: Option<i64>,
}

/// A key as the request path sees it: the store's record and the gateway's view of it, built
/// once per record version.
struct Resolved {
    record: Arc<KeyRecord>,
    team: Option<Arc<TeamView>>,
    user: Option<Arc<UserRecord>>,
    org: Option<Arc<OrgRecord>>,
    principal: Principal,
}

type ResolvedParts = (
    Arc<KeyRecord>,
    Option<Arc<TeamView>>,
    Option<Arc<UserRecord>>,
    Option<Arc<OrgRecord>>,
);

pub struct StoreSeams {
    ledger: Ledger,
    resolved: RwLock<HashMap<String, Arc<Resolved>, foldhash::fast::RandomState>>,
    /// Reservations between `post_call` and `record`, by call id.
    parked: Mutex<HashMap<String, Held, foldhash::fast::RandomState>>,
    tracker: Arc<Tracker>,
}

/// Spawned settlements not yet handed to the spend writer.
#[derive(Default)]
struct Tracker {
    pending: AtomicUsize,
    idle: Notify,
}

impl StoreSeams {
    pub fn new(ledger: Ledger) -> StoreSeams {
        StoreSeams {
            ledger,
            resolved: RwLock::new(HashMap::default()),
            parked: Mutex::new(HashMap::default()),
            tracker: Arc::default(),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn principal_for(&self, authed: AuthedKey) -> Principal {
        fn same<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        let same_team = |r: &Resolved| {
            same(&r.team, &authed.team) && same(&r.user, &authed.user) && same(&r.org, &authed.org)
        };
        // A JWT caller's record is made afresh for each call from its team and user.
        let via_jwt = authed.token.starts_with(JWT_TOKEN_PREFIX);
        if let Some(r) = self.resolved.read().get(&authed.token)
            && (via_jwt || Arc::ptr_eq(&r.record, &authed.record))
            && same_team(r)
        {
            return r.principal.clone();
        }
        let k = &authed.record;
        let nonneg = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        let vk = VirtualKey {
            token_hash: authed.token.clone(),
            key_alias: k.key_alias.clone(),
            key_name: Some(k.key_name.clone()),
            user_id: k.user_id.clone(),
            team_id: k.team_id.clone(),
            models: k.models.clone(),
            // The team's models bound a key in a team; a key without one, its user's.
            team_models: match (&authed.team, &authed.user) {
                (Some(t), _) => t.record.models.clone(),
                (None, Some(u)) => u.models.clone(),
                (None, None) => Vec::new(),
            },
            org_models: authed
                .org
                .as_ref()
                .map(|o| o.models.clone())
                .unwrap_or_default(),
            aliases: k
                .aliases
                .iter()
                .filter_map(|(alias, target)| Some((alias.clone(), target.as_str()?.to_owned())))
                .collect(),
            max_budget_nanos: nonneg(k.max_budget),
            soft_budget_nanos: nonneg(k.soft_budget),
            spend_nanos: u64::try_from(k.spend).unwrap_or(0),
            tpm_limit: nonneg(k.tpm_limit),
            rpm_limit: nonneg(k.rpm_limit),
            max_parallel_requests: nonneg(k.max_parallel_requests)
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            metadata: Value::Object(k.metadata.clone()),
            team_tags: authed
                .team
                .as_ref()
                .and_then(|t| t.record.metadata.get("tags"))
                .and_then(Value::as_array)
                .map(|tags| {
                    tags.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            allowed_routes: k.allowed_routes.clone(),
            allowed_cache_controls: k.allowed_cache_controls.clone(),
            via_jwt,
            jwt_end_user: None,
        };
        let principal = Principal::VirtualKey(Arc::new(vk));
        let mut map = self.resolved.write();
        if map.len() > 100_000 {
            map.clear();
        }
        map.insert(
            authed.token.clone(),
            Arc::new(Resolved {
                record: authed.record,
                team: authed.team,
                user: authed.user,
                org: authed.org,
                principal: principal.clone(),
            }),
        );
        principal
    }

    fn record_of(&self, token: &str) -> Option<ResolvedParts> {
        self.resolved.read().get(token).map(|r| {
            (
                r.record.clone(),
                r.team.clone(),
                r.user.clone(),
                r.org.clone(),
            )
        })
    }

    /// Runs store work off the (synchronous) hook, counted for [`StoreSeams::drain`].
    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::error!("no async runtime: a spend-log row was dropped");
            return;
        };
        // Settling against the in-process limiter finishes at once: do it here, and spawn
        // only work that has to wait (Redis, a full spend-log queue). A task per request
        // showed in profiles. A future left pending here is polled again as soon as it is
        // spawned, which registers the task's waker in place of the no-op one.
        let mut work = Box::pin(work);
        let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
        if work.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        let tracker = self.tracker.clone();
        tracker.pending.fetch_add(1, Ordering::AcqRel);
        handle.spawn(async move {
            work.await;
            if tracker.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                tracker.idle.notify_waiters();
            }
        });
    }

    /// Waits (at most `limit`) for spawned settlements to reach the spend writer.
    pub async fn drain(&self, limit: Duration) {
        let wait = async {
            loop {
                let notified = self.tracker.idle.notified();
                if self.tracker.pending.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(limit, wait).await.is_err() {
            tracing::error!(
                pending = self.tracker.pending.load(Ordering::Acquire),
                "spend settlements still running at shutdown"
            );
        }
    }
}

/// The reservation's estimate: the prompt at the input price plus `max_tokens` (or
/// [`DEFAULT_OUTPUT_TOKENS`], at most the model's output limit) at the output price.
fn estimate(call: &PreCall<'_>) -> (i64, u64) {
    let prompt = call.prompt_tokens_estimate;
    let output = call.max_tokens.unwrap_or_else(|| {
        let cap = call
            .price
            .and_then(|p| p.max_output_tokens)
            .unwrap_or(u64::MAX);
        DEFAULT_OUTPUT_TOKENS.min(cap)
    });
    let nanos = call.price.map_or(0, |p| {
        p.cost(&Usage {
            prompt_tokens: prompt,
            completion_tokens: output,
            total_tokens: prompt.saturating_add(output),
            ..Usage::default()
        })
    });
    // tpm counts what the client asked for; an unbounded answer is settled afterwards.
    let tokens = prompt.saturating_add(call.max_tokens.unwrap_or(0));
    (i64::try_from(nanos).unwrap_or(i64::MAX), tokens)
}

fn usd(nanos: i64) -> String {
    idlehands_store::money::usd_string(nanos)
}

impl KeyResolver for StoreSeams {
    fn resolve<'a>(
        &'a self,
        key: &'a str,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Principal, ProxyError>> {
        Box::pin(async move {
            match self.ledger.authenticate_hashed(key, hash.to_owned()).await {
                Ok(authed) => Ok(self.principal_for(authed)),
                Err(e) => Err(api_error(&e)),
            }
        })
    }

    fn ledger(&self) -> Option<&Ledger> {
        Some(&self.ledger)
    }

    fn resolve_jwt<'a>(
        &'a self,
        id: &'a crate::jwt::JwtIdentity,
        jwt: &'a crate::jwt::JwtAuth,
    ) -> BoxFuture<'a, Result<Principal, ProxyError>> {
        Box::pin(async move {
            let authed = self
                .ledger
                .authenticate_claims(
                    id.team_id.as_deref(),
                    id.user_id.as_deref(),
                    &jwt.settings().team_routes,
                    jwt.user_upsert().map(|r| (r, id.user_email.as_deref())),
                )
                .await
                .map_err(|e| api_error(&e))?;
            let principal = self.principal_for(authed);
            // The cached principal is the team and user's; the end user is this token's.
            match (principal, &id.end_user_id) {
                (Principal::VirtualKey(vk), Some(end_user)) => {
                    let mut own = VirtualKey::clone(&vk);
                    own.jwt_end_user = Some(end_user.clone());
                    Ok(Principal::VirtualKey(Arc::new(own)))
                }
                (principal, _) => Ok(principal),
            }
        })
    }
}

impl CallHooks for StoreSeams {
    fn pre_call<'a>(
        &'a self,
        call: &'a PreCall<'a>,
    ) -> BoxFuture<'a, Result<Reservation, ProxyError>> {
        Box::pin(async move {
            let Principal::VirtualKey(vk) = call.principal else {
                // No key to hold: only the end user's budget, when the call names one (the
                // master key's calls otherwise cost no estimate).
                let held = self
                    .ledger
                    .reserve_end_user(call.end_user, call.acting_user, || estimate(call))
                    .await
                    .map_err(|e| api_error(&e))?;
                return Ok(Reservation(held.map(|reservation| {
                    Box::new(Held {
                        reservation,
                        token: String::new(),
                        spend_at_admission: 0,
                        max_budget: None,
                        rpm_limit: None,
                        tpm_limit: None,
                    }) as Box<_>
                })));
            };
            let Some((record, team, user, org)) = self.record_of(&vk.token_hash) else {
                // Resolved a moment ago; gone only if the cache was just cleared.
                return Err(api_error(&AccessError::Unavailable));
            };
            let mut authed = AuthedKey {
                token: vk.token_hash.clone(),
                record,
                team,
                user,
                org,
            };
            if let Some(u) = call.acting_user {
                authed = self
                    .ledger
                    .acting_as(&authed, u)
                    .await
                    .map_err(|e| api_error(&e))?;
            }
            let (nanos, tokens) = estimate(call);
            let team_metadata = authed.team.as_ref().map(|t| &t.record.metadata);
            let model = super::model_budgets::call_model(&authed.record, team_metadata, call);
            let reservation = self
                .ledger
                .reserve_for(&authed, call.end_user, model, nanos, tokens)
                .await
                .map_err(|e| match e {
                    // Only the shared (Redis) limiter is ever unavailable here.
                    AccessError::Unavailable => ProxyError::Custom {
                        status: 503,
                        kind: "service_unavailable".to_string(),
                        message: "Budgets and rate limits cannot be checked: Redis is unreachable (general_settings.redis_failure_mode: closed)".to_string(),
                        param: None,
                        headers: Vec::new(),
                    },
                    e => api_error(&e),
                })?;
            let spend = self
                .ledger
                .key_spend(&authed.token)
                .unwrap_or(authed.record.spend);
            Ok(Reservation(Some(Box::new(Held {
                reservation,
                token: authed.token,
                spend_at_admission: spend,
                max_budget: authed.record.max_budget,
                rpm_limit: authed.record.rpm_limit,
                tpm_limit: authed.record.tpm_limit,
            }))))
        })
    }

    fn post_call(&self, _principal: &Principal, reservation: Reservation, record: &CallRecord) {
        let Some(any) = reservation.0 else { return };
        if let Ok(held) = any.downcast::<Held>() {
            self.parked.lock().insert(record.call_id.clone(), *held);
        }
    }

    fn hold_routes<'a>(
        &'a self,
        reservation: &'a mut Reservation,
        call: &'a PreCall<'a>,
        budgets: &'a [&'a RouteBudget],
    ) -> BoxFuture<'a, Result<(), RouteRefusal>> {
        Box::pin(async move {
            if reservation.0.is_none() {
                // A call that held nothing so far (the master key's): its row is logged
                // through the reservation from now on.
                reservation.0 = Some(Box::new(Held {
                    reservation: self.ledger.keyless_reservation(),
                    token: String::new(),
                    spend_at_admission: 0,
                    max_budget: None,
                    rpm_limit: None,
                    tpm_limit: None,
                }));
            }
            let Some(held) = reservation
                .0
                .as_mut()
                .and_then(|a| a.downcast_mut::<Held>())
            else {
                return Ok(());
            };
            let (nanos, tokens) = estimate(call);
            self.ledger
                .hold_routes(&mut held.reservation, budgets, nanos, tokens)
                .await
        })
    }

    fn release_routes(&self, reservation: &mut Reservation) {
        if let Some(held) = reservation
            .0
            .as_mut()
            .and_then(|a| a.downcast_mut::<Held>())
        {
            self.ledger.release_routes(&mut held.reservation);
        }
    }

    fn route_refused_lately(&self, budget: &RouteBudget) -> bool {
        self.ledger.route_refused_lately(budget)
    }

    fn route_spend(&self, budget: &RouteBudget) -> Option<i64> {
        self.ledger.route_spend(budget)
    }

    fn response_headers(
        &self,
        reservation: &Reservation,
        call_cost: Option<Nanos>,
        h: &mut HeaderMap,
    ) {
        let Some(held) = reservation
            .0
            .as_ref()
            .and_then(|a| a.downcast_ref::<Held>())
        else {
            return;
        };
        if held.token.is_empty() {
            // A master-key call held for its end user only: no key to report on.
            return;
        }
        // A JWT's call has no key whose spend to report, only its team's and user's limits.
        if !held.token.starts_with(JWT_TOKEN_PREFIX) {
            // Spend including this call when its cost is known (non-streamed answers).
            let this_call = call_cost.map_or(0, |c| i64::try_from(c).unwrap_or(i64::MAX));
            let spend = self
                .ledger
                .key_spend(&held.token)
                .unwrap_or(held.spend_at_admission)
                .max(held.spend_at_admission)
                .saturating_add(this_call);
            if let Some(v) = crate::header_values::owned(usd(spend)) {
                h.insert(KEY_SPEND.clone(), v);
            }
        }
        if let Some(max) = held.max_budget
            && let Some(v) = crate::header_values::owned(usd(max))
        {
            h.insert(KEY_MAX_BUDGET.clone(), v);
        }
        if let Some(rpm) = held.rpm_limit {
            h.insert(KEY_RPM.clone(), crate::header_values::signed(rpm));
        }
        if let Some(tpm) = held.tpm_limit {
            h.insert(KEY_TPM.clone(), crate::header_values::signed(tpm));
        }
        for (name, value) in held.reservation.rate_limit_headers() {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        }
    }
}

/// The spend-log row for a finished call (LiteLLM's `LiteLLM_SpendLogs` fields). Takes the
/// record so that its strings move into the row rather than being copied.
/// A row's `cache_key` when no response cache is configured, as LiteLLM writes it.
pub const CACHE_OFF: &str = "Cache OFF";

pub fn spend_row(r: CallRecord) -> SpendLogRow {
    let to_i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let metadata = JsonObjectText::from_serialized_object(metadata_json(&r));
    let request_duration_ms = i64::try_from(r.duration().as_millis()).ok();
    SpendLogRow {
        request_id: r.call_id.clone(),
        upstream_response_id: r.response_id,
        usage_estimated: r.usage_estimated,
        call_type: r.call_type.to_string(),
        api_key: r.api_key_hash.unwrap_or_default(),
        spend: to_i(r.cost_nanos),
        total_tokens: to_i(r.total_tokens),
        prompt_tokens: to_i(r.prompt_tokens),
        completion_tokens: to_i(r.completion_tokens),
        start_time: r.start_time,
        end_time: r.end_time,
        completion_start_time: r.completion_start_time,
        request_duration_ms,
        model: r.model,
        model_id: Some(r.model_id),
        model_group: Some(r.model_group),
        custom_llm_provider: Some(r.custom_llm_provider),
        api_base: r.api_base,
        user: r.user_id,
        team_id: r.team_id,
        end_user: r.end_user,
        metadata,
        request_tags: r.request_tags,
        session_id: r.session_id,
        requester_ip_address: r.requester_ip.as_deref().map(str::to_owned),
        cache_hit: Some(if r.cache_hit { "True" } else { "False" }.to_string()),
        cache_key: r
            .cache_key
            .or_else(|| r.cache_off.then(|| CACHE_OFF.to_string())),
        status: match r.status {
            CallStatus::Success => STATUS_SUCCESS,
            CallStatus::Failure => STATUS_FAILURE,
        }
        .to_string(),
        litellm_call_id: Some(r.call_id),
        // Filled only under `store_prompts_in_spend_logs` (see `crate::logging`).
        messages: r.messages,
        response: r.response,
        ..SpendLogRow::default()
    }
}

/// The row's `metadata` object, written straight to text with its keys in sorted order (as a
/// JSON map would give them): a map built and serialized per request showed in profiles.
fn metadata_json(r: &CallRecord) -> String {
    fn field(out: &mut Vec<u8>, name: &str, value: &impl serde::Serialize) {
        if out.len() > 1 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        if serde_json::to_writer(&mut *out, value).is_err() {
            out.extend_from_slice(b"null");
        }
    }
    let mut out = Vec::with_capacity(320);
    out.push(b'{');
    if let Some(err) = &r.error_message {
        #[derive(serde::Serialize)]
        struct ErrorInformation<'a> {
            error_code: String,
            error_message: &'a str,
        }
        let info = ErrorInformation {
            error_code: r.http_status.to_string(),
            error_message: err,
        };
        field(&mut out, "error_information", &info);
    }
    if let Some(m) = &r.metadata {
        field(&mut out, "spend_logs_metadata", m);
    }
    field(&mut out, "status", &r.status.as_str());
    #[derive(serde::Serialize)]
    struct UsageObject {
        completion_tokens: u64,
        prompt_tokens: u64,
        total_tokens: u64,
    }
    let usage = UsageObject {
        completion_tokens: r.completion_tokens,
        prompt_tokens: r.prompt_tokens,
        total_tokens: r.total_tokens,
    };
    field(&mut out, "usage_object", &usage);
    if let Some(hash) = &r.api_key_hash {
        field(&mut out, "user_api_key", hash);
    }
    field(&mut out, "user_api_key_alias", &r.key_alias);
    field(&mut out, "user_api_key_team_id", &r.team_id);
    field(&mut out, "user_api_key_user_id", &r.user_id);
    out.push(b'}');
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl CallSink for StoreSeams {
    fn record(&self, record: CallRecord) {
        let held = self.parked.lock().remove(&record.call_id);
        let mut row = spend_row(record);
        row.proxy_budget = self.ledger.counts_proxy_budget();
        if !self.ledger.end_user_cost_tracking() {
            // The row is where a customer's stored spend and the by-customer reports come from.
            row.end_user = None;
        }
        if held.is_none() && !row.api_key.is_empty() {
            // A refused call of a key still counts as its organization's (a settled one gets
            // it from its reservation).
            row.organization_id = self.resolved.read().get(&row.api_key).and_then(|r| {
                r.org
                    .as_ref()
                    .map(|o| o.organization_id.clone())
                    .or_else(|| r.record.organization_id.clone())
            });
        }
        let ledger = self.ledger.clone();
        self.spawn(async move {
            match held {
                Some(h) => {
                    h.reservation.settle(row).await;
                }
                None => ledger.log(row).await,
            }
        });
    }
}

/// Used by management routes to render a store failure.
pub fn store_error(e: &StoreError) -> ProxyError {
    if matches!(
        e,
        StoreError::Database(_) | StoreError::Redis(_) | StoreError::Internal(_)
    ) {
        tracing::error!(error = %e, "store operation failed");
    }
    api_error(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> CallRecord {
        CallRecord {
            response_id: Some("chatcmpl-1".into()),
            requester_ip: Some("203.0.113.5".into()),
            api_key_hash: Some("ab\"c".into()),
            key_alias: Some("alias \u{e9}".into()),
            team_id: Some("team-1".into()),
            ..CallRecord::for_test()
        }
    }

    #[test]
    fn the_row_keeps_the_callers_address() {
        let row = spend_row(record());
        assert_eq!(row.requester_ip_address.as_deref(), Some("203.0.113.5"));
    }

    #[test]
    fn metadata_text_is_the_object_litellm_stores_with_sorted_keys() {
        let plain = record();
        let text = metadata_json(&plain);
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({
                "status": "success",
                "usage_object": {"completion_tokens": 4, "prompt_tokens": 3, "total_tokens": 7},
                "user_api_key": "ab\"c",
                "user_api_key_alias": "alias \u{e9}",
                "user_api_key_team_id": "team-1",
                "user_api_key_user_id": null,
            })
        );
        // Keys come out sorted, as rows written through a JSON map were.
        let reparsed = serde_json::to_string(&serde_json::from_str::<Value>(&text).unwrap());
        assert_eq!(reparsed.unwrap(), text);

        let mut failed = record();
        failed.api_key_hash = None;
        failed.status = CallStatus::Failure;
        failed.error_message = Some("upstream said \"no\"\n".into());
        failed.http_status = 429;
        failed.metadata = Some(json!({"trace": ["a", 1]}));
        let text = metadata_json(&failed);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["error_information"],
            json!({"error_code": "429", "error_message": "upstream said \"no\"\n"})
        );
        assert_eq!(v["spend_logs_metadata"], json!({"trace": ["a", 1]}));
        assert_eq!(v["status"], "failure");
        assert!(v.get("user_api_key").is_none());
        assert_eq!(serde_json::to_string(&v).unwrap(), text);
        assert_eq!(spend_row(failed).metadata.as_str(), text);
    }
}
