//! LiteLLM settings the gateway reads but does not act on. LiteLLM configs carry many keys and
//! unknown ones are tolerated; every key that changes nothing here (a known LiteLLM feature
//! this gateway lacks, or a key it does not know at all) is named at start-up with the reason,
//! so that nobody relies on it in silence.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ProxyConfig;

/// Keys that the typed sections keep in `extra` but the gateway does read.
const READ_FROM_EXTRA: [(&str, &str); 38] = [
    // Read by `crate::jwt::settings` (fields it does not act on are named there).
    ("general_settings", "enable_jwt_auth"),
    ("general_settings", "litellm_jwtauth"),
    // Read by the team defaults (its unknown fields are named below).
    ("litellm_settings", "default_team_params"),
    // Read by `super::route_budgets`.
    ("router_settings", "provider_budget_config"),
    ("litellm_settings", "tag_budget_config"),
    // Read by the user_defaults module (fields it does not apply are named below).
    ("litellm_settings", "default_internal_user_params"),
    ("litellm_settings", "max_internal_user_budget"),
    ("litellm_settings", "internal_user_budget_duration"),
    // Nothing is ever sent home: the setting asks for what is already so.
    ("litellm_settings", "telemetry"),
    // Read with the environment (`ProxyConfig::upstream_tls`, `force_ipv4`).
    ("litellm_settings", "ssl_verify"),
    ("litellm_settings", "force_ipv4"),
    // Read by the http end-user lookup (mappings other than `customer` are named below).
    ("general_settings", "user_header_name"),
    ("general_settings", "user_header_mappings"),
    ("litellm_settings", "key_generation_settings"),
    // Read by `crate::key_bounds` (their unknown fields are named below).
    ("litellm_settings", "default_key_generate_params"),
    ("litellm_settings", "upperbound_key_generate_params"),
    // Read by `crate::forward_headers`.
    ("general_settings", "forward_client_headers_to_llm_api"),
    ("litellm_settings", "model_group_settings"),
    // Read by the pass-through routes.
    ("general_settings", "pass_through_endpoints"),
    ("general_settings", "pass_through_request_timeout"),
    ("litellm_settings", "max_end_user_budget"),
    ("litellm_settings", "disable_end_user_cost_tracking"),
    ("general_settings", "request_log_path"),
    ("general_settings", "redis_failure_mode"),
    ("general_settings", "redis_key_prefix"),
    // Read by the deployments (`providers::slots`).
    ("router_settings", "default_max_parallel_requests"),
    // Read by the model listings (`http::health::hidden_unhealthy`).
    ("general_settings", "model_list_healthy_only"),
    ("general_settings", "redis_instance_timeout"),
    ("general_settings", "database_schema"),
    ("general_settings", "alerting_threshold"),
    ("general_settings", "alert_types"),
    // Read by the diagnostic routes (`crate::diagnostics`).
    ("general_settings", "allow_public_health_readiness_details"),
    ("general_settings", "enable_drain_endpoint"),
    ("general_settings", "drain_endpoint_token"),
    ("litellm_settings", "require_auth_for_metrics_endpoint"),
    (
        "litellm_settings",
        "enable_end_user_cost_tracking_prometheus_only",
    ),
    // Read by the routing crate's own pass over litellm_settings and router_settings.
    ("litellm_settings", "allowed_fails"),
    ("router_settings", "tag_filtering_match_any"),
];

/// The logging callbacks this gateway builds; any other configured name changes nothing.
pub(crate) const BUILT_CALLBACKS: [&str; 3] = ["prometheus", "otel", "generic_api"];

/// Why a LiteLLM feature's key changes nothing here; keys not listed get [`UNKNOWN`].
const KNOWN_LITELLM: [(&str, &str, &str); 19] = [
    (
        "(top level)",
        "guardrails",
        "guardrails are not run: requests reach the model unchecked",
    ),
    (
        "(top level)",
        "callback_settings",
        "callback settings are not read: the otel and generic_api callbacks take their settings from the environment (OTEL_*, GENERIC_LOGGER_*)",
    ),
    ("(top level)", "mcp_servers", "there is no MCP gateway"),
    (
        "(top level)",
        "vector_store_registry",
        "vector stores are not served",
    ),
    ("(top level)", "search_tools", "search tools are not served"),
    ("(top level)", "prompts", "prompt management is not served"),
    (
        "(top level)",
        "files_settings",
        "the files API is not served",
    ),
    (
        "(top level)",
        "finetune_settings",
        "the fine-tuning API is not served",
    ),
    (
        "(top level)",
        "assistant_settings",
        "the assistants API is not served",
    ),
    (
        "general_settings",
        "custom_auth",
        "custom auth hooks are not run: keys are checked as usual",
    ),
    (
        "general_settings",
        "allowed_routes",
        "every route stays open to the keys that may call it",
    ),
    (
        "general_settings",
        "admin_only_routes",
        "route restrictions are not configurable",
    ),
    (
        "general_settings",
        "public_routes",
        "route restrictions are not configurable",
    ),
    (
        "general_settings",
        "ui_access_mode",
        "the dashboard is for the master key only",
    ),
    (
        "general_settings",
        "key_management_system",
        "secrets are read from config values and os.environ/ only",
    ),
    (
        "general_settings",
        "use_redis_transaction_buffer",
        "spend is written through the group-committing spend writer",
    ),
    (
        "litellm_settings",
        "redact_messages_in_exceptions",
        "error messages never carry the request's messages",
    ),
    (
        "router_settings",
        "tag_routing_prefix",
        "every request tag routes; none is told apart by a prefix",
    ),
    (
        "litellm_settings",
        "default_team_settings",
        "per-team callbacks are not run (the first entry's max_budget is read: the budget of a new team that sets none)",
    ),
];

const UNKNOWN: &str = "not a setting this gateway knows; ignored";

/// The fields of `default_internal_user_params` that `/user/new` takes.
pub(crate) const USER_DEFAULT_FIELDS: [&str; 11] = [
    "user_role",
    "models",
    "metadata",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "auto_create_key",
    "user_alias",
];

/// The fields of `default_team_params` that `/team/new` takes.
pub(crate) const TEAM_DEFAULT_FIELDS: [&str; 5] = [
    "max_budget",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "organization_id",
];

/// The fields the `key_bounds` module applies from each `/key/generate` section.
const KEY_GENERATE_SECTIONS: [(&str, &[&str]); 2] = [
    (
        "default_key_generate_params",
        &[
            "max_budget",
            "user_id",
            "team_id",
            "max_parallel_requests",
            "tpm_limit",
            "rpm_limit",
            "budget_duration",
            "duration",
            "models",
            "metadata",
        ],
    ),
    (
        "upperbound_key_generate_params",
        &[
            "max_budget",
            "budget_duration",
            "duration",
            "max_parallel_requests",
            "tpm_limit",
            "rpm_limit",
        ],
    ),
];

/// One line per setting that has no effect here: `<key path> has no effect here: <why>`.
pub fn inert_settings(cfg: &ProxyConfig) -> Vec<String> {
    let f = &cfg.file;
    let gs = &f.general_settings;
    let ls = &f.litellm_settings;
    let mut out = Vec::new();
    let mut say = |path: &str, why: &str| out.push(format!("{path} has no effect here: {why}"));

    if gs.disable_error_logs.is_some() {
        say(
            "general_settings.disable_error_logs",
            "failures are spend-log rows with status failure (see disable_spend_logs)",
        );
    }
    for (set, key) in [
        (
            gs.proxy_budget_rescheduler_min_time.is_some(),
            "general_settings.proxy_budget_rescheduler_min_time",
        ),
        (
            gs.proxy_budget_rescheduler_max_time.is_some(),
            "general_settings.proxy_budget_rescheduler_max_time",
        ),
    ] {
        if set {
            say(
                key,
                "budgets reset on time, checked on every request and every second",
            );
        }
    }
    for a in gs
        .alerting
        .iter()
        .filter(|a| !matches!(a.trim(), "slack" | "webhook"))
    {
        say(
            &format!("general_settings.alerting {a:?}"),
            "only slack and webhook alerts are sent; scrape /metrics",
        );
    }
    for (list, name) in [
        (&ls.callbacks, "callbacks"),
        (&ls.success_callback, "success_callback"),
        (&ls.failure_callback, "failure_callback"),
    ] {
        for cb in list.iter().filter(|c| !BUILT_CALLBACKS.contains(&c.trim())) {
            say(
                &format!("litellm_settings.{name} {cb:?}"),
                "this logging integration is not built (prometheus, otel and generic_api are); /metrics is always served and general_settings.request_log_path writes request logs",
            );
        }
    }
    if ls.budget_duration.is_some() && ls.max_budget.is_none_or(|m| m <= 0.0) {
        say(
            "litellm_settings.budget_duration",
            "it is the window of the proxy-wide litellm_settings.max_budget, which is not set",
        );
    }
    if gs.extra.get("model_list_healthy_only") == Some(&Value::Bool(true))
        && gs.background_health_checks != Some(true)
    {
        say(
            "general_settings.model_list_healthy_only",
            "it hides the models that failed the background health checks, which are off (set background_health_checks: true)",
        );
    }
    if ls.turn_off_message_logging == Some(true) {
        say(
            "litellm_settings.turn_off_message_logging",
            "messages are stored only with store_prompts_in_spend_logs or request_log_path, both off unless set",
        );
    }
    let sections: [(&str, &BTreeMap<String, Value>); 4] = [
        ("(top level)", &f.extra),
        ("litellm_settings", &ls.extra),
        ("router_settings", &f.router_settings.extra),
        ("general_settings", &gs.extra),
    ];
    for (section, extra) in sections {
        for key in extra.keys() {
            if READ_FROM_EXTRA.contains(&(section, key.as_str())) {
                continue;
            }
            let why = KNOWN_LITELLM
                .iter()
                .find(|(s, k, _)| *s == section && k == key)
                .map_or(UNKNOWN, |(_, _, why)| why);
            let path = if section == "(top level)" {
                key.clone()
            } else {
                format!("{section}.{key}")
            };
            say(&path, why);
        }
    }
    for (path, why) in unread_entry_keys(cfg) {
        say(&path, why);
    }
    if let Some(Value::Array(maps)) = gs.extra.get("user_header_mappings") {
        let mut seen_internal = false;
        for (i, m) in maps.iter().enumerate() {
            let role = m.get("litellm_user_role").and_then(Value::as_str);
            let read = |r: &str| {
                let r = r.trim();
                r.eq_ignore_ascii_case("customer") || r.eq_ignore_ascii_case("internal_user")
            };
            if role.is_some_and(|r| !read(r)) {
                say(
                    &format!("general_settings.user_header_mappings[{i}]"),
                    "only customer (the end user) and internal_user (the call's user) mappings are read",
                );
            }
            let internal = role.is_some_and(|r| r.trim().eq_ignore_ascii_case("internal_user"));
            if internal && std::mem::replace(&mut seen_internal, true) {
                say(
                    &format!("general_settings.user_header_mappings[{i}]"),
                    "only the first internal_user mapping names the call's user, as in LiteLLM",
                );
            }
        }
    }
    if let Some(Value::Object(m)) = ls.extra.get("default_internal_user_params") {
        for k in m
            .keys()
            .filter(|k| !USER_DEFAULT_FIELDS.contains(&k.as_str()) && *k != "available_teams")
        {
            say(
                &format!("litellm_settings.default_internal_user_params.{k}"),
                "not a /user/new field the defaults fill here",
            );
        }
    }
    if let Some(Value::Object(m)) = ls.extra.get("default_team_params") {
        for k in m
            .keys()
            .filter(|k| !TEAM_DEFAULT_FIELDS.contains(&k.as_str()))
        {
            say(
                &format!("litellm_settings.default_team_params.{k}"),
                "not a /team/new field the defaults fill here",
            );
        }
    }
    for (section, known) in KEY_GENERATE_SECTIONS {
        if let Some(Value::Object(m)) = ls.extra.get(section) {
            for k in m.keys().filter(|k| !known.contains(&k.as_str())) {
                say(
                    &format!("litellm_settings.{section}.{k}"),
                    "not a /key/generate field this section applies here",
                );
            }
        }
    }
    for (i, m) in f.model_list.iter().enumerate() {
        let lp = &m.litellm_params;
        let at = |key: &str| format!("model_list[{i}].litellm_params.{key}");
        // `blocked` is read by the router (LiteLLM's `/model/block` flag).
        let keys: Vec<&str> = m
            .model_info
            .extra
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "blocked")
            .collect();
        if !keys.is_empty() {
            say(
                &format!("model_list[{i}].model_info.{{{}}}", keys.join(", ")),
                "shown by /model/info, not acted on",
            );
        }
        match (lp.max_budget.is_some(), lp.budget_duration.is_some()) {
            (true, false) => say(
                &at("max_budget"),
                "a deployment budget needs budget_duration too (its window), as in LiteLLM; not applied",
            ),
            (false, true) => say(
                &at("budget_duration"),
                "a deployment budget needs max_budget too, as in LiteLLM; not applied",
            ),
            _ => {}
        }
        for (j, pattern) in lp.tag_regex.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pattern) {
                let why = e.to_string();
                let first = why.lines().last().unwrap_or("invalid").trim();
                say(
                    &format!("{}[{j}]", at("tag_regex")),
                    &format!("not a pattern this gateway can match ({first}); it selects nothing"),
                );
            }
        }
        for key in super::call_params::unused_keys(lp) {
            say(
                &at(key),
                "not a setting or request parameter idlehands knows; provider fields go in extra_body",
            );
        }
        for (set, key) in [
            (
                lp.cost.input_cost_per_second.is_some()
                    || m.model_info.cost.input_cost_per_second.is_some(),
                "input_cost_per_second",
            ),
            (
                lp.cost.output_cost_per_second.is_some()
                    || m.model_info.cost.output_cost_per_second.is_some(),
                "output_cost_per_second",
            ),
        ] {
            if set {
                say(
                    &at(key),
                    "only /v1/audio/transcriptions calls are priced per second; other calls by their tokens",
                );
            }
        }
    }
    for path in cfg.credentials.ignored_fields() {
        say(
            path,
            "not a credential field (credential_name, credential_values, credential_info, display_name)",
        );
    }
    // Its errors stop the start (`Gateway::build`); here only what it does not act on.
    if let Ok((_, notes)) = super::cache::from_config(cfg) {
        out.extend(notes);
    }
    out
}

/// Keys of a `pass_through_endpoints` entry this gateway reads.
const ENTRY_KEYS: [&str; 11] = [
    "path",
    "target",
    "headers",
    "include_subpath",
    "auth",
    "forward_headers",
    "methods",
    "default_query_params",
    "cost_per_request",
    "timeout",
    // An identifier for LiteLLM's UI; nothing to act on.
    "id",
];

/// Keys of `pass_through_endpoints` entries that change nothing here, for the start-up notices.
pub fn unread_entry_keys(cfg: &ProxyConfig) -> Vec<(String, &'static str)> {
    let Some(Value::Array(list)) = cfg
        .file
        .general_settings
        .extra
        .get("pass_through_endpoints")
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let Value::Object(e) = e else { continue };
        for k in e.keys().filter(|k| !ENTRY_KEYS.contains(&k.as_str())) {
            let why = match k.as_str() {
                "guardrails" => "guardrails are not run: requests reach the target unchecked",
                "merge_query_params" => "the caller's query parameters are always sent on",
                _ => "not a pass-through setting idlehands knows; ignored",
            };
            out.push((
                format!("general_settings.pass_through_endpoints[{i}].{k}"),
                why,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> ProxyConfig {
        ProxyConfig::from_yaml(yaml, "config.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_plain_config_has_no_notices() {
        let c = cfg("model_list:
  - model_name: m
    litellm_params:
      model: openai/m
      input_cost_per_token: 0.000001
general_settings:
  master_key: sk-unit-master-1
  store_model_in_db: false
litellm_settings:
  callbacks: [prometheus]
");
        assert_eq!(inert_settings(&c), Vec::<String>::new());
    }

    #[test]
    fn a_credential_field_nothing_reads_is_named() {
        let c = cfg("credential_list:
  - credential_name: c
    credential_values: {api_key: sk-unit-credential-1}
    credential_value: {api_key: sk-typo}
");
        assert_eq!(
            inert_settings(&c),
            [
                "credential_list[0].credential_value has no effect here: not a credential field (credential_name, credential_values, credential_info, display_name)"
            ]
        );
    }

    #[test]
    fn keys_the_gateway_does_not_use_are_named_and_keys_it_reads_are_not() {
        let c = cfg("model_list:
  - model_name: m
    litellm_params:
      model: openai/m
      frobnicate: 3
    model_info:
      description: a model
      supports_vision: true
guardrails:
  - guardrail_name: pii
general_settings:
  master_key: sk-unit-master-1
  custom_auth: my_module.auth
  pass_through_endpoints:
    - path: /x
      target: http://127.0.0.1:9/x
      guardrails: {pii: null}
  request_log_path: /tmp/x.jsonl
  redis_failure_mode: open
  brand_new_setting: 1
litellm_settings:
  require_auth_for_metrics_endpoint: false
  allowed_fails: 2
router_settings:
  mystery: true
");
        let notes = inert_settings(&c);
        let paths: Vec<&str> = notes
            .iter()
            .map(|n| n.split(" has no effect here: ").next().unwrap_or(""))
            .collect();
        assert_eq!(
            paths,
            [
                "guardrails",
                "router_settings.mystery",
                "general_settings.brand_new_setting",
                "general_settings.custom_auth",
                "general_settings.pass_through_endpoints[0].guardrails",
                "model_list[0].model_info.{description, supports_vision}",
                "model_list[0].litellm_params.frobnicate",
            ]
        );
        assert!(notes[3].ends_with("custom auth hooks are not run: keys are checked as usual"));
        assert!(notes[2].ends_with(UNKNOWN));
    }

    #[test]
    fn every_setting_with_no_effect_is_named_with_its_path() {
        let c = cfg("model_list:
  - model_name: m
    litellm_params:
      model: openai/m
      input_cost_per_second: 0.01
      max_budget: 1
general_settings:
  master_key: sk-unit-master-1
  store_model_in_db: true
  disable_error_logs: true
  proxy_budget_rescheduler_min_time: 1
  alerting: [slack, email]
litellm_settings:
  success_callback: [langfuse, prometheus]
  cache: true
  cache_params: {type: qdrant-semantic}
  budget_duration: 30d
router_settings:
  enable_tag_filtering: true
  tag_filtering_match_any: false
  tag_routing_prefix: 'route:'
");
        let notes = inert_settings(&c);
        let paths: Vec<&str> = notes
            .iter()
            .map(|n| n.split(" has no effect here: ").next().unwrap_or(""))
            .collect();
        assert_eq!(
            paths,
            [
                "general_settings.disable_error_logs",
                "general_settings.proxy_budget_rescheduler_min_time",
                "general_settings.alerting \"email\"",
                "litellm_settings.success_callback \"langfuse\"",
                "litellm_settings.budget_duration",
                "router_settings.tag_routing_prefix",
                "model_list[0].litellm_params.max_budget",
                "model_list[0].litellm_params.input_cost_per_second",
                "litellm_settings.cache_params.type \"qdrant-semantic\"",
            ]
        );
        assert!(notes.iter().all(|n| n.contains(" has no effect here: ")));
    }

    #[test]
    fn healthy_only_listings_without_background_checks_are_named() {
        let base =
            "general_settings:\n  master_key: sk-unit-master-1\n  model_list_healthy_only: true\n";
        let notes = inert_settings(&cfg(base));
        assert!(
            notes
                .iter()
                .any(|n| n
                    .starts_with("general_settings.model_list_healthy_only has no effect here")),
            "{notes:?}"
        );
        let on = format!("{base}  background_health_checks: true\n");
        assert!(inert_settings(&cfg(&on)).is_empty());
    }

    #[test]
    fn litellm_params_keys_nothing_reads_are_named_and_call_params_are_not() {
        let c = cfg("model_list:
  - model_name: m
    litellm_params:
      model: openai/m
      max_tokens: 55
      extra_body: {top_k: 2}
      extra_headers: {x-a: b}
      merge_reasoning_content_in_choices: true
general_settings:
  master_key: sk-unit-master-1
");
        assert_eq!(
            inert_settings(&c),
            [
                "model_list[0].litellm_params.merge_reasoning_content_in_choices has no effect here: not a setting or request parameter idlehands knows; provider fields go in extra_body"
            ]
        );
    }

    #[test]
    fn key_generate_sections_are_read_and_their_unknown_fields_named() {
        let c = cfg("litellm_settings:
  default_key_generate_params: {max_budget: 1, allowed_routes: [llm_api_routes]}
  upperbound_key_generate_params: {tpm_limit: 5}
general_settings:
  master_key: sk-unit-master-1
");
        assert_eq!(
            inert_settings(&c),
            [
                "litellm_settings.default_key_generate_params.allowed_routes has no effect here: not a /key/generate field this section applies here"
            ]
        );
    }

    #[test]
    fn tag_routing_keys_are_read_and_patterns_it_cannot_match_are_named() {
        let c = cfg("model_list:
  - model_name: m
    litellm_params:
      model: openai/m
      tags: [paid]
      tag_regex: ['^User-Agent: claude-code/', '(?<=x)y', 'ok']
    model_info:
      enable_tag_filtering: true
general_settings:
  master_key: sk-unit-master-1
router_settings:
  tag_filtering_match_any: false
");
        let notes = inert_settings(&c);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("model_list[0].litellm_params.tag_regex[1] has no effect here: not a pattern this gateway can match ("),
            "{notes:?}"
        );
        assert!(notes[0].ends_with("); it selects nothing"), "{notes:?}");
        let r = &c.routing;
        assert!(!r.tag_filtering_match_any && !r.enable_tag_filtering);
    }
}
