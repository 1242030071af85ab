//! Tag routing (LiteLLM's `enable_tag_filtering`): which deployments of a group a request's
//! tags allow, decided over the group's deployments that are not cooling down, before the
//! strategy picks among them.
//!
//! As LiteLLM decides it:
//! - a request tag `!t` excludes deployments tagged `t`; `&t` requires `t`; any other tag is a
//!   positive tag;
//! - with positive tags, the deployments carrying any of them (all of them when
//!   `tag_filtering_match_any` is false) serve, else those tagged `default`. A deployment's
//!   `tag_regex` patterns, matched against `User-Agent: <the caller's user agent>`, also
//!   select it (not over a strict `match_any: false` tag check it failed). Nothing matching and
//!   no `default`, or a positive tag that some deployment of the group carries but none of the
//!   allowed ones do, refuses the call;
//! - with only `!`/`&` tags, the deployments left by them serve (from the `default` ones when
//!   nothing is required);
//! - without tags, the `default` deployments serve if there are any, else all of them.

use regex::Regex;

use crate::router::DeploymentSpec;

/// What a request brings to tag routing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestTags {
    /// The request's tags (body, key and team), in order, without the `User-Agent: ...` ones
    /// that only label spend.
    pub tags: Vec<String>,
    /// The caller's `User-Agent`, for deployments' `tag_regex`.
    pub user_agent: Option<String>,
}

/// Which slots of a group may serve.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Allowed {
    All,
    Only(Vec<usize>),
    /// Nothing the tags allow: the call is refused.
    Refused,
}

impl Allowed {
    pub(crate) fn admits(&self, slot: usize) -> bool {
        match self {
            Allowed::All => true,
            Allowed::Only(slots) => slots.contains(&slot),
            Allowed::Refused => false,
        }
    }
}

/// A deployment as tag routing sees it.
pub(crate) struct Tagged<'a> {
    pub spec: &'a DeploymentSpec,
    pub regexes: &'a [Regex],
}

impl Tagged<'_> {
    fn has(&self, tag: &str) -> bool {
        self.spec.tags.iter().any(|t| t == tag)
    }
}

/// `tag_regex` patterns that compile; the others are left out (the config check names them).
pub(crate) fn compile(patterns: &[String]) -> Vec<Regex> {
    patterns.iter().filter_map(|p| Regex::new(p).ok()).collect()
}

/// The slots of `group` (all its deployments) that may serve a request with `req`, of those
/// `healthy` says are not cooling down. With none healthy there is nothing to filter: the pick
/// reports the cooldown.
pub(crate) fn allowed<'a>(
    group: &[usize],
    at: impl Fn(usize) -> Tagged<'a>,
    healthy: impl Fn(usize) -> bool,
    req: &RequestTags,
    match_any: bool,
) -> Allowed {
    let healthy: Vec<usize> = group.iter().copied().filter(|&s| healthy(s)).collect();
    if healthy.is_empty() {
        return Allowed::All;
    }
    let defaults = |pool: &[usize]| -> Vec<usize> {
        pool.iter()
            .copied()
            .filter(|&s| at(s).has("default"))
            .collect()
    };
    let mut required = Vec::new();
    let mut excluded = Vec::new();
    let mut positive = Vec::new();
    for t in &req.tags {
        if let Some(r) = t.strip_prefix('&') {
            if !r.is_empty() {
                required.push(r);
            }
        } else if let Some(x) = t.strip_prefix('!') {
            if !x.is_empty() {
                excluded.push(x);
            }
        } else {
            positive.push(t.as_str());
        }
    }
    let header = req
        .user_agent
        .as_ref()
        .map(|ua| format!("User-Agent: {ua}"));
    let not_excluded = |s: &usize| !excluded.iter().any(|x| at(*s).has(x));
    let candidates: Vec<usize> = healthy
        .iter()
        .copied()
        .filter(not_excluded)
        .filter(|&s| required.iter().all(|r| at(s).has(r)))
        .collect();
    let regex_deployments = candidates.iter().any(|&s| !at(s).regexes.is_empty());
    let has_positive =
        !positive.is_empty() || (header.is_some() && regex_deployments && required.is_empty());
    if !has_positive && (!required.is_empty() || !excluded.is_empty()) {
        let pool: Vec<usize> = if required.is_empty() {
            let d = defaults(&healthy);
            let base = if d.is_empty() { healthy.clone() } else { d };
            base.into_iter().filter(not_excluded).collect()
        } else {
            candidates
        };
        return if pool.is_empty() {
            Allowed::Refused
        } else {
            Allowed::Only(pool)
        };
    }
    if has_positive {
        let matches: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&s| matches(&at(s), &positive, header.as_deref(), match_any))
            .collect();
        if !matches.is_empty() {
            return Allowed::Only(matches);
        }
        let d = defaults(&candidates);
        // A tag the group knows (some deployment carries it, cooling or excluded) must not
        // quietly land on the defaults.
        let known = positive.iter().any(|t| group.iter().any(|&s| at(s).has(t)));
        return if d.is_empty() || (!positive.is_empty() && known) {
            Allowed::Refused
        } else {
            Allowed::Only(d)
        };
    }
    let d = defaults(&healthy);
    if d.is_empty() {
        Allowed::All
    } else {
        Allowed::Only(d)
    }
}

fn matches(d: &Tagged<'_>, positive: &[&str], header: Option<&str>, match_any: bool) -> bool {
    let tags = &d.spec.tags;
    if !tags.is_empty() && !positive.is_empty() {
        let ok = if match_any {
            positive.iter().any(|p| tags.iter().any(|t| t == p))
        } else {
            positive.iter().all(|p| tags.iter().any(|t| t == p))
        };
        if ok {
            return true;
        }
    }
    // A strict (`match_any: false`) tag check that failed is not overridden by a pattern.
    if !match_any && !tags.is_empty() {
        return false;
    }
    header.is_some_and(|h| d.regexes.iter().any(|r| r.is_match(h)))
}

/// Strings as Python prints a list of them (LiteLLM's refusals quote tags and routes so).
pub fn python_list(tags: &[String]) -> String {
    let mut out = String::from("[");
    for (i, t) in tags.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        python_str(&mut out, t);
    }
    out.push(']');
    out
}

/// Python's `repr` of a string: single quotes unless the text holds one and no double quote.
fn python_str(out: &mut String, s: &str) {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(q);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tags: &[&str], regex: &[&str]) -> DeploymentSpec {
        DeploymentSpec {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tag_regex: regex.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
    }

    /// The slots `req` allows among `specs`, all healthy unless listed in `cooling`.
    fn run(
        specs: &[DeploymentSpec],
        cooling: &[usize],
        tags: &[&str],
        ua: Option<&str>,
        any: bool,
    ) -> Allowed {
        let regexes: Vec<Vec<Regex>> = specs.iter().map(|s| compile(&s.tag_regex)).collect();
        let group: Vec<usize> = (0..specs.len()).collect();
        let req = RequestTags {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            user_agent: ua.map(str::to_string),
        };
        allowed(
            &group,
            |s| Tagged {
                spec: &specs[s],
                regexes: &regexes[s],
            },
            |s| !cooling.contains(&s),
            &req,
            any,
        )
    }

    #[test]
    fn positive_tags_pick_the_deployments_carrying_them() {
        let g = [spec(&["free"], &[]), spec(&["paid"], &[]), spec(&[], &[])];
        assert_eq!(run(&g, &[], &["paid"], None, true), Allowed::Only(vec![1]));
        assert_eq!(
            run(&g, &[], &["free", "paid"], None, true),
            Allowed::Only(vec![0, 1])
        );
        // Match all: no deployment carries both.
        assert_eq!(
            run(&g, &[], &["free", "paid"], None, false),
            Allowed::Refused
        );
        // No deployment knows the tag and there is no default: refused.
        assert_eq!(run(&g, &[], &["gold"], None, true), Allowed::Refused);
    }

    #[test]
    fn defaults_serve_untagged_and_unknown_tags_but_not_known_ones_that_cannot_serve() {
        let g = [
            spec(&["default"], &[]),
            spec(&["paid"], &[]),
            spec(&[], &[]),
        ];
        assert_eq!(run(&g, &[], &[], None, true), Allowed::Only(vec![0]));
        assert_eq!(run(&g, &[], &["gold"], None, true), Allowed::Only(vec![0]));
        // "paid" is known to the group but its deployment is cooling down: refused, not the
        // default, as LiteLLM does.
        assert_eq!(run(&g, &[1], &["paid"], None, true), Allowed::Refused);
        // Without defaults, untagged requests go anywhere.
        let plain = [spec(&["paid"], &[]), spec(&[], &[])];
        assert_eq!(run(&plain, &[], &[], None, true), Allowed::All);
        // Everything cooling: nothing to filter (the pick reports the cooldown).
        assert_eq!(run(&plain, &[0, 1], &["paid"], None, true), Allowed::All);
    }

    #[test]
    fn exclusions_and_requirements_narrow_the_pool() {
        let g = [
            spec(&["default", "eu"], &[]),
            spec(&["us"], &[]),
            spec(&["eu", "fast"], &[]),
        ];
        // Only constraints: required tags choose among all; exclusions among the defaults.
        assert_eq!(
            run(&g, &[], &["&eu"], None, true),
            Allowed::Only(vec![0, 2])
        );
        assert_eq!(run(&g, &[], &["!eu"], None, true), Allowed::Refused);
        assert_eq!(run(&g, &[], &["!us"], None, true), Allowed::Only(vec![0]));
        // A positive tag within the constraints.
        assert_eq!(
            run(&g, &[], &["fast", "&eu"], None, true),
            Allowed::Only(vec![2])
        );
        assert_eq!(
            run(&g, &[], &["fast", "!fast"], None, true),
            Allowed::Refused
        );
        // Lone markers are no tags at all.
        assert_eq!(
            run(&g, &[], &["!", "&"], None, true),
            Allowed::Only(vec![0])
        );
    }

    #[test]
    fn user_agent_patterns_select_deployments() {
        let g = [
            spec(&[], &["^User-Agent: claude-code/"]),
            spec(&["default"], &[]),
        ];
        assert_eq!(
            run(&g, &[], &[], Some("claude-code/1.0.2"), true),
            Allowed::Only(vec![0])
        );
        assert_eq!(
            run(&g, &[], &[], Some("curl/8"), true),
            Allowed::Only(vec![1])
        );
        assert_eq!(run(&g, &[], &[], None, true), Allowed::Only(vec![1]));
        // With match_any false, a pattern does not override a failed strict tag check.
        let strict = [spec(&["paid"], &["claude-code"]), spec(&["default"], &[])];
        assert_eq!(
            run(&strict, &[], &["free"], Some("claude-code/1"), false),
            Allowed::Only(vec![1])
        );
        assert_eq!(
            run(&strict, &[], &["free"], Some("claude-code/1"), true),
            Allowed::Only(vec![0])
        );
    }

    #[test]
    fn refusals_print_tags_as_python_lists() {
        let t = |v: &[&str]| python_list(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(t(&[]), "[]");
        assert_eq!(t(&["paid", "x"]), "['paid', 'x']");
        assert_eq!(t(&["it's"]), "[\"it's\"]");
        assert_eq!(t(&["a'b\"c\\"]), "['a\\'b\"c\\\\']");
    }
}
