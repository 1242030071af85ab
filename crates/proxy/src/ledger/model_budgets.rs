//! What a key allows on the call's model: the `model_max_budget` entry the call counts
//! against, as LiteLLM picks it (the model's own name as asked or without its `provider/`
//! prefix, else an access group the deployment is in, else the most specific glob such as
//! `claude-*`: more literal characters first, then fewer wildcards), and its
//! `model_rpm_limit` / `model_tpm_limit` for the model asked for.

use idlehands_store::key_model_budgets::model_limit;
use idlehands_store::{CallModel, JsonMap, KeyRecord};

use crate::auth::glob_match;
use crate::hooks::PreCall;

/// The key's limits on the call's model; `None` when it has none. `team_metadata`: the
/// key's team's, whose `model_rpm_limit` / `model_tpm_limit` apply when the key sets none.
pub(crate) fn call_model<'a>(
    record: &'a KeyRecord,
    team_metadata: Option<&JsonMap>,
    call: &PreCall<'a>,
) -> Option<CallModel<'a>> {
    let limit = |field| {
        model_limit(
            &record.metadata,
            &record.model_max_budget,
            team_metadata,
            field,
            call.model_group,
        )
    };
    let rpm_limit = limit("model_rpm_limit");
    let tpm_limit = limit("model_tpm_limit");
    let budget_entry = entry_for(
        &record.model_max_budget,
        call.model_group,
        call.access_groups,
    );
    (budget_entry.is_some() || rpm_limit.is_some() || tpm_limit.is_some()).then_some(CallModel {
        name: call.model_group,
        budget_entry,
        rpm_limit,
        tpm_limit,
    })
}

/// The governing entry for a call on `model` (the name asked for) served by a deployment in
/// `access_groups`; `None` when no entry covers it.
pub(crate) fn entry_for<'a>(
    budgets: &'a JsonMap,
    model: &str,
    access_groups: &[String],
) -> Option<&'a str> {
    if budgets.is_empty() {
        return None;
    }
    let bare = model.rsplit('/').next().unwrap_or(model);
    let candidates = [model, bare];
    if let Some(own) = candidates
        .iter()
        .find_map(|c| budgets.get_key_value(*c).map(|(k, _)| k.as_str()))
    {
        return Some(own);
    }
    // The map is ordered by name: groups are tried in name order, as LiteLLM sorts them.
    if let Some(group) = budgets
        .keys()
        .find(|e| !e.contains('*') && access_groups.iter().any(|g| g == *e))
    {
        return Some(group);
    }
    budgets
        .keys()
        .filter(|e| e.contains('*') && candidates.iter().any(|c| glob_match(e, c)))
        .max_by_key(|e| {
            let stars = e.matches('*').count();
            (e.len() - stars, std::cmp::Reverse(stars), e.as_str())
        })
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn budgets(v: serde_json::Value) -> JsonMap {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn own_name_then_group_then_the_most_specific_glob() {
        let b = budgets(json!({
            "gpt-4o": {}, "beta": {}, "claude-*": {}, "claude-opus-*": {}, "*": {},
        }));
        assert_eq!(entry_for(&b, "gpt-4o", &[]), Some("gpt-4o"));
        assert_eq!(entry_for(&b, "openai/gpt-4o", &[]), Some("gpt-4o"));
        assert_eq!(entry_for(&b, "mini", &["beta".into()]), Some("beta"));
        assert_eq!(entry_for(&b, "claude-opus-4", &[]), Some("claude-opus-*"));
        assert_eq!(entry_for(&b, "claude-haiku", &[]), Some("claude-*"));
        assert_eq!(entry_for(&b, "llama", &[]), Some("*"));
        let none = budgets(json!({"gpt-4o": {}}));
        assert_eq!(entry_for(&none, "llama", &["beta".into()]), None);
        assert_eq!(entry_for(&JsonMap::new(), "gpt-4o", &[]), None);
    }
}
