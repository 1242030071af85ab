//! Keys the config holds that this build does not act on: upstream settings for parts it does
//! not have (the gateway, channels, sandboxes, ...) and names it does not know at all (often
//! typos). The sections the agent reads are strict where a typo would fail far from its cause
//! (`models`, `agents.defaults.model(s)`); elsewhere a key is accepted, and named here once at
//! start-up rather than ignored in silence.

use serde_json::Value;

/// What is read below a key: everything, or these children.
enum Used {
    All,
    Keys(&'static [(&'static str, Used)]),
}

use Used::{All, Keys};

/// What this build reads. `meta` is upstream's write stamp: bookkeeping, not a setting.
const USED: &[(&str, Used)] = &[
    ("models", All),
    ("anton", All),
    ("mcp", Keys(&[("servers", All)])),
    ("meta", All),
    ("$schema", All),
    (
        "agents",
        Keys(&[(
            "defaults",
            Keys(&[
                ("model", All),
                ("models", All),
                ("timeoutSeconds", All),
                ("thinkingDefault", All),
                (
                    "compaction",
                    Keys(&[
                        ("enabled", All),
                        ("reserveTokens", All),
                        ("reserveTokensFloor", All),
                        ("keepRecentTokens", All),
                        ("maxHistoryShare", All),
                        ("identifierPolicy", All),
                        ("identifierInstructions", All),
                    ]),
                ),
            ]),
        )]),
    ),
    ("auth", Keys(&[("profiles", All), ("order", All)])),
    (
        "tools",
        Keys(&[
            ("allow", All),
            ("deny", All),
            ("profile", All),
            (
                "exec",
                Keys(&[
                    ("timeoutSec", All),
                    ("security", All),
                    ("ask", All),
                    ("safeBins", All),
                    ("applyPatch", All),
                ]),
            ),
        ]),
    ),
];

/// Upstream's top-level sections, and the `agents.defaults`/`tools` keys this build has no
/// use for: named as "not used", not as unknown.
const UPSTREAM: &[&str] = &[
    "gateway",
    "channels",
    "messages",
    "session",
    "hooks",
    "skills",
    "plugins",
    "browser",
    "ui",
    "logging",
    "wizard",
    "commands",
    "cron",
    "web",
    "talk",
    "diagnostics",
    "update",
    "broadcast",
    "audio",
    "discovery",
    "canvasHost",
    "approvals",
    "bindings",
    "memory",
    "env",
    "mcp",
    "nodeHost",
    "secrets",
    "identity",
    "media",
    "agents.list",
    "agents.defaults.workspace",
    "agents.defaults.skipBootstrap",
    "agents.defaults.bootstrapMaxChars",
    "agents.defaults.maxConcurrent",
    "agents.defaults.subagents",
    "agents.defaults.sandbox",
    "agents.defaults.embeddedPi",
    "agents.defaults.heartbeat",
    "agents.defaults.contextPruning",
    "agents.defaults.imageModel",
    "agents.defaults.userTimezone",
    "agents.defaults.timeFormat",
    "agents.defaults.verboseDefault",
    "agents.defaults.elevatedDefault",
    "agents.defaults.blockStreamingDefault",
    "agents.defaults.memorySearch",
    "agents.defaults.contextTokens",
    "agents.defaults.compaction.mode",
    "agents.defaults.compaction.memoryFlush",
    "tools.byProvider",
    "tools.elevated",
    "tools.fs",
    "tools.web",
    "tools.media",
    "tools.links",
    "tools.alsoAllow",
    "tools.sandbox",
    "tools.subagents",
    "tools.agentToAgent",
    "tools.message",
    "tools.exec.host",
    "tools.exec.pathPrepend",
    "tools.exec.notifyOnExit",
    "tools.exec.backgroundMs",
    "tools.exec.applyPatch",
    "tools.exec.node",
    "tools.exec.safeBinTrustedDirs",
    "tools.exec.safeBinProfiles",
];

/// One key the build does not act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusedKey {
    /// Dot path, e.g. `agents.defaults.sandbox`.
    pub path: String,
    /// An upstream setting (as opposed to a name nobody knows).
    pub upstream: bool,
}

/// Every key of `raw` (the config as written) that nothing reads, outermost first.
pub fn unused_keys(raw: &Value) -> Vec<UnusedKey> {
    let mut out = Vec::new();
    walk(raw, USED, "", &mut out);
    out
}

fn walk(v: &Value, used: &[(&str, Used)], prefix: &str, out: &mut Vec<UnusedKey>) {
    let Value::Object(m) = v else { return };
    for (k, child) in m {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match used.iter().find(|(name, _)| name == k) {
            Some((_, All)) => {}
            Some((_, Keys(sub))) => walk(child, sub, &path, out),
            None => out.push(UnusedKey {
                upstream: UPSTREAM.contains(&path.as_str()),
                path,
            }),
        }
    }
}

/// The start-up warning lines for `raw` read from `file`.
pub fn warnings(file: &std::path::Path, raw: &Value) -> Vec<String> {
    unused_keys(raw)
        .into_iter()
        .map(|k| {
            if k.upstream {
                format!(
                    "{}: {} is not used by this build (ignored)",
                    file.display(),
                    k.path
                )
            } else {
                format!(
                    "{}: {} is not a setting this build knows (ignored; a typo?)",
                    file.display(),
                    k.path
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_what_nothing_reads() {
        let raw = json!({
            "models": {"providers": {"x": {"anything": 1}}},
            "agents": {"defaults": {"model": "x/y", "sandbox": {"mode": "all"}, "modle": "typo",
                "compaction": {"reserveTokens": 1, "memoryFlush": {}}}, "list": []},
            "tools": {"allow": ["read"], "exec": {"security": "full", "host": "gateway"}},
            "gateway": {"port": 1},
            "meta": {"lastTouchedVersion": "1"},
            "colour": "blue",
        });
        let got: Vec<(String, bool)> = unused_keys(&raw)
            .into_iter()
            .map(|k| (k.path, k.upstream))
            .collect();
        let mut got = got;
        got.sort();
        assert_eq!(
            got,
            [
                ("agents.defaults.compaction.memoryFlush".to_string(), true),
                ("agents.defaults.modle".to_string(), false),
                ("agents.defaults.sandbox".to_string(), true),
                ("agents.list".to_string(), true),
                ("colour".to_string(), false),
                ("gateway".to_string(), true),
                ("tools.exec.host".to_string(), true),
            ]
        );
        let w = warnings(
            std::path::Path::new("/h/idlehands.json"),
            &json!({"colour": 1}),
        );
        assert_eq!(
            w,
            ["/h/idlehands.json: colour is not a setting this build knows (ignored; a typo?)"]
        );
    }
}
