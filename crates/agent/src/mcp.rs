//! MCP servers (`mcp.servers.<name>` in the config) as tools, through the official Rust SDK
//! (`rmcp`). A server starts the first time its tools are needed (the first turn, or `idlehands
//! mcp list`), its tools are offered as `<server>__<tool>`, a server that died is started again
//! on the next call, and [`McpHub::shutdown`] stops them all.
//!
//! Servers run over stdio (`command`, `args`, `env`) or streamable HTTP (`url`, `headers`).

use std::collections::BTreeMap;

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::client::ToolSpec;
use crate::message::ContentBlock;
use crate::tools::ToolOutput;

/// Separates the server's name from its tool's in the names the model sees.
pub const SEPARATOR: &str = "__";

/// How long a server may take to start and answer `initialize` and `tools/list`.
const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `mcp.servers.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpServerConfig {
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub url: Option<String>,
    /// Extra HTTP headers for a `url` server (e.g. `Authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Accepted for upstream configs; `false` leaves the server out.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// One tool of one server.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    /// `<server>__<tool>`.
    pub name: String,
    pub tool: String,
    pub description: String,
    pub schema: Value,
}

struct Running {
    client: RunningService<RoleClient, ()>,
    tools: Vec<McpTool>,
}

struct Server {
    name: String,
    cfg: McpServerConfig,
    state: Mutex<Option<Running>>,
}

/// What `idlehands mcp list` shows for one server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerListing {
    pub name: String,
    pub tools: Result<Vec<McpTool>, String>,
}

/// The configured MCP servers of one process.
#[derive(Default)]
pub struct McpHub {
    servers: Vec<Server>,
}

impl std::fmt::Debug for McpHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpHub")
            .field(
                "servers",
                &self.servers.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A name the model's function-calling accepts (`[A-Za-z0-9_-]`).
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl McpHub {
    /// The servers of the config's `mcp.servers` (`raw` is the `mcp` section). A server entry
    /// that is not valid is an error naming it.
    pub fn from_section(raw: Option<&Value>) -> Result<Self, String> {
        let mut servers = Vec::new();
        let Some(section) = raw else {
            return Ok(Self { servers });
        };
        let Some(list) = section.get("servers") else {
            return Ok(Self { servers });
        };
        let Value::Object(list) = list else {
            return Err("mcp.servers: expected an object of servers by name".into());
        };
        for (name, v) in list {
            let cfg: McpServerConfig = serde_json::from_value(v.clone())
                .map_err(|e| format!("mcp.servers.{name}: {e}"))?;
            if cfg.command.is_none() && cfg.url.is_none() {
                return Err(format!(
                    "mcp.servers.{name}: needs a \"command\" (stdio) or a \"url\""
                ));
            }
            if cfg.enabled == Some(false) {
                continue;
            }
            servers.push(Server {
                name: name.clone(),
                cfg,
                state: Mutex::new(None),
            });
        }
        Ok(Self { servers })
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    async fn start(server: &Server) -> Result<Running, String> {
        if let (Some(url), None) = (&server.cfg.url, &server.cfg.command) {
            // reqwest is built here without a TLS crypto provider of its own: use ring, as the
            // rest of the binary does. Installing twice is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut headers = std::collections::HashMap::new();
            for (k, v) in &server.cfg.headers {
                let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|e| format!("header {k}: {e}"))?;
                let value = reqwest::header::HeaderValue::from_str(v)
                    .map_err(|e| format!("header {k}: {e}"))?;
                headers.insert(name, value);
            }
            let config = rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url.as_str())
                .custom_headers(headers);
            let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
            let started = async {
                let client = ()
                    .serve(transport)
                    .await
                    .map_err(|e| format!("{url} did not start an MCP session: {e}"))?;
                Self::listed(server, client).await
            };
            return tokio::time::timeout(START_TIMEOUT, started)
                .await
                .map_err(|_| {
                    format!("{url} did not answer within {}s", START_TIMEOUT.as_secs())
                })?;
        }
        let Some(command) = &server.cfg.command else {
            return Err("no command".into());
        };
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(&server.cfg.args).envs(&server.cfg.env);
        let (transport, _stderr) = TokioChildProcess::builder(cmd)
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start `{command}`: {e}"))?;
        let started = async {
            let client = ()
                .serve(transport)
                .await
                .map_err(|e| format!("`{command}` did not start an MCP session: {e}"))?;
            Self::listed(server, client).await
        };
        tokio::time::timeout(START_TIMEOUT, started)
            .await
            .map_err(|_| {
                format!(
                    "`{command}` did not answer within {}s",
                    START_TIMEOUT.as_secs()
                )
            })?
    }

    /// Asks a started server for its tools.
    async fn listed(
        server: &Server,
        client: RunningService<RoleClient, ()>,
    ) -> Result<Running, String> {
        let listed = client
            .list_all_tools()
            .await
            .map_err(|e| format!("tools/list failed: {e}"))?;
        let tools = listed
            .into_iter()
            .map(|t| McpTool {
                name: format!("{}{SEPARATOR}{}", sanitize(&server.name), sanitize(&t.name)),
                tool: t.name.to_string(),
                description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                schema: Value::Object((*t.input_schema).clone()),
            })
            .collect();
        Ok(Running { client, tools })
    }

    /// The server's tools, starting it when it is not running.
    async fn ensure(server: &Server) -> Result<Vec<McpTool>, String> {
        let mut state = server.state.lock().await;
        if let Some(r) = state.as_ref()
            && !r.client.is_closed()
        {
            return Ok(r.tools.clone());
        }
        let r = Self::start(server).await?;
        let tools = r.tools.clone();
        *state = Some(r);
        Ok(tools)
    }

    /// Every server, started if need be, with its tools or why it could not start.
    pub async fn list(&self) -> Vec<ServerListing> {
        let mut out = Vec::new();
        for s in &self.servers {
            out.push(ServerListing {
                name: s.name.clone(),
                tools: Self::ensure(s).await,
            });
        }
        out
    }

    /// The tools to offer, starting the servers on first use. A server that cannot start is
    /// left out (and logged); the turn goes on without it.
    pub async fn specs(&self) -> Vec<ToolSpec> {
        let mut out = Vec::new();
        for l in self.list().await {
            match l.tools {
                Ok(tools) => out.extend(tools.into_iter().map(|t| ToolSpec {
                    name: t.name,
                    description: t.description,
                    parameters: t.schema,
                })),
                Err(e) => tracing::warn!(server = %l.name, error = %e, "MCP server unavailable"),
            }
        }
        out
    }

    /// Whether `name` is one of the configured servers' tools (by its prefix).
    pub fn owns(&self, name: &str) -> bool {
        self.server_of(name).is_some()
    }

    fn server_of(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| {
            name.strip_prefix(&sanitize(&s.name))
                .is_some_and(|rest| rest.starts_with(SEPARATOR))
        })
    }

    /// Calls `<server>__<tool>`. A server that died is started again and the call retried
    /// once.
    pub async fn call(&self, name: &str, args: &Value) -> ToolOutput {
        let Some(server) = self.server_of(name) else {
            return ToolOutput::error(format!("no MCP server offers \"{name}\""));
        };
        let mut last = String::new();
        for attempt in 0..2 {
            let tools = match Self::ensure(server).await {
                Ok(t) => t,
                Err(e) => return ToolOutput::error(format!("MCP server {}: {e}", server.name)),
            };
            let Some(tool) = tools.into_iter().find(|t| t.name == name) else {
                return ToolOutput::error(format!(
                    "MCP server {} has no tool for \"{name}\"",
                    server.name
                ));
            };
            let params: CallToolRequestParams = match serde_json::from_value(json!({
                "name": tool.tool,
                "arguments": match args {
                    Value::Object(m) => m.clone(),
                    _ => Map::new(),
                },
            })) {
                Ok(p) => p,
                Err(e) => return ToolOutput::error(format!("cannot build the MCP call: {e}")),
            };
            let result = {
                let state = server.state.lock().await;
                match state.as_ref() {
                    Some(r) => r.client.call_tool(params).await,
                    None => Err(rmcp::ServiceError::TransportClosed),
                }
            };
            match result {
                Ok(r) => {
                    let v = serde_json::to_value(&r).unwrap_or(Value::Null);
                    return to_output(&server.name, &tool.tool, &v);
                }
                // The server answered with an error: that is the tool's answer.
                Err(rmcp::ServiceError::McpError(e)) => {
                    return ToolOutput::error(format!("{}: {}", tool.tool, e.message));
                }
                Err(e) => {
                    // The process or its pipe went away: start it again, once.
                    last = e.to_string();
                    tracing::warn!(server = %server.name, attempt, error = %last, "MCP call failed; restarting the server");
                    *server.state.lock().await = None;
                }
            }
        }
        ToolOutput::error(format!("MCP server {} failed twice: {last}", server.name))
    }

    /// Stops every running server.
    pub async fn shutdown(&self) {
        for s in &self.servers {
            if let Some(r) = s.state.lock().await.take() {
                let _ = r.client.cancel().await;
            }
        }
    }
}

/// A `tools/call` result (as JSON) as a tool output: text and images kept, other content as
/// JSON text; `isError` makes it a failure.
fn to_output(server: &str, tool: &str, v: &Value) -> ToolOutput {
    let mut content = Vec::new();
    for c in v
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match c.get("type").and_then(Value::as_str) {
            Some("text") => content.push(ContentBlock::Text {
                text: c.get("text").and_then(Value::as_str).unwrap_or("").into(),
            }),
            Some("image") => content.push(ContentBlock::Image {
                data: c.get("data").and_then(Value::as_str).unwrap_or("").into(),
                mime_type: c
                    .get("mimeType")
                    .and_then(Value::as_str)
                    .unwrap_or("image/png")
                    .into(),
            }),
            _ => content.push(ContentBlock::Text {
                text: c.to_string(),
            }),
        }
    }
    if content.is_empty()
        && let Some(s) = v.get("structuredContent")
    {
        content.push(ContentBlock::Text {
            text: s.to_string(),
        });
    }
    let ok = !v.get("isError").and_then(Value::as_bool).unwrap_or(false);
    let first = content
        .iter()
        .find_map(|b| match b {
            ContentBlock::Text { text } => Some(text.lines().next().unwrap_or("").to_string()),
            _ => None,
        })
        .unwrap_or_else(|| format!("{} block(s)", content.len()));
    ToolOutput {
        ok,
        content,
        summary: format!(
            "{server}/{tool}: {}",
            first.chars().take(160).collect::<String>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_entries_and_names() {
        let hub = McpHub::from_section(Some(&json!({"servers": {
            "fs.tools": {"command": "x", "args": ["a"]},
            "off": {"command": "y", "enabled": false},
        }})))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hub.servers.len(), 1);
        assert!(hub.owns("fs_tools__read"));
        assert!(!hub.owns("fs_toolsread") && !hub.owns("read"));
        let e = McpHub::from_section(Some(&json!({"servers": {"bad": {"args": []}}})))
            .err()
            .unwrap_or_default();
        assert!(e.contains("mcp.servers.bad"), "{e}");
        let e = McpHub::from_section(Some(
            &json!({"servers": {"bad": {"command": "x", "typo": 1}}}),
        ))
        .err()
        .unwrap_or_default();
        assert!(e.contains("typo"), "{e}");
    }

    #[test]
    fn results_keep_text_and_images() {
        let out = to_output(
            "s",
            "t",
            &json!({"content": [{"type": "text", "text": "hi\nthere"},
                {"type": "image", "data": "AAAA", "mimeType": "image/png"}]}),
        );
        assert!(out.ok);
        assert_eq!(out.summary, "s/t: hi");
        assert_eq!(out.content.len(), 2);
        let out = to_output("s", "t", &json!({"content": [], "isError": true}));
        assert!(!out.ok);
    }
}
