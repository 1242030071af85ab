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
    /// The first prompt (one line, shortened), what `idlehands sessions` shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The workspace the session was started in (what `--continue` matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Longest title kept in the index.
const TITLE_CHARS: usize = 80;

/// A prompt as a one-line title.
pub fn title_of(prompt: &str) -> String {
    let line = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > TITLE_CHARS {
        let cut: String = line.chars().take(TITLE_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        line
    }
}

/// One line of `idlehands sessions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<String>,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    pub file: String,
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
        // Nothing is written until a model has answered (see `Transcript::persist`): a run
        // that never got that far leaves no empty session behind.
        Ok(Transcript {
            id,
            path,
            messages: Vec::new(),
            entry_ids: Vec::new(),
            usage_valid_from: 0,
            last_entry: None,
            resumed: false,
            cwd: Some(cwd.to_string_lossy().into_owned()),
            pending: Some(vec![header]),
        })
    }

    /// Whether session `id` has a transcript on disk.
    pub fn exists(&self, id: &str) -> bool {
        validate_id(id).is_ok() && self.transcript_path(id).is_file()
    }

    /// The stored sessions, most recently updated first.
    pub fn list(&self) -> Result<Vec<SessionSummary>, SessionError> {
        let mut out: Vec<SessionSummary> = self
            .index()?
            .into_values()
            .filter(|e| !e.session_id.is_empty())
            .map(|e| {
                let file = if e.session_file.is_empty() {
                    self.transcript_path(&e.session_id)
                        .to_string_lossy()
                        .into_owned()
                } else {
                    e.session_file.clone()
                };
                let title = e
                    .title
                    .clone()
                    .or_else(|| first_prompt_in(Path::new(&file)).map(|p| title_of(&p)))
                    .unwrap_or_default();
                SessionSummary {
                    id: e.session_id,
                    title,
                    model: e.model,
                    input_tokens: e.input_tokens,
                    output_tokens: e.output_tokens,
                    total_tokens: e.total_tokens,
                    cost_usd: e.cost_nanos.map(crate::agent::format_usd),
                    updated_at: e.updated_at,
                    cwd: e.cwd,
                    file,
                }
            })
            .collect();
        out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The session `raw` names: an exact id, else the one id starting with it.
    pub fn find(&self, raw: &str) -> Result<Option<String>, SessionError> {
        let raw = raw.trim();
        if self.exists(raw) {
            return Ok(Some(raw.to_string()));
        }
        let matches: Vec<String> = self
            .list()?
            .into_iter()
            .map(|s| s.id)
            .filter(|id| id.starts_with(raw))
            .collect();
        Ok(match matches.as_slice() {
            [one] if self.exists(one) => Some(one.clone()),
            _ => None,
        })
    }

    /// The most recently updated session started in `cwd`.
    pub fn latest_in(&self, cwd: &Path) -> Result<Option<String>, SessionError> {
        let cwd = cwd.to_string_lossy();
        Ok(self
            .list()?
            .into_iter()
            .find(|s| s.cwd.as_deref() == Some(&*cwd) && self.exists(&s.id))
            .map(|s| s.id))
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
        if !t.is_persisted() {
            return Ok(());
        }
        let mut index = self.index()?;
        let entry = index.entry(session_key(&t.id)).or_default();
        if entry.title.is_none() {
            entry.title = t.first_prompt().map(|p| title_of(&p));
        }
        if entry.cwd.is_none() {
            entry.cwd = t.cwd.clone();
        }
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

/// An open transcript: the context of the current branch (what the next request carries),
/// and the file to append to. After a compaction the context starts with the summary (as a
/// user message) and goes on from the first kept entry; the file keeps every original.
#[derive(Debug)]
pub struct Transcript {
    pub id: String,
    pub path: PathBuf,
    pub messages: Vec<AgentMessage>,
    /// The entry id of each message in `messages`; `None` for a compaction summary.
    entry_ids: Vec<Option<String>>,
    /// Messages before this index were in the context when the latest compaction ran; the
    /// usage they report describes a context that no longer exists.
    pub usage_valid_from: usize,
    last_entry: Option<String>,
    pub resumed: bool,
    /// The workspace named in the header.
    pub cwd: Option<String>,
    /// Lines of a new transcript not yet written: the file appears with the first model
    /// answer ([`Self::persist`]). `None` once on disk.
    pending: Option<Vec<Value>>,
}

/// The text of the first user message in the transcript file at `path`.
fn first_prompt_in(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("type").and_then(Value::as_str) == Some("message"))
        .filter_map(|v| serde_json::from_value::<AgentMessage>(v.get("message")?.clone()).ok())
        .find_map(|m| user_text(&m))
}

fn user_text(m: &AgentMessage) -> Option<String> {
    match m {
        AgentMessage::User { content, .. } => content.iter().find_map(|b| match b {
            crate::message::ContentBlock::Text { text } => Some(text.clone()),
            _ => None,
        }),
        _ => None,
    }
}

/// The user message a compaction summary stands in as.
pub fn summary_message(summary: &str, timestamp: i64) -> AgentMessage {
    AgentMessage::User {
        content: vec![crate::message::ContentBlock::Text {
            text: format!("{COMPACTION_SUMMARY_PREFIX}\n<summary>\n{summary}\n</summary>"),
        }],
        timestamp,
    }
}

pub const COMPACTION_SUMMARY_PREFIX: &str =
    "The conversation history before this point was compacted into the following summary:";

impl Transcript {
    fn load(id: String, path: PathBuf) -> Result<Self, SessionError> {
        let text = std::fs::read_to_string(&path).map_err(|source| SessionError::Io {
            path: path.clone(),
            source,
        })?;
        let mut entries: HashMap<String, (Option<String>, Value)> = HashMap::new();
        let mut last: Option<String> = None;
        let mut cwd = None;
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
                cwd = v.get("cwd").and_then(Value::as_str).map(str::to_string);
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
        let mut entry_ids: Vec<Option<String>> = Vec::new();
        let mut usage_valid_from = 0;
        for v in chain {
            let eid = v.get("id").and_then(Value::as_str).map(str::to_string);
            match v.get("type").and_then(Value::as_str) {
                Some("message") => {
                    if let Some(m) = v.get("message") {
                        let m: AgentMessage = serde_json::from_value(m.clone()).map_err(|e| {
                            SessionError::Corrupt {
                                path: path.clone(),
                                line: 0,
                                message: e.to_string(),
                            }
                        })?;
                        messages.push(m);
                        entry_ids.push(eid);
                    }
                }
                Some("compaction") => {
                    let summary = v.get("summary").and_then(Value::as_str).unwrap_or("");
                    let first_kept = v.get("firstKeptEntryId").and_then(Value::as_str);
                    let keep_from = first_kept
                        .and_then(|k| entry_ids.iter().position(|e| e.as_deref() == Some(k)))
                        .unwrap_or(messages.len());
                    let ts = v
                        .get("timestamp")
                        .and_then(Value::as_str)
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.timestamp_millis())
                        .unwrap_or(0);
                    let kept = messages.split_off(keep_from);
                    let kept_ids = entry_ids.split_off(keep_from);
                    messages = vec![summary_message(summary, ts)];
                    messages.extend(kept);
                    entry_ids = vec![None];
                    entry_ids.extend(kept_ids);
                    usage_valid_from = messages.len();
                }
                _ => {}
            }
        }
        Ok(Self {
            id,
            path,
            messages,
            entry_ids,
            usage_valid_from,
            last_entry: last,
            resumed: true,
            cwd,
            pending: None,
        })
    }

    /// Whether the transcript is on disk (a model has answered in it at least once).
    pub fn is_persisted(&self) -> bool {
        self.pending.is_none()
    }

    /// Write what was held back; from now on entries go straight to the file.
    pub fn persist(&mut self) -> Result<(), SessionError> {
        let Some(lines) = self.pending.take() else {
            return Ok(());
        };
        if let Some(dir) = self.path.parent() {
            crate::fsutil::create_private_dir(dir).map_err(|source| SessionError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        for l in &lines {
            self.write_line(l)?;
        }
        Ok(())
    }

    /// The first prompt of the session (for its title).
    pub fn first_prompt(&self) -> Option<String> {
        match self.messages.first() {
            // After a compaction the first context message is the summary.
            Some(m) if self.usage_valid_from == 0 => user_text(m),
            _ => first_prompt_in(&self.path),
        }
    }

    fn append_line(&mut self, v: &Value) -> Result<(), SessionError> {
        if let Some(p) = &mut self.pending {
            p.push(v.clone());
            return Ok(());
        }
        self.write_line(v)
    }

    fn write_line(&self, v: &Value) -> Result<(), SessionError> {
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
        let id = self.append_entry("message", fields)?;
        self.messages.push(m);
        self.entry_ids.push(Some(id));
        Ok(())
    }

    /// Whether context message `i` is a stored entry (not a compaction summary).
    pub fn is_stored(&self, i: usize) -> bool {
        self.entry_ids.get(i).is_some_and(Option::is_some)
    }

    /// Record a compaction: messages before `first_kept` are replaced in the context by
    /// `summary`; the file keeps them. `first_kept` must index a message with an entry (not
    /// an earlier summary). Returns the compaction entry's id.
    pub fn compact(
        &mut self,
        summary: &str,
        first_kept: usize,
        tokens_before: u64,
        details: Option<Value>,
    ) -> Result<String, SessionError> {
        let kept_id = self
            .entry_ids
            .get(first_kept)
            .cloned()
            .flatten()
            .ok_or_else(|| SessionError::Io {
                path: self.path.clone(),
                source: std::io::Error::other("compaction must keep a stored message"),
            })?;
        let mut fields = Map::new();
        fields.insert("summary".into(), json!(summary));
        fields.insert("firstKeptEntryId".into(), json!(kept_id));
        fields.insert("tokensBefore".into(), json!(tokens_before));
        if let Some(d) = details {
            fields.insert("details".into(), d);
        }
        let id = self.append_entry("compaction", fields)?;
        let kept = self.messages.split_off(first_kept);
        let kept_ids = self.entry_ids.split_off(first_kept);
        self.messages = vec![summary_message(summary, crate::message::now_ms())];
        self.messages.extend(kept);
        self.entry_ids = vec![None];
        self.entry_ids.extend(kept_ids);
        self.usage_valid_from = self.messages.len();
        Ok(id)
    }
}
