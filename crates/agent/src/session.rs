//! Sessions on disk: one JSONL transcript per session (format version 3: a `session` header,
//! then `{type, id, parentId, timestamp, ...}` entries forming a tree) under
//! `<stateDir>/agents/main/sessions/<id>.jsonl`, and the `sessions.json` index.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::message::{AgentMessage, TokenUsage};

pub const TRANSCRIPT_VERSION: u64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("Invalid session id \"{0}\": use letters, digits, '.', '_' or '-' (at most 128)")]
    InvalidId(String),
    #[error("Session storage error at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Session transcript {} is corrupt at line {line}: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionIndexEntry {
    pub session_id: String,
    pub session_file: String,
    pub updated_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_level: Option<String>,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_nanos: Option<i64>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

pub fn session_key(id: &str) -> String {
    format!("agent:{}:{id}", crate::paths::DEFAULT_AGENT_ID)
}

pub fn validate_id(id: &str) -> Result<(), SessionError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SessionError::InvalidId(id.to_string()))
    }
}

#[derive(Debug, Clone)]
pub struct SessionStore {
    dir: PathBuf,
}

impl SessionStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn index_path(&self) -> PathBuf {
        self.dir.join("sessions.json")
    }

    pub fn transcript_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.jsonl"))
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> SessionError {
        let path = path.to_path_buf();
        move |source| SessionError::Io {
            path: path.clone(),
            source,
        }
    }

    /// Open session `id` (resuming its transcript) or create it; a new random id when `None`.
    pub fn open(&self, id: Option<&str>, cwd: &Path) -> Result<Transcript, SessionError> {
        let id = match id {
            Some(id) => {
                validate_id(id)?;
                id.to_string()
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        crate::fsutil::create_private_dir(&self.dir).map_err(self.io(&self.dir))?;
        let path = self.transcript_path(&id);
        if path.exists() {
            return Transcript::load(id, path);
        }
        let header = json!({
            "type": "session",
            "version": TRANSCRIPT_VERSION,
            "id": id,
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "cwd": cwd.to_string_lossy(),
        });
        let mut t = Transcript {
            id,
            path,
            messages: Vec::new(),
            last_entry: None,
            resumed: false,
        };
        t.append_line(&header)?;
        Ok(t)
    }

    pub fn index(&self) -> Result<BTreeMap<String, SessionIndexEntry>, SessionError> {
        let path = self.index_path();
        match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| SessionError::Corrupt {
                path: path.clone(),
                line: e.line(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    /// Record the session in `sessions.json` with its running totals.
    pub fn touch(
        &self,
        t: &Transcript,
        model: Option<&str>,
        thinking: Option<&str>,
        totals: &TokenUsage,
    ) -> Result<(), SessionError> {
        let mut index = self.index()?;
        let entry = index.entry(session_key(&t.id)).or_default();
        entry.session_id = t.id.clone();
        entry.session_file = t.path.to_string_lossy().into_owned();
        entry.updated_at = crate::message::now_ms();
        entry.model = model.map(str::to_string).or(entry.model.take());
        entry.thinking_level = thinking.map(str::to_string).or(entry.thinking_level.take());
        entry.input_tokens = totals.input;
        entry.output_tokens = totals.output;
        entry.total_tokens = totals.total_tokens;
        entry.cost_nanos = totals.cost_nanos;
        let path = self.index_path();
        let text = serde_json::to_string_pretty(&index)
            .map_err(|e| self.io(&path)(std::io::Error::other(e)))?;
        crate::fsutil::write_private(&path, text.as_bytes()).map_err(self.io(&path))
    }
}

/// An open transcript: the messages on the current branch, and the file to append to.
#[derive(Debug)]
pub struct Transcript {
    pub id: String,
    pub path: PathBuf,
    pub messages: Vec<AgentMessage>,
    last_entry: Option<String>,
    pub resumed: bool,
}

impl Transcript {
    fn load(id: String, path: PathBuf) -> Result<Self, SessionError> {
        let text = std::fs::read_to_string(&path).map_err(|source| SessionError::Io {
            path: path.clone(),
            source,
        })?;
        let mut entries: HashMap<String, (Option<String>, Value)> = HashMap::new();
        let mut last: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line).map_err(|e| SessionError::Corrupt {
                path: path.clone(),
                line: i + 1,
                message: e.to_string(),
            })?;
            if v.get("type").and_then(Value::as_str) == Some("session") {
                continue;
            }
            let Some(eid) = v.get("id").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            let parent = v
                .get("parentId")
                .and_then(Value::as_str)
                .map(str::to_string);
            entries.insert(eid.clone(), (parent, v));
            last = Some(eid);
        }
        // The current branch: from the newest entry back to the root through parentId.
        let mut chain = Vec::new();
        let mut cur = last.clone();
        while let Some(c) = cur {
            let Some((parent, v)) = entries.get(&c) else {
                break;
            };
            chain.push(v.clone());
            cur = parent.clone();
            if chain.len() > entries.len() {
                break;
            }
        }
        chain.reverse();
        let mut messages = Vec::new();
        for v in chain {
            if v.get("type").and_then(Value::as_str) != Some("message") {
                continue;
            }
            if let Some(m) = v.get("message") {
                let m: AgentMessage =
                    serde_json::from_value(m.clone()).map_err(|e| SessionError::Corrupt {
                        path: path.clone(),
                        line: 0,
                        message: e.to_string(),
                    })?;
                messages.push(m);
            }
        }
        Ok(Self {
            id,
            path,
            messages,
            last_entry: last,
            resumed: true,
        })
    }

    fn append_line(&mut self, v: &Value) -> Result<(), SessionError> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|source| SessionError::Io {
                path: self.path.clone(),
                source,
            })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600));
        }
        writeln!(f, "{v}").map_err(|source| SessionError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Append an entry of `kind` with extra fields; it becomes the new leaf.
    pub fn append_entry(
        &mut self,
        kind: &str,
        fields: Map<String, Value>,
    ) -> Result<String, SessionError> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let mut v = Map::new();
        v.insert("type".into(), json!(kind));
        v.insert("id".into(), json!(id));
        v.insert(
            "parentId".into(),
            self.last_entry
                .clone()
                .map(Value::String)
                .unwrap_or(Value::Null),
        );
        v.insert("timestamp".into(), json!(chrono::Utc::now().to_rfc3339()));
        v.extend(fields);
        self.append_line(&Value::Object(v))?;
        self.last_entry = Some(id.clone());
        Ok(id)
    }

    pub fn append_message(&mut self, m: AgentMessage) -> Result<(), SessionError> {
        let mut fields = Map::new();
        fields.insert(
            "message".into(),
            serde_json::to_value(&m).map_err(|e| SessionError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?,
        );
        self.append_entry("message", fields)?;
        self.messages.push(m);
        Ok(())
    }
}
