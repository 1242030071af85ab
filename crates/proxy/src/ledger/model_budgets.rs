//! Which entry of a key's `model_max_budget` a call counts against, as LiteLLM picks it: the
//! model's own name (as asked, or without its `provider/` prefix), else an access group the
//! deployment is in, else the most specific glob (`claude-*`): more literal characters first,
//! then fewer wildcards.

use idlehands_store::JsonMap;

use crate::auth::glob_match;

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
