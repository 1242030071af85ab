//! LiteLLM settings the gateway reads but does not act on. LiteLLM configs carry many keys and
//! unknown ones are tolerated; a known one that changes nothing here is named at start-up with
//! the reason, so that nobody relies on it in silence.

use super::ProxyConfig;

/// One line per setting that has no effect here: `<key path> has no effect here: <why>`.
pub fn inert_settings(cfg: &ProxyConfig) -> Vec<String> {
    let f = &cfg.file;
    let gs = &f.general_settings;
    let ls = &f.litellm_settings;
    let mut out = Vec::new();
    let mut say = |path: &str, why: &str| out.push(format!("{path} has no effect here: {why}"));

    if gs.store_model_in_db == Some(true) {
        say(
            "general_settings.store_model_in_db",
            "models come from config.yaml",
        );
    }
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
    if !gs.alerting.is_empty() {
        say(
            "general_settings.alerting",
            "there are no alert integrations; scrape /metrics",
        );
    }
    for (list, name) in [
        (&ls.callbacks, "callbacks"),
        (&ls.success_callback, "success_callback"),
        (&ls.failure_callback, "failure_callback"),
    ] {
        for cb in list.iter().filter(|c| c.as_str() != "prometheus") {
            say(
                &format!("litellm_settings.{name} {cb:?}"),
                "there are no logging integrations; /metrics (Prometheus) is always served and general_settings.request_log_path writes request logs",
            );
        }
    }
    if ls.cache == Some(true) || ls.cache_params.is_some() {
        say("litellm_settings.cache", "responses are not cached");
    }
    if ls.max_budget.is_some() || ls.budget_duration.is_some() {
        say(
            "litellm_settings.max_budget",
            "there is no proxy-wide budget; set budgets on keys",
        );
    }
    if ls.turn_off_message_logging == Some(true) {
        say(
            "litellm_settings.turn_off_message_logging",
            "messages are stored only with store_prompts_in_spend_logs or request_log_path, both off unless set",
        );
    }
    if f.router_settings.enable_tag_filtering == Some(true) {
        say(
            "router_settings.enable_tag_filtering",
            "every deployment of a group is eligible whatever its tags",
        );
    }
    for (i, m) in f.model_list.iter().enumerate() {
        let lp = &m.litellm_params;
        let at = |key: &str| format!("model_list[{i}].litellm_params.{key}");
        if lp.max_budget.is_some() || lp.budget_duration.is_some() {
            say(
                &at("max_budget"),
                "deployments have no budgets; set budgets on keys",
            );
        }
        for key in crate::providers::params::unused_keys(lp) {
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
                say(&at(key), "costs come from per-token prices only");
            }
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
    fn every_setting_with_no_effect_is_named_with_its_path() {
        let c = cfg("model_list:
  - model_name: m
    litellm_params:
      model: openai/m
      input_cost_per_second: 0.01
general_settings:
  master_key: sk-unit-master-1
  store_model_in_db: true
  disable_error_logs: true
  proxy_budget_rescheduler_min_time: 1
  alerting: [slack]
litellm_settings:
  success_callback: [langfuse, prometheus]
  cache: true
  max_budget: 10
router_settings:
  enable_tag_filtering: true
");
        let notes = inert_settings(&c);
        let paths: Vec<&str> = notes
            .iter()
            .map(|n| n.split(" has no effect here: ").next().unwrap_or(""))
            .collect();
        assert_eq!(
            paths,
            [
                "general_settings.store_model_in_db",
                "general_settings.disable_error_logs",
                "general_settings.proxy_budget_rescheduler_min_time",
                "general_settings.alerting",
                "litellm_settings.success_callback \"langfuse\"",
                "litellm_settings.cache",
                "litellm_settings.max_budget",
                "router_settings.enable_tag_filtering",
                "model_list[0].litellm_params.input_cost_per_second",
            ]
        );
        assert!(notes.iter().all(|n| n.contains(" has no effect here: ")));
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
      litellm_credential_name: shared
general_settings:
  master_key: sk-unit-master-1
");
        assert_eq!(
            inert_settings(&c),
            [
                "model_list[0].litellm_params.litellm_credential_name has no effect here: not a setting or request parameter idlehands knows; provider fields go in extra_body"
            ]
        );
    }
}
