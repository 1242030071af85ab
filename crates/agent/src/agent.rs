//! The agent loop. A [`Runtime`] holds what every session shares (config, model registry,
//! credentials, HTTP client); a [`Session`] holds one conversation. A front end (headless
//! `idlehands agent`, the interactive TUI, the anton task runner) drives a session with
//! [`Session::run_turn`], reads [`AgentEvent`]s from a channel, and cancels with a token.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthError, AuthStore, ResolvedKey, resolve_api_key};
use crate::client::discovery::Discovered;
use crate::client::{ChatClient, ClientError, CompletionRequest, FailureKind, StreamDelta};
use crate::compaction::{CompactionReason, MAX_OVERFLOW_COMPACTIONS};
use crate::config::{self, ConfigError, LoadedConfig};
use crate::env::Env;
use crate::message::{AgentMessage, ContentBlock, StopReason, TokenUsage, UserInput, now_ms};
use crate::models::DEFAULT_CONTEXT_TOKENS;
use crate::models::{ModelError, ModelRef, ModelRegistry, ResolvedModel};
use crate::paths::{Paths, PathsError};
use crate::session::{SessionError, SessionStore, Transcript};
use crate::thinking::ThinkingLevel;
use crate::tools::{ApprovalMode, Approver, Policy, ToolBox, ToolProfile};

/// Model calls per turn before the loop gives up (a model stuck calling tools).
pub const MAX_ROUNDS_PER_TURN: usize = 200;

/// What a session reports while it works, one JSON object per event in `--json` mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    TurnStart {
        session_id: String,
        model: String,
    },
    TextDelta {
        text: String,
    },
    ReasoningDelta {
        text: String,
    },
    ToolCall {
        id: String,
        name: String,
        arguments: Value,
    },
    ToolResult {
        id: String,
        name: String,
        ok: bool,
        summary: String,
    },
    /// One model call's usage; `cost_usd` is a decimal string when the cost is known.
    Usage {
        model: String,
        input: u64,
        output: u64,
        cache_read: u64,
        cache_write: u64,
        total_tokens: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        cost_usd: Option<String>,
    },
    /// The model failed and the next candidate is tried; text streamed since the last
    /// `turn_start`/`tool_result` belonged to the failed attempt.
    Fallback {
        from: String,
        to: String,
        reason: String,
        error: String,
    },
    /// Older turns were summarised; `reason` is `threshold`, `overflow` or `manual`.
    Compaction {
        reason: String,
        tokens_before: u64,
        tokens_after: u64,
    },
    TurnEnd {
        stop_reason: String,
        text: String,
        usage: TokenUsage,
        #[serde(skip_serializing_if = "Option::is_none")]
        cost_usd: Option<String>,
    },
    Error {
        kind: String,
        message: String,
    },
}

pub type EventSink = UnboundedSender<AgentEvent>;

/// Nano-dollars as a decimal USD string, e.g. `0.000123`.
pub fn format_usd(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let s = format!("{sign}{}.{:09}", n / 1_000_000_000, n % 1_000_000_000);
    let s = s.trim_end_matches('0');
    s.strip_suffix('.')
        .map(|x| format!("{x}.0"))
        .unwrap_or_else(|| s.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{message}")]
    AllModelsFailed { message: String, last: FailureKind },
    #[error("Request was aborted")]
    Aborted,
    #[error("the workspace {} is not usable: {source}", path.display())]
    Workspace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the model kept calling tools for {0} rounds without finishing; stopped")]
    TooManyRounds(usize),
    #[error("compaction failed: {0}")]
    Compaction(String),
    #[error(
        "the model called `{name}` {count} times with the same arguments and got the same result each time; stopped the turn (try a larger model, or rephrase the task)"
    )]
    RepeatedToolCall { name: String, count: u32 },
}

impl AgentError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Paths(_) | Self::Config(_) => "config",
            Self::Auth(_) => "auth",
            Self::Model(_) => "model",
            Self::Session(_) => "session",
            Self::Client(e) => e.kind.as_str(),
            Self::AllModelsFailed { last, .. } => last.as_str(),
            Self::Aborted => "aborted",
            Self::Workspace { .. } => "workspace",
            Self::TooManyRounds(_) | Self::RepeatedToolCall { .. } => "loop",
            Self::Compaction(_) => "compaction",
        }
    }
}

/// What every session shares.
#[derive(Debug)]
pub struct Runtime {
    pub env: Env,
    pub paths: Paths,
    pub config: LoadedConfig,
    pub auth: AuthStore,
    pub registry: ModelRegistry,
    pub client: ChatClient,
    /// The configured MCP servers (`mcp.servers`), started when first needed.
    pub mcp: Arc<crate::mcp::McpHub>,
    /// Context windows asked of the servers, by model ref, once per process.
    windows: std::sync::Mutex<std::collections::HashMap<String, Option<Discovered>>>,
    /// Parameter counts asked of the servers, by model ref, once per process.
    params: std::sync::Mutex<std::collections::HashMap<String, Option<(u64, &'static str)>>>,
}

/// How long one context-window probe may take.
pub const WINDOW_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

impl Runtime {
    /// Resolve paths from `env`, load the config and the auth store, build the registry.
    pub fn load(env: Env) -> Result<Self, AgentError> {
        let paths = Paths::resolve(&env)?;
        let config = config::load(&paths.config_path, &env)?;
        let auth = AuthStore::load(&paths.auth_profiles_path())?;
        if let Err(message) = crate::mcp::McpHub::from_section(config.config.other.get("mcp")) {
            let (field, message) = message
                .split_once(": ")
                .map(|(f, m)| (f.to_string(), m.to_string()))
                .unwrap_or(("mcp".into(), message));
            return Err(ConfigError::Invalid {
                path: paths.config_path.clone(),
                field,
                message,
                fix: "give each server a \"command\" (with optional \"args\" and \"env\") or a \"url\"".into(),
            }
            .into());
        }
        Ok(Self::from_parts(env, paths, config, auth))
    }

    pub fn from_parts(env: Env, paths: Paths, config: LoadedConfig, auth: AuthStore) -> Self {
        let has_litellm_profile = auth
            .api_key_profile(&config, crate::models::LITELLM_PROVIDER)
            .is_some();
        let registry = ModelRegistry::new(&config, &env, has_litellm_profile);
        let mcp =
            crate::mcp::McpHub::from_section(config.config.other.get("mcp")).unwrap_or_default();
        Self {
            mcp: Arc::new(mcp),
            env,
            paths,
            config,
            auth,
            registry,
            client: ChatClient::new(),
            windows: Default::default(),
            params: Default::default(),
        }
    }

    /// The tool profile for `model` and why: `tools.profile` when the config sets it, else
    /// `minimal` for a small model (its `parameterCount` in the config, else the count its
    /// server reports), else `full`.
    pub async fn tool_profile(&self, model: &ResolvedModel) -> (ToolProfile, String) {
        if let Some(p) = self.config.config.tools.as_ref().and_then(|t| t.profile) {
            return (p, "config tools.profile".into());
        }
        let (count, source) = match model.parameter_count {
            Some(n) => (Some(n), "config parameterCount"),
            None => {
                let key = model.model_ref().to_string();
                let cached = self.params.lock().ok().and_then(|p| p.get(&key).cloned());
                let found = match cached {
                    Some(f) => f,
                    None => {
                        let api_key = self
                            .api_key(&model.provider)
                            .map(|k| k.key)
                            .unwrap_or_default();
                        let f = self
                            .client
                            .discover_parameter_count(
                                &model.base_url,
                                &model.id,
                                &api_key,
                                WINDOW_PROBE_TIMEOUT,
                            )
                            .await;
                        if let Ok(mut p) = self.params.lock() {
                            p.insert(key, f);
                        }
                        f
                    }
                };
                match found {
                    Some((n, src)) => (Some(n), src),
                    None => (None, "parameter count unknown"),
                }
            }
        };
        let profile = ToolProfile::for_parameter_count(count);
        let why = match count {
            Some(n) => format!("{source}: {:.1}B parameters", n as f64 / 1e9),
            None => source.to_string(),
        };
        (profile, why)
    }

    /// The context window `model` runs with, and where that figure came from: the config
    /// when it sets `contextWindow`, else the server (see [`crate::client::discovery`]),
    /// else the built-in default.
    pub async fn context_window(&self, model: &ResolvedModel) -> (u64, String) {
        if model.context_window_configured {
            return (model.context_window, "config".into());
        }
        let key = model.model_ref().to_string();
        let cached = self.windows.lock().ok().and_then(|w| w.get(&key).cloned());
        let found = match cached {
            Some(f) => f,
            None => {
                let api_key = self
                    .api_key(&model.provider)
                    .map(|k| k.key)
                    .unwrap_or_default();
                let f = self
                    .client
                    .discover_context_window(
                        &model.base_url,
                        &model.id,
                        &api_key,
                        WINDOW_PROBE_TIMEOUT,
                    )
                    .await;
                if let Ok(mut w) = self.windows.lock() {
                    w.insert(key, f.clone());
                }
                f
            }
        };
        match found {
            Some(d) => (d.tokens, d.source),
            None => (model.context_window, "default".into()),
        }
    }

    pub fn with_client(mut self, client: ChatClient) -> Self {
        self.client = client;
        self
    }

    pub fn api_key(&self, provider: &str) -> Result<ResolvedKey, AuthError> {
        resolve_api_key(provider, &self.config, &self.auth, &self.env, &self.paths)
    }

    /// The environment variables holding this agent's keys, which commands do not inherit.
    pub fn secret_env_names(&self) -> Vec<String> {
        let keys: Vec<String> = self
            .registry
            .providers()
            .keys()
            .filter_map(|p| self.api_key(p).ok().map(|k| k.key))
            .filter(|k| !k.is_empty())
            .collect();
        let process: Vec<(String, String)> = std::env::vars().collect();
        let mut names = crate::tools::policy::secret_env_names(
            self.env
                .vars()
                .iter()
                .chain(process.iter().map(|(k, v)| (k, v))),
            &keys,
        );
        names.sort();
        names.dedup();
        names
    }

    pub fn session_store(&self) -> SessionStore {
        SessionStore::new(&self.paths.sessions_dir)
    }

    /// `agents.defaults.timeoutSeconds`, else 600.
    pub fn timeout_seconds(&self) -> u64 {
        self.config
            .defaults()
            .and_then(|d| d.timeout_seconds)
            .unwrap_or(600)
    }

    pub fn default_thinking(&self) -> ThinkingLevel {
        self.config
            .defaults()
            .and_then(|d| d.thinking_default)
            .unwrap_or_default()
    }
}

/// How to open a session.
#[derive(Clone, Default)]
pub struct SessionOptions {
    /// Resume this session (or create it under this id); a fresh id when `None`.
    pub session_id: Option<String>,
    pub workspace: PathBuf,
    /// A ref, alias or bare id; the configured primary when `None`.
    pub model: Option<String>,
    pub thinking: Option<ThinkingLevel>,
    pub approval: ApprovalMode,
    pub approver: Option<Arc<dyn Approver>>,
    pub extra_system_prompt: Option<String>,
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionOutcome {
    pub reason: crate::compaction::CompactionReason,
    pub summary: String,
    /// Estimated context tokens before and after.
    pub tokens_before: u64,
    pub tokens_after: u64,
    /// Context messages replaced by the summary.
    pub messages_summarised: usize,
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnOutcome {
    pub stop_reason: StopReason,
    /// The final assistant text.
    pub text: String,
    /// The final reasoning, for replies that carry no text.
    pub reasoning: String,
    /// The model that produced the final reply.
    pub model: ModelRef,
    /// Tokens and cost of every model call in the turn.
    pub usage: TokenUsage,
}

pub struct Session {
    rt: Arc<Runtime>,
    store: SessionStore,
    transcript: Transcript,
    tools: ToolBox,
    workspace: PathBuf,
    extra_system_prompt: Option<String>,
    pub model: ModelRef,
    pub thinking: ThinkingLevel,
    /// Running totals over the session's life in this process.
    pub totals: TokenUsage,
    /// The system prompt as first sent, with the model and thinking level it was built for.
    /// Local servers (llama-server, vLLM, Ollama) reuse their prompt cache only while the
    /// prefix is byte-identical, so it is rebuilt only when one of those changes, not per turn.
    system_prompt: Option<(String, ThinkingLevel, String)>,
    /// The current model's context window and its source, once known.
    window: Option<(ModelRef, u64, String)>,
    /// The tool profile chosen for the current model, and why, once known.
    profile: Option<(ModelRef, ToolProfile, String)>,
    /// Tokens and cost of every model call in the running (or last) turn, compaction
    /// included, so a turn that fails or times out still reports what it spent.
    turn_usage: TokenUsage,
    /// The test command named in the system prompt, for the reminder to run the tests.
    test_command: Option<String>,
    /// Try the configured fallbacks when the model fails; off for an explicit `--model`
    /// without `--allow-fallback`.
    fallbacks: bool,
}

impl Session {
    pub fn open(rt: Arc<Runtime>, opts: SessionOptions) -> Result<Self, AgentError> {
        let workspace = opts
            .workspace
            .canonicalize()
            .map_err(|source| AgentError::Workspace {
                path: opts.workspace.clone(),
                source,
            })?;
        let model = match &opts.model {
            Some(m) => rt.registry.parse_ref(m)?,
            None => rt.registry.primary()?,
        };
        rt.registry.resolve(&model)?;
        let mut policy = Policy::new(&workspace, opts.approval)
            .map_err(|source| AgentError::Workspace {
                path: workspace.clone(),
                source,
            })?
            .with_protected(rt.paths.agent_dir.clone())
            .with_config(rt.config.config.tools.as_ref())
            .with_memory(crate::tools::policy::ApprovalMemory::load(
                rt.paths
                    .state_dir
                    .join(crate::tools::policy::APPROVALS_FILE),
                &workspace,
            ))
            .with_scrubbed_env(rt.secret_env_names());
        if let Some(a) = opts.approver.clone() {
            policy = policy.with_approver(a);
        }
        let mut tools = ToolBox::new(policy);
        tools.model = (model.provider.clone(), model.model.clone());
        if let Some(a) = rt
            .config
            .config
            .tools
            .as_ref()
            .and_then(|t| t.exec.as_ref())
            .and_then(|e| e.apply_patch.clone())
        {
            tools.apply_patch = a;
        }
        if let Some(t) = rt
            .config
            .config
            .tools
            .as_ref()
            .and_then(|t| t.exec.as_ref())
            .and_then(|e| e.timeout_sec)
        {
            tools.exec_timeout = std::time::Duration::from_secs(t);
        }
        let store = rt.session_store();
        let transcript = store.open(opts.session_id.as_deref(), &workspace)?;
        let thinking = opts.thinking.unwrap_or_else(|| rt.default_thinking());
        Ok(Self {
            rt,
            store,
            transcript,
            tools,
            workspace,
            extra_system_prompt: opts.extra_system_prompt,
            model,
            thinking,
            totals: TokenUsage::default(),
            system_prompt: None,
            window: None,
            profile: None,
            turn_usage: TokenUsage::default(),
            test_command: None,
            fallbacks: true,
        })
    }

    pub fn id(&self) -> &str {
        &self.transcript.id
    }

    /// Whether a failing model may hand over to the configured fallbacks (on by default).
    pub fn set_fallbacks(&mut self, on: bool) {
        self.fallbacks = on;
    }

    pub fn transcript_path(&self) -> &std::path::Path {
        &self.transcript.path
    }

    pub fn resumed(&self) -> bool {
        self.transcript.resumed
    }

    pub fn messages(&self) -> &[AgentMessage] {
        &self.transcript.messages
    }

    pub fn workspace(&self) -> &std::path::Path {
        &self.workspace
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// Tokens and cost of every model call in the running or last turn, failed or not.
    pub fn turn_usage(&self) -> TokenUsage {
        self.turn_usage
    }

    /// Switch models (`/model`); recorded in the transcript.
    pub fn set_model(&mut self, raw: &str) -> Result<ModelRef, AgentError> {
        let r = self.rt.registry.parse_ref(raw)?;
        self.rt.registry.resolve(&r)?;
        let mut f = Map::new();
        f.insert("provider".into(), json!(r.provider));
        f.insert("modelId".into(), json!(r.model));
        self.transcript.append_entry("model_change", f)?;
        self.tools.model = (r.provider.clone(), r.model.clone());
        self.model = r.clone();
        Ok(r)
    }

    /// Why the current thinking level does not reach the model, when it is not off and
    /// would not: `/think` and `--thinking` show it rather than pretend.
    pub fn thinking_warning(&self) -> Option<String> {
        if self.thinking == ThinkingLevel::Off {
            return None;
        }
        let model = self.rt.registry.resolve(&self.model).ok()?;
        crate::thinking::unsupported_reason(&model)
    }

    /// A stable number for this session (FNV-1a of its id), so a slot chosen from it is the
    /// same on every call and in every process that resumes the session.
    fn session_key(&self) -> u64 {
        self.transcript
            .id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    }

    /// Change the thinking level (`/think`); recorded in the transcript.
    pub fn set_thinking(&mut self, level: ThinkingLevel) -> Result<(), AgentError> {
        let mut f = Map::new();
        f.insert("thinkingLevel".into(), json!(level.as_str()));
        self.transcript.append_entry("thinking_level_change", f)?;
        self.thinking = level;
        Ok(())
    }

    fn compaction_settings(&self) -> crate::compaction::Settings {
        crate::compaction::Settings::from_config(
            self.rt
                .config
                .defaults()
                .and_then(|d| d.compaction.as_ref()),
        )
    }

    /// Estimated tokens of the context the next request carries (without the system prompt
    /// unless the provider reported usage).
    pub fn context_tokens(&self) -> u64 {
        crate::compaction::estimate_context(
            &self.transcript.messages,
            self.transcript.usage_valid_from,
        )
    }

    /// The current model's context window: as learnt from the config or the server at the
    /// start of the last turn, else the registry's figure.
    pub fn context_window(&self) -> Option<u64> {
        match &self.window {
            Some((m, w, _)) if *m == self.model => Some(*w),
            _ => self
                .rt
                .registry
                .resolve(&self.model)
                .ok()
                .map(|m| m.context_window),
        }
    }

    /// Where [`Self::context_window`] came from: `config`, a server route such as
    /// `llama-server /props n_ctx`, or `default`.
    pub fn context_window_source(&self) -> String {
        match &self.window {
            Some((m, _, src)) if *m == self.model => src.clone(),
            _ => match self.rt.registry.resolve(&self.model) {
                Ok(m) if m.context_window_configured => "config".into(),
                _ => "default (not yet asked of the server)".into(),
            },
        }
    }

    /// The window when the config or the server gave it, not the built-in default.
    fn known_context_window(&self) -> Option<u64> {
        match &self.window {
            Some((m, w, src)) if *m == self.model && src != "default" => Some(*w),
            _ => None,
        }
    }

    /// Ask the config or the server for the current model's window (once per model).
    pub async fn learn_context_window(&mut self) {
        if self
            .window
            .as_ref()
            .is_some_and(|(m, _, _)| *m == self.model)
        {
            return;
        }
        let Ok(model) = self.rt.registry.resolve(&self.model) else {
            return;
        };
        let (w, src) = self.rt.context_window(&model).await;
        self.window = Some((self.model.clone(), w, src));
    }

    /// Estimated prompt tokens of the next request: the context plus, until the server has
    /// reported usage (which includes them), the system prompt and the tool list.
    fn prompt_estimate(&self, overhead_chars: usize) -> u64 {
        let t = &self.transcript;
        let reported = t.messages.iter().skip(t.usage_valid_from).any(
            |m| matches!(m, AgentMessage::Assistant(a) if a.usage.input + a.usage.cache_read > 0),
        );
        let overhead = if reported {
            0
        } else {
            (overhead_chars as u64).div_ceil(4)
        };
        self.context_tokens() + overhead
    }

    fn needs_compaction(&self) -> bool {
        let s = self.compaction_settings();
        s.auto
            && self
                .context_window()
                .is_some_and(|w| self.context_tokens() > s.threshold(w))
    }

    /// `/compact [instructions]`: summarise the older turns now. `Ok(None)` when there is
    /// nothing older than the newest turn to summarise.
    pub async fn compact(
        &mut self,
        instructions: Option<&str>,
        events: &EventSink,
        cancel: &CancellationToken,
    ) -> Result<Option<CompactionOutcome>, AgentError> {
        self.compact_with(CompactionReason::Manual, instructions, events, cancel)
            .await
    }

    async fn compact_with(
        &mut self,
        reason: CompactionReason,
        instructions: Option<&str>,
        events: &EventSink,
        cancel: &CancellationToken,
    ) -> Result<Option<CompactionOutcome>, AgentError> {
        let settings = self.compaction_settings();
        let t = &self.transcript;
        let cut = crate::compaction::cut_point(&t.messages, settings.keep_recent_tokens, |i| {
            t.is_stored(i)
        })
        .or_else(|| {
            // By hand, keep only the newest turn rather than do nothing.
            (reason == CompactionReason::Manual)
                .then(|| crate::compaction::newest_turn_cut(&t.messages, |i| t.is_stored(i)))
                .flatten()
        });
        let Some(cut) = cut else {
            return Ok(None);
        };
        let tokens_before = self.context_tokens();
        let window = self.context_window().unwrap_or(DEFAULT_CONTEXT_TOKENS);
        // About three quarters of the window, at four characters a token.
        let max_chars = usize::try_from(window.saturating_mul(3)).unwrap_or(usize::MAX);
        let text = crate::compaction::summary_request_text(
            &self.transcript.messages[..cut],
            instructions,
            max_chars,
        );
        let req = CompletionRequest {
            system_prompt: crate::compaction::summary_system_prompt(&settings),
            messages: vec![UserInput::text(text).into_message()],
            tools: Vec::new(),
            thinking: ThinkingLevel::Off,
            max_tokens: None,
            output_room: None,
            session_key: Some(self.session_key()),
            session_id: Some(self.transcript.id.clone()),
            context_window: self.known_context_window(),
        };
        // The summary's own deltas are not part of the conversation.
        let (quiet, _drop) = tokio::sync::mpsc::unbounded_channel();
        let (_, msg) = self.call_with_fallbacks(None, &req, &quiet, cancel).await?;
        self.totals.add(&msg.usage);
        self.turn_usage.add(&msg.usage);
        let _ = events.send(AgentEvent::Usage {
            model: format!("{}/{}", msg.provider, msg.model),
            input: msg.usage.input,
            output: msg.usage.output,
            cache_read: msg.usage.cache_read,
            cache_write: msg.usage.cache_write,
            total_tokens: msg.usage.total_tokens,
            cost_usd: msg.usage.cost_nanos.map(format_usd),
        });
        let summary = msg.text().trim().to_string();
        if summary.is_empty() {
            return Err(AgentError::Compaction(
                "the model returned an empty summary".into(),
            ));
        }
        self.transcript.compact(
            &summary,
            cut,
            tokens_before,
            Some(json!({"reason": reason.as_str()})),
        )?;
        let tokens_after = self.context_tokens();
        let _ = events.send(AgentEvent::Compaction {
            reason: reason.as_str().into(),
            tokens_before,
            tokens_after,
        });
        Ok(Some(CompactionOutcome {
            reason,
            summary,
            tokens_before,
            tokens_after,
            messages_summarised: cut,
        }))
    }

    /// Ends a failed turn with an assistant message carrying the error (as upstream does), so
    /// the transcript alternates: a resumed session never shows two user messages in a row.
    /// Requests leave such messages out.
    fn record_failed_turn(&mut self, e: &AgentError) {
        if matches!(
            self.transcript.messages.last(),
            Some(AgentMessage::Assistant(_)) | None
        ) {
            return;
        }
        let msg = crate::message::AssistantMessage {
            content: Vec::new(),
            provider: self.model.provider.clone(),
            model: self.model.model.clone(),
            usage: TokenUsage::default(),
            stop_reason: if matches!(e, AgentError::Aborted) {
                StopReason::Aborted
            } else {
                StopReason::Error
            },
            error_message: Some(e.to_string()),
            timestamp: now_ms(),
        };
        if let Err(err) = self.transcript.append_message(AgentMessage::Assistant(msg)) {
            tracing::warn!(error = %err, "could not record the failed turn");
        }
    }

    /// Stop background processes this session started.
    pub async fn close(&self) {
        self.tools.processes.kill_all().await;
    }

    fn system_prompt(&mut self, tools: &[crate::client::ToolSpec]) -> String {
        let model = self.model.to_string();
        // The profile is part of the key: it changes the prompt and the tool list.
        let key = format!("{model} {}", self.tools.profile.as_str());
        if let Some((m, t, p)) = &self.system_prompt
            && *m == key
            && *t == self.thinking
        {
            return p.clone();
        }
        // The task is the newest user message: it may name the test command.
        let task = self.transcript.messages.iter().rev().find_map(|m| match m {
            AgentMessage::User { content, .. } => Some(
                content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Text { text } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            _ => None,
        });
        let test_command = crate::testcmd::detect(&self.workspace, task.as_deref()).map(|c| c.0);
        self.test_command = test_command.clone();
        let p = crate::prompt::build(&crate::prompt::PromptInputs {
            workspace: &self.workspace,
            tools,
            model: &model,
            thinking: self.thinking,
            extra: self.extra_system_prompt.as_deref(),
            profile: self.tools.profile,
            test_command: test_command.as_deref(),
        });
        self.system_prompt = Some((key, self.thinking, p.clone()));
        p
    }

    /// The tool profile in use and why (`tools.profile`, the parameter count and its source).
    pub fn tool_profile(&self) -> (ToolProfile, String) {
        match &self.profile {
            Some((m, p, why)) if *m == self.model => (*p, why.clone()),
            _ => (self.tools.profile, "not yet chosen".into()),
        }
    }

    /// Choose the tool profile for the current model (once per model).
    pub async fn learn_tool_profile(&mut self) {
        if self
            .profile
            .as_ref()
            .is_some_and(|(m, _, _)| *m == self.model)
        {
            return;
        }
        let Ok(model) = self.rt.registry.resolve(&self.model) else {
            return;
        };
        let (p, why) = self.rt.tool_profile(&model).await;
        tracing::info!(model = %self.model, profile = p.as_str(), why = %why, "tool profile");
        self.tools.profile = p;
        self.profile = Some((self.model.clone(), p, why));
    }

    /// Send one user message and run the loop until the model stops, fails, or `cancel`
    /// fires. Events go to `events`; the transcript and the index are updated as it goes.
    pub async fn run_turn(
        &mut self,
        input: UserInput,
        events: &EventSink,
        cancel: &CancellationToken,
    ) -> Result<TurnOutcome, AgentError> {
        let emit = |e: AgentEvent| {
            let _ = events.send(e);
        };
        emit(AgentEvent::TurnStart {
            session_id: self.transcript.id.clone(),
            model: self.model.to_string(),
        });
        self.transcript.append_message(input.into_message())?;
        self.turn_usage = TokenUsage::default();
        let result = self.turn_loop(events, cancel).await;
        if let Err(e) = &result {
            self.record_failed_turn(e);
            // What the failed turn spent stays in the transcript next to its calls.
            let mut f = Map::new();
            f.insert("errorKind".into(), json!(e.kind()));
            f.insert("error".into(), json!(e.to_string()));
            f.insert(
                "usage".into(),
                serde_json::to_value(self.turn_usage).unwrap_or(Value::Null),
            );
            if let Some(c) = self.turn_usage.cost_nanos {
                f.insert("costUsd".into(), json!(format_usd(c)));
            }
            if let Err(err) = self.transcript.append_entry("turn_failed", f) {
                tracing::warn!(error = %err, "could not record the failed turn");
            }
        }
        let _ = self.store.touch(
            &self.transcript,
            Some(&self.model.to_string()),
            Some(self.thinking.as_str()),
            &self.totals,
        );
        match &result {
            Ok(o) => emit(AgentEvent::TurnEnd {
                stop_reason: o.stop_reason.as_str().into(),
                text: o.text.clone(),
                usage: o.usage,
                cost_usd: o.usage.cost_nanos.map(format_usd),
            }),
            Err(e) => {
                emit(AgentEvent::Error {
                    kind: e.kind().into(),
                    message: e.to_string(),
                });
                emit(AgentEvent::TurnEnd {
                    stop_reason: if matches!(e, AgentError::Aborted) {
                        "aborted".into()
                    } else {
                        "error".into()
                    },
                    text: String::new(),
                    usage: self.turn_usage,
                    cost_usd: self.turn_usage.cost_nanos.map(format_usd),
                });
            }
        }
        result
    }

    async fn turn_loop(
        &mut self,
        events: &EventSink,
        cancel: &CancellationToken,
    ) -> Result<TurnOutcome, AgentError> {
        // Asked once per model; a stop pressed while a slow server is asked ends the turn.
        tokio::select! {
            () = cancel.cancelled() => return Err(AgentError::Aborted),
            () = self.learn_tool_profile() => {}
        }
        let mut specs = self.tools.specs();
        if !self.rt.mcp.is_empty() {
            // Servers start here, on the first turn that needs them.
            let mcp = tokio::select! {
                () = cancel.cancelled() => return Err(AgentError::Aborted),
                s = self.rt.mcp.specs() => s,
            };
            specs.extend(
                mcp.into_iter()
                    .filter(|s| self.tools.policy.offers(&s.name)),
            );
        }
        let system_prompt = self.system_prompt(&specs);
        tokio::select! {
            () = cancel.cancelled() => return Err(AgentError::Aborted),
            () = self.learn_context_window() => {}
        }
        let overhead_chars = system_prompt.len()
            + specs
                .iter()
                .map(|t| t.name.len() + t.description.len() + t.parameters.to_string().len())
                .sum::<usize>();
        let max_output = self
            .rt
            .registry
            .resolve(&self.model)
            .map(|m| m.max_tokens)
            .unwrap_or(crate::models::DEFAULT_MAX_TOKENS);
        // After a fallback succeeds, later calls of the same turn start from that model.
        let mut start_at: Option<ModelRef> = None;
        let mut overflow_compactions = 0;
        let mut repeats = crate::quirks::repeat::RepeatGuard::new();
        let mut verify = crate::quirks::verify::VerifyNudge::new();
        for _ in 0..MAX_ROUNDS_PER_TURN {
            if cancel.is_cancelled() {
                return Err(AgentError::Aborted);
            }
            if self.needs_compaction() {
                match self
                    .compact_with(CompactionReason::Threshold, None, events, cancel)
                    .await
                {
                    Err(AgentError::Aborted) => return Err(AgentError::Aborted),
                    // The call may still fit; an overflow would compact again.
                    Err(e) => tracing::warn!(error = %e, "automatic compaction failed"),
                    Ok(_) => {}
                }
            }
            let req = CompletionRequest {
                system_prompt: system_prompt.clone(),
                messages: self.transcript.messages.clone(),
                tools: specs.clone(),
                thinking: self.thinking,
                max_tokens: None,
                output_room: self
                    .context_window()
                    .map(|w| crate::budget::output_room(w, self.prompt_estimate(overhead_chars))),
                session_key: Some(self.session_key()),
                session_id: Some(self.transcript.id.clone()),
                context_window: self.known_context_window(),
            };
            let called = self
                .call_with_fallbacks(start_at.as_ref(), &req, events, cancel)
                .await;
            let (used, msg) = match called {
                Err(AgentError::Client(e))
                    if e.kind == FailureKind::ContextOverflow
                        && overflow_compactions < MAX_OVERFLOW_COMPACTIONS =>
                {
                    overflow_compactions += 1;
                    match self
                        .compact_with(CompactionReason::Overflow, None, events, cancel)
                        .await
                    {
                        Ok(Some(_)) => continue,
                        Err(AgentError::Aborted) => return Err(AgentError::Aborted),
                        Ok(None) | Err(_) => return Err(AgentError::Client(e)),
                    }
                }
                other => other?,
            };
            // A model answered: from here on the session exists on disk.
            self.transcript.persist()?;
            start_at = Some(used.clone());
            let _ = events.send(AgentEvent::Usage {
                model: used.to_string(),
                input: msg.usage.input,
                output: msg.usage.output,
                cache_read: msg.usage.cache_read,
                cache_write: msg.usage.cache_write,
                total_tokens: msg.usage.total_tokens,
                cost_usd: msg.usage.cost_nanos.map(format_usd),
            });
            self.turn_usage.add(&msg.usage);
            self.totals.add(&msg.usage);
            let calls: Vec<(String, String, Value)> = msg
                .tool_calls()
                .into_iter()
                .map(|(i, n, a)| (i.to_string(), n.to_string(), a.clone()))
                .collect();
            let text = msg.text();
            let reasoning = msg.reasoning();
            let stop = msg.stop_reason;
            self.transcript
                .append_message(AgentMessage::Assistant(msg))?;
            if calls.is_empty() {
                if self.tools.profile == ToolProfile::Minimal
                    && let Some(note) = verify.before_end(self.test_command.as_deref())
                {
                    self.transcript
                        .append_message(UserInput::text(note).into_message())?;
                    continue;
                }
                return Ok(TurnOutcome {
                    stop_reason: stop,
                    text,
                    reasoning,
                    model: used,
                    usage: self.turn_usage,
                });
            }
            for (i, (id, name, args)) in calls.iter().enumerate() {
                if cancel.is_cancelled() {
                    for (id, name, _) in &calls[i..] {
                        self.transcript.append_message(AgentMessage::ToolResult {
                            tool_call_id: id.clone(),
                            tool_name: name.clone(),
                            content: vec![ContentBlock::Text {
                                text: "Tool execution was aborted.".into(),
                            }],
                            is_error: true,
                            timestamp: now_ms(),
                        })?;
                    }
                    return Err(AgentError::Aborted);
                }
                let _ = events.send(AgentEvent::ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: args.clone(),
                });
                let mut out = if self.rt.mcp.owns(name) && self.tools.policy.offers(name) {
                    tokio::select! {
                        () = cancel.cancelled() => crate::tools::ToolOutput::error("Tool execution was aborted."),
                        o = self.rt.mcp.call(name, args) => o,
                    }
                } else {
                    self.tools.run(name, args, cancel).await
                };
                verify.record(name, out.ok);
                if let Some(w) = self.context_window() {
                    // Leave the model room to answer: a quarter of the window at most.
                    let reserve = max_output.min(w / 4);
                    let room = crate::budget::result_room_chars(
                        w,
                        self.prompt_estimate(overhead_chars),
                        reserve,
                    );
                    for b in &mut out.content {
                        if let ContentBlock::Text { text } = b
                            && text.len() > room
                        {
                            *text = crate::budget::cut_middle(text, room);
                        }
                    }
                }
                let result_text: String = out
                    .content
                    .iter()
                    .map(|b| match b {
                        ContentBlock::Text { text } => text.clone(),
                        other => serde_json::to_string(other).unwrap_or_default(),
                    })
                    .collect();
                let verdict = repeats.record(name, args, &format!("{}{result_text}", out.ok));
                if let crate::quirks::repeat::Verdict::Warn(note) = &verdict {
                    out.content.push(ContentBlock::Text {
                        text: format!("\n\n{note}"),
                    });
                }
                let _ = events.send(AgentEvent::ToolResult {
                    id: id.clone(),
                    name: name.clone(),
                    ok: out.ok,
                    summary: out.summary.clone(),
                });
                self.transcript.append_message(AgentMessage::ToolResult {
                    tool_call_id: id.clone(),
                    tool_name: name.clone(),
                    content: out.content,
                    is_error: !out.ok,
                    timestamp: now_ms(),
                })?;
                if let crate::quirks::repeat::Verdict::Stop { count } = verdict {
                    // The transcript must not end on a call without a result.
                    for (id, name, _) in &calls[i + 1..] {
                        self.transcript.append_message(AgentMessage::ToolResult {
                            tool_call_id: id.clone(),
                            tool_name: name.clone(),
                            content: vec![ContentBlock::Text {
                                text: "Not run: the turn was stopped.".into(),
                            }],
                            is_error: true,
                            timestamp: now_ms(),
                        })?;
                    }
                    return Err(AgentError::RepeatedToolCall {
                        name: name.clone(),
                        count,
                    });
                }
            }
        }
        Err(AgentError::TooManyRounds(MAX_ROUNDS_PER_TURN))
    }

    async fn call_with_fallbacks(
        &self,
        start_at: Option<&ModelRef>,
        req: &CompletionRequest,
        events: &EventSink,
        cancel: &CancellationToken,
    ) -> Result<(ModelRef, crate::message::AssistantMessage), AgentError> {
        let mut candidates = self.rt.registry.candidates(&self.model);
        if !self.fallbacks {
            candidates.truncate(1);
        }
        if let Some(s) = start_at
            && let Some(pos) = candidates.iter().position(|c| c == s)
        {
            candidates.drain(..pos);
        }
        let mut failures: Vec<(ModelRef, String, FailureKind)> = Vec::new();
        let mut first_error: Option<AgentError> = None;
        let n = candidates.len();
        for (i, cand) in candidates.iter().enumerate() {
            let attempt: Result<_, AgentError> = async {
                let model: ResolvedModel = self.rt.registry.resolve(cand)?;
                let key = self.rt.api_key(&cand.provider)?;
                let mut on_delta = |d: StreamDelta| {
                    let e = match d {
                        StreamDelta::Text(text) => AgentEvent::TextDelta { text },
                        StreamDelta::Reasoning(text) => AgentEvent::ReasoningDelta { text },
                        StreamDelta::ToolCallStarted { .. } => return,
                    };
                    let _ = events.send(e);
                };
                Ok(self
                    .rt
                    .client
                    .stream(&model, &key.key, req, cancel, &mut on_delta)
                    .await?)
            }
            .await;
            match attempt {
                Ok(msg) => return Ok((cand.clone(), msg)),
                Err(AgentError::Client(e)) if !e.should_fall_back() => {
                    return Err(if e.kind == FailureKind::Aborted {
                        AgentError::Aborted
                    } else {
                        AgentError::Client(e)
                    });
                }
                Err(e) => {
                    let kind = match &e {
                        AgentError::Client(c) => c.kind,
                        AgentError::Auth(_) => FailureKind::Auth,
                        AgentError::Model(_) => FailureKind::ModelNotFound,
                        _ => FailureKind::Unknown,
                    };
                    if let Some(next) = candidates.get(i + 1) {
                        let _ = events.send(AgentEvent::Fallback {
                            from: cand.to_string(),
                            to: next.to_string(),
                            reason: kind.as_str().into(),
                            error: e.to_string(),
                        });
                    }
                    failures.push((cand.clone(), e.to_string(), kind));
                    first_error.get_or_insert(e);
                }
            }
        }
        if n == 1
            && let Some(e) = first_error
        {
            return Err(e);
        }
        let last = failures.last().map(|f| f.2).unwrap_or(FailureKind::Unknown);
        let summary: Vec<String> = failures
            .iter()
            .map(|(r, e, k)| format!("{r}: {e} ({})", k.as_str()))
            .collect();
        Err(AgentError::AllModelsFailed {
            message: format!(
                "All models failed ({}): {}",
                failures.len(),
                summary.join(" | ")
            ),
            last,
        })
    }
}

/// One message in a session (fresh or resumed), run to the end with a time limit: the shape
/// headless callers (the anton task runner, scripts) need. Events are dropped unless `events`
/// is given. On timeout the turn is cancelled and `Err(Aborted)` comes back with `timed_out`.
pub async fn run_headless(
    rt: Arc<Runtime>,
    opts: SessionOptions,
    input: UserInput,
    timeout: std::time::Duration,
    events: Option<EventSink>,
) -> Result<TurnOutcome, HeadlessError> {
    run_headless_with(rt, opts, input, timeout, events, true).await
}

/// [`run_headless`], saying whether the configured fallbacks may answer when the model fails.
pub async fn run_headless_with(
    rt: Arc<Runtime>,
    opts: SessionOptions,
    input: UserInput,
    timeout: std::time::Duration,
    events: Option<EventSink>,
    fallbacks: bool,
) -> Result<TurnOutcome, HeadlessError> {
    let mut session = Session::open(rt, opts).map_err(HeadlessError::Agent)?;
    session.set_fallbacks(fallbacks);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let sink = events.unwrap_or(tx);
    let cancel = CancellationToken::new();
    let timer = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            cancel.cancel();
        })
    };
    let res = session.run_turn(input, &sink, &cancel).await;
    let timed_out = timer.is_finished() && cancel.is_cancelled();
    timer.abort();
    session.close().await;
    match res {
        Err(AgentError::Aborted) if timed_out => Err(HeadlessError::TimedOut(timeout)),
        other => other.map_err(HeadlessError::Agent),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HeadlessError {
    #[error("Agent call timed out after {}s", .0.as_secs())]
    TimedOut(std::time::Duration),
    #[error(transparent)]
    Agent(AgentError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// Front ends box the turn as a `Send` future (e.g. anton's `TaskAgent`).
    #[test]
    fn turn_futures_are_send() {
        let rt = Arc::new(Runtime::from_parts(
            Env::default(),
            Paths {
                home: PathBuf::from("/nonexistent"),
                state_dir: PathBuf::from("/nonexistent/s"),
                config_path: PathBuf::from("/nonexistent/s/c.json"),
                agent_dir: PathBuf::from("/nonexistent/s/a"),
                sessions_dir: PathBuf::from("/nonexistent/s/x"),
            },
            LoadedConfig::default(),
            AuthStore::default(),
        ));
        let fut = run_headless(
            rt,
            SessionOptions::default(),
            UserInput::text("x"),
            std::time::Duration::from_secs(1),
            None,
        );
        assert_send(&fut);
    }

    #[test]
    fn usd_formatting() {
        assert_eq!(format_usd(123_000), "0.000123");
        assert_eq!(format_usd(1_500_000_000), "1.5");
        assert_eq!(format_usd(0), "0.0");
        assert_eq!(format_usd(2_000_000_000), "2.0");
    }
}
