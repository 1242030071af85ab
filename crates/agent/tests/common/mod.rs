#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use idlehands_agent::agent::{AgentEvent, Runtime, Session, SessionOptions};
use idlehands_agent::client::ChatClient;
use idlehands_agent::{ApprovalMode, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A scratch home: state dir, workspace, and an env pointing at them.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub env: Env,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&ws).unwrap();
        let env = Env::from_pairs([
            ("HOME", home.to_string_lossy().into_owned()),
            ("PATH", std::env::var("PATH").unwrap_or_default()),
        ]);
        Self { dir, env }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.home().join(".idlehands")
    }

    pub fn workspace(&self) -> PathBuf {
        self.dir.path().join("ws").canonicalize().unwrap()
    }

    pub fn config_path(&self) -> PathBuf {
        self.state_dir().join("idlehands.json")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.state_dir()).unwrap();
        std::fs::write(self.config_path(), text).unwrap();
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        Arc::new(
            Runtime::load(self.env.clone())
                .unwrap()
                .with_client(ChatClient::new().with_retries(0)),
        )
    }

    pub fn session(&self, rt: &Arc<Runtime>, id: Option<&str>) -> Session {
        Session::open(
            rt.clone(),
            SessionOptions {
                session_id: id.map(str::to_string),
                workspace: self.workspace(),
                approval: ApprovalMode::Never,
                ..Default::default()
            },
        )
        .unwrap()
    }
}

/// A provider block for `provider` at `base_url` with one model, plus its key inline.
pub fn provider_json(provider: &str, base_url: &str, model: &str, extra_model: &str) -> String {
    format!(
        r#""{provider}": {{ baseUrl: "{base_url}", apiKey: "key-{provider}", api: "openai-completions",
             models: [{{ id: "{model}", name: "{model}" {extra_model} }}] }}"#
    )
}

pub fn collect(rx: &mut tokio::sync::mpsc::UnboundedReceiver<AgentEvent>) -> Vec<AgentEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

pub fn event_types(events: &[AgentEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// A one-shot-per-connection HTTP server answering every request with `status`, extra
/// `headers` and a raw `body` (for wire shapes the fake upstream does not produce).
pub async fn raw_server(
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
) -> (String, tokio::task::JoinHandle<()>) {
    serve(Arc::new(move |_: &str, _: &[u8]| {
        (status, headers.clone(), body.clone())
    }))
    .await
}

/// What a routed fake answers: `(status, headers, body)`.
pub type Answer = (u16, Vec<(String, String)>, String);

/// A server answering `"METHOD /path"` routes with fixed JSON bodies and everything else
/// with 404, as a local model server does for routes it does not have. Requests are logged
/// as `"METHOD /path body"` in the returned list.
pub async fn routed_server(
    routes: Vec<(&'static str, String)>,
) -> (
    String,
    Arc<parking_lot::Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
) {
    let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = log.clone();
    let json = vec![("content-type".to_string(), "application/json".to_string())];
    let (base, task) = serve(Arc::new(move |line: &str, body: &[u8]| {
        seen.lock().push(
            format!("{line} {}", String::from_utf8_lossy(body))
                .trim()
                .to_string(),
        );
        match routes.iter().find(|(r, _)| *r == line) {
            Some((_, b)) => (200, json.clone(), b.clone()),
            None => (
                404,
                json.clone(),
                r#"{"error":{"code":404,"message":"File Not Found","type":"not_found_error"}}"#
                    .to_string(),
            ),
        }
    }))
    .await;
    (base, log, task)
}

pub type Handler = Arc<dyn Fn(&str, &[u8]) -> Answer + Send + Sync>;

/// Serve `handler(request line as "METHOD /path", body)` one request per connection.
pub async fn serve(handler: Handler) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                // Read headers, then the body by content-length.
                let (line, body_start) = loop {
                    let n = sock.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(end) = find(&buf, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let mut parts = head.lines().next().unwrap_or("").split(' ');
                        let line = format!(
                            "{} {}",
                            parts.next().unwrap_or(""),
                            parts.next().unwrap_or("")
                        );
                        let len: usize = head
                            .to_ascii_lowercase()
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            let n = sock.read(&mut tmp).await.unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            buf.extend_from_slice(&tmp[..n]);
                        }
                        break (line, end + 4);
                    }
                };
                let (status, headers, body) = handler(&line, &buf[body_start..]);
                let mut resp = format!("HTTP/1.1 {status} X\r\nconnection: close\r\n");
                for (k, v) in &headers {
                    resp.push_str(&format!("{k}: {v}\r\n"));
                }
                resp.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
                resp.push_str(&body);
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), task)
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
