//! A small MCP server over stdio, written with the official SDK, for the end-to-end tests of
//! the agent's MCP client. Tools: `add {a, b}` (text), `pixel` (an image), `crash_once` (the
//! process exits the first time, as a crashing server would; the next process answers).
//! `MCP_TEST_PIDFILE` collects the pid of every process started; `MCP_TEST_MARKER` is the file
//! `crash_once` remembers its crash in.

use std::io::Write;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};

struct Demo;

fn bad(e: serde_json::Error) -> ErrorData {
    ErrorData::internal_error(e.to_string(), None)
}

fn number(args: &serde_json::Map<String, Value>, k: &str) -> Result<f64, ErrorData> {
    args.get(k)
        .and_then(Value::as_f64)
        .ok_or_else(|| ErrorData::invalid_params(format!("\"{k}\" must be a number"), None))
}

impl ServerHandler for Demo {
    fn get_info(&self) -> InitializeResult {
        let caps: ServerCapabilities =
            serde_json::from_value(json!({"tools": {}})).unwrap_or_default();
        InitializeResult::new(caps)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        serde_json::from_value(json!({"tools": [
            {"name": "add", "description": "Add two numbers",
             "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}},
            {"name": "pixel", "description": "A one-pixel PNG",
             "inputSchema": {"type": "object", "properties": {}}},
            {"name": "crash_once", "description": "Crashes the server the first time",
             "inputSchema": {"type": "object", "properties": {}}},
        ]})).map_err(bad)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let result: CallToolResult = match request.name.as_ref() {
            "add" => {
                let sum = number(&args, "a")? + number(&args, "b")?;
                serde_json::from_value(json!({"content": [{"type": "text", "text": format!("sum = {sum}")}]})).map_err(bad)?
            }
            "pixel" => serde_json::from_value(json!({"content": [
                {"type": "text", "text": "one red pixel"},
                {"type": "image", "mimeType": "image/png", "data": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="},
            ]})).map_err(bad)?,
            "crash_once" => {
                let marker = std::env::var("MCP_TEST_MARKER").unwrap_or_default();
                if !std::path::Path::new(&marker).exists() {
                    let _ = std::fs::write(&marker, "crashed");
                    std::process::exit(3);
                }
                serde_json::from_value(json!({"content": [{"type": "text", "text": "recovered after a crash"}]})).map_err(bad)?
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("no tool named {other}"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }
}

/// `--http`: serve streamable HTTP at `/mcp` on a free loopback port, printing
/// `listening on http://127.0.0.1:<port>/mcp`; otherwise stdio.
async fn serve_http() -> anyhow::Result<()> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    let service = StreamableHttpService::new(
        || Ok(Demo),
        std::sync::Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}/mcp", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, router).await?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--http") {
        return serve_http().await;
    }
    if let Ok(p) = std::env::var("MCP_TEST_PIDFILE") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        writeln!(f, "{}", std::process::id())?;
    }
    let service = Demo.serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}
