//! Model groups and deployments, built once from the config. Which deployment takes an
//! attempt, retries, fallbacks and cooldowns are the routing crate's (`idlehands_routing`):
//! every exact deployment is registered with one [`idlehands_routing::Router`] in a
//! [`RoutingTable`], whose slot numbers index back into the deployments here. Wildcard groups
//! are expanded on first use, each into a small table of its own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use rand::Rng;

use idlehands_clock::Clock;
use idlehands_routing::{DeploymentSpec, RouterSettings};

use crate::config::{ModelEntry, ProxyConfig};
use crate::pricing::PriceTable;

use crate::providers::Deployment;

/// Deployments registered with one routing-crate router; `deployments[pick.index()]` is the
/// deployment a [`idlehands_routing::Pick`] names.
pub struct RoutingTable {
    pub router: idlehands_routing::Router,
    pub deployments: Box<[Arc<Deployment>]>,
    /// Whether any deployment has a route budget (its provider's or its own).
    pub route_budgets: bool,
}

impl std::fmt::Debug for RoutingTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutingTable")
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl RoutingTable {
    /// Number the deployments by position and register them, with state shared through
    /// Redis when a client is given (and a runtime is there to sync it).
    fn new(
        mut deployments: Vec<Deployment>,
        settings: RouterSettings,
        redis: Option<redis::Client>,
        clock: &Arc<dyn Clock>,
    ) -> RoutingTable {
        for (i, d) in deployments.iter_mut().enumerate() {
            d.slot = i;
        }
        let specs: Vec<DeploymentSpec> = deployments.iter().map(|d| d.spec.clone()).collect();
        let shared = redis.and_then(|client| {
            let ids = specs.iter().map(|s| s.id.clone()).collect();
            crate::router_redis::RedisRouterState::start(client, ids, clock.clone())
        });
        let state: Arc<dyn idlehands_routing::RouterState> = match shared {
            Some(state) => Arc::new(state),
            None => Arc::new(idlehands_routing::InMemoryState::new(specs.len())),
        };
        let router = idlehands_routing::Router::with_state(specs, settings, state, clock.clone());
        RoutingTable {
            router,
            route_budgets: deployments.iter().any(|d| !d.route_budgets.is_empty()),
            deployments: deployments.into_iter().map(Arc::new).collect(),
        }
    }
}

#[derive(Debug)]
pub struct ModelGroup {
    pub name: String,
    pub deployments: Vec<Arc<Deployment>>,
    /// Indices of the lowest-`order` tier, which serves traffic.
    primary: Vec<usize>,
    /// The model access groups of its deployments, each once.
    pub access_groups: Vec<String>,
    /// Where attempts for this group are planned; fallback targets must be in the same table.
    pub table: Arc<RoutingTable>,
}

impl ModelGroup {
    /// LiteLLM's simple-shuffle over the primary tier, without reserving anything: a first
    /// guess for callers that make one attempt. Retrying callers plan with [`Self::table`].
    pub fn pick(&self) -> &Arc<Deployment> {
        let tier = &self.primary;
        let idx = if tier.len() == 1 {
            tier[0]
        } else {
            let total: f64 = tier.iter().map(|i| self.deployments[*i].weight).sum();
            let mut rng = rand::rng();
            if total > 0.0 {
                let mut r = rng.random::<f64>() * total;
                let mut chosen = tier[tier.len() - 1];
                for i in tier {
                    r -= self.deployments[*i].weight;
                    if r < 0.0 {
                        chosen = *i;
                        break;
                    }
                }
                chosen
            } else {
                tier[rng.random_range(0..tier.len())]
            }
        };
        &self.deployments[idx]
    }

    pub fn owned_by(&self) -> &str {
        self.deployments
            .first()
            .map(|d| d.provider.as_str())
            .unwrap_or("openai")
    }
}

/// A wildcard deployment (`model_name: "openai/*"`, `model: "openai/*"`): any requested model
/// matching `prefix*suffix` is served by it, `*` in its `model` replaced by the matched part.
struct Pattern {
    prefix: String,
    suffix: String,
    index: usize,
    entry: ModelEntry,
}

impl Pattern {
    fn capture<'m>(&self, model: &'m str) -> Option<&'m str> {
        if model.len() < self.prefix.len() + self.suffix.len() {
            return None;
        }
        model
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())
    }
}

/// Expanded wildcard groups kept at most this many; past it the cache starts over.
const WILDCARD_CACHE_MAX: usize = 10_000;

/// All model groups, in config order.
#[derive(Default)]
pub struct Router {
    groups: Vec<Arc<ModelGroup>>,
    by_name: HashMap<String, usize>,
    aliases: HashMap<String, String>,
    patterns: Vec<Pattern>,
    /// What building a wildcard deployment needs.
    config: Option<Arc<ProxyConfig>>,
    prices: PriceTable,
    expanded: RwLock<HashMap<String, Arc<ModelGroup>>>,
    /// Every exact deployment, registered with the routing crate.
    table: Option<Arc<RoutingTable>>,
    settings: RouterSettings,
    /// Team deployments (see [`team_scope`]) by team and public name, each group in a table
    /// of its own so that a global group of the same name is never mixed in.
    team_groups: HashMap<(String, String), Arc<ModelGroup>>,
    /// The same deployments by public name across every team (the proxy admin's view).
    team_public: HashMap<String, Arc<ModelGroup>>,
    /// What cooldowns and per-minute limits are judged by, wildcard groups' included.
    clock: TableClock,
    /// Model names every deployment of which is blocked (`model_info.blocked`, set by
    /// `/model/block`): calls to them are refused rather than told the model is unknown.
    blocked: HashSet<String>,
    /// Deployments' counts of calls in flight (`max_parallel_requests`), handed on to the
    /// router built after this one.
    slots: Arc<crate::providers::slots::SlotRegistry>,
}

/// A deployment that belongs to one team: `model_info.team_id` with the
/// `team_public_model_name` its team calls it by (what `/model/new` with a `team_id` writes,
/// as LiteLLM does). Returns `(team_id, public name)`.
pub fn team_scope(entry: &ModelEntry) -> Option<(&str, &str)> {
    let extra = &entry.model_info.extra;
    let team = extra.get("team_id")?.as_str()?;
    let public = extra.get("team_public_model_name")?.as_str()?;
    Some((team, public))
}

/// The system's clock unless the gateway was given another (tests move a manual one).
#[derive(Clone)]
struct TableClock(Arc<dyn Clock>);

impl Default for TableClock {
    fn default() -> Self {
        TableClock(Arc::new(idlehands_clock::SystemClock))
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("groups", &self.groups)
            .field("patterns", &self.patterns.len())
            .finish_non_exhaustive()
    }
}

fn group_of(name: &str, deployments: Vec<Arc<Deployment>>, table: Arc<RoutingTable>) -> ModelGroup {
    let lowest = deployments.iter().map(|d| d.order).min().unwrap_or(0);
    let primary = (0..deployments.len())
        .filter(|i| deployments[*i].order == lowest)
        .collect();
    let mut access_groups: Vec<String> = Vec::new();
    for g in deployments.iter().flat_map(|d| d.access_groups.iter()) {
        if !access_groups.contains(g) {
            access_groups.push(g.clone());
        }
    }
    ModelGroup {
        name: name.to_string(),
        deployments,
        primary,
        access_groups,
        table,
    }
}

impl Router {
    /// Every deployment named `name` is blocked (`/model/block`).
    pub fn is_blocked(&self, name: &str) -> bool {
        self.blocked.contains(name)
    }

    pub fn build(cfg: &ProxyConfig, prices: &PriceTable, clock: Arc<dyn Clock>) -> Self {
        Self::build_after(cfg, prices, clock, None)
    }

    /// [`Router::build`] to replace `previous`: a deployment of the same id goes on counting
    /// the calls `previous`'s copy has in flight against its `max_parallel_requests`.
    pub fn build_after(
        cfg: &ProxyConfig,
        prices: &PriceTable,
        clock: Arc<dyn Clock>,
        previous: Option<&Router>,
    ) -> Self {
        let mut r = Router {
            settings: cfg.routing.clone(),
            clock: TableClock(clock),
            slots: previous.map(|p| p.slots.clone()).unwrap_or_default(),
            ..Router::default()
        };
        let mut grouped: Vec<(String, Vec<usize>)> = Vec::new();
        let mut all = Vec::new();
        let mut by_team: Vec<((String, String), Vec<Deployment>)> = Vec::new();
        // Per model name: whether every deployment seen so far is blocked.
        let mut all_blocked: HashMap<String, bool> = HashMap::new();
        for (i, entry) in cfg.file.model_list.iter().enumerate() {
            let blocked =
                entry.model_info.extra.get("blocked") == Some(&serde_json::Value::Bool(true));
            let name = team_scope(entry).map_or(entry.model_name.as_str(), |(_, public)| public);
            let every = all_blocked.entry(name.to_string()).or_insert(true);
            *every = *every && blocked;
            // A blocked deployment serves nothing (LiteLLM's `/model/block`).
            if blocked {
                continue;
            }
            if let Some((team, public)) = team_scope(entry) {
                if public.contains('*') {
                    tracing::warn!(
                        team_id = team,
                        model = public,
                        "a team's wildcard deployment is not served (team wildcards are not supported)"
                    );
                    continue;
                }
                let mut named = entry.clone();
                named.model_name = public.to_string();
                let mut d = Deployment::build(i, &named, cfg, prices);
                d.parallel = r.slots.adopt(d.parallel.take());
                let key = (team.to_string(), public.to_string());
                match by_team.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, ds)) => ds.push(d),
                    None => by_team.push((key, vec![d])),
                }
                continue;
            }
            if let Some((prefix, suffix)) = entry.model_name.split_once('*') {
                r.patterns.push(Pattern {
                    prefix: prefix.to_string(),
                    suffix: suffix.to_string(),
                    index: i,
                    entry: entry.clone(),
                });
                continue;
            }
            let slot = all.len();
            let mut d = Deployment::build(i, entry, cfg, prices);
            d.parallel = r.slots.adopt(d.parallel.take());
            all.push(d);
            match r.by_name.get(&entry.model_name) {
                Some(idx) => grouped[*idx].1.push(slot),
                None => {
                    r.by_name.insert(entry.model_name.clone(), grouped.len());
                    grouped.push((entry.model_name.clone(), vec![slot]));
                }
            }
        }
        r.blocked = all_blocked
            .into_iter()
            .filter(|(_, all)| *all)
            .map(|(name, _)| name)
            .collect();
        let redis = crate::router_redis::redis_url(&cfg.file.router_settings).and_then(|url| {
            redis::Client::open(url)
                .map_err(|e| tracing::warn!(error = %e, "router_settings: unusable Redis URL; router state stays local"))
                .ok()
        });
        let table = Arc::new(RoutingTable::new(
            all,
            r.settings.clone(),
            redis,
            &r.clock.0,
        ));
        r.groups = grouped
            .into_iter()
            .map(|(name, slots)| {
                let ds = slots
                    .iter()
                    .map(|s| table.deployments[*s].clone())
                    .collect();
                Arc::new(group_of(&name, ds, table.clone()))
            })
            .collect();
        r.table = Some(table);
        let mut across: Vec<(String, Vec<Deployment>)> = Vec::new();
        for ((team, public), ds) in by_team {
            match across.iter_mut().find(|(name, _)| *name == public) {
                Some((_, all)) => all.extend(ds.iter().cloned()),
                None => across.push((public.clone(), ds.clone())),
            }
            let table = Arc::new(RoutingTable::new(ds, r.settings.clone(), None, &r.clock.0));
            let g = group_of(&public, table.deployments.to_vec(), table);
            r.team_groups.insert((team, public), Arc::new(g));
        }
        for (public, ds) in across {
            let table = Arc::new(RoutingTable::new(ds, r.settings.clone(), None, &r.clock.0));
            let g = group_of(&public, table.deployments.to_vec(), table);
            r.team_public.insert(public, Arc::new(g));
        }
        for (alias, target) in &cfg.file.router_settings.model_group_alias {
            let target = match target {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => {
                    o.get("model").and_then(|m| m.as_str()).map(str::to_string)
                }
                _ => None,
            };
            if let Some(t) = target {
                r.aliases.insert(alias.clone(), t);
            }
        }
        if !r.patterns.is_empty() {
            r.config = Some(Arc::new(cfg.clone()));
        }
        // Also for naming the provider of a requested model (key wildcards such as `openai/*`).
        r.prices = prices.clone();
        let live: HashSet<&str> = r
            .deployments()
            .chain(r.team_public.values().flat_map(|g| g.deployments.iter()))
            .map(|d| d.id.as_str())
            .collect();
        r.slots.retain(&live);
        r
    }

    /// Whether `name` is a model group or alias as configured (wildcards aside).
    pub fn has_exact(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.aliases.contains_key(name)
    }

    /// The group serving `name`: an exact model group, an alias, else a wildcard deployment.
    pub fn group(&self, name: &str) -> Option<Arc<ModelGroup>> {
        let exact = self.by_name.get(name).or_else(|| {
            self.aliases
                .get(name)
                .and_then(|target| self.by_name.get(target))
        });
        if let Some(idx) = exact {
            return self.groups.get(*idx).cloned();
        }
        if self.patterns.is_empty() {
            return None;
        }
        if let Some(g) = self.expanded.read().get(name) {
            return Some(g.clone());
        }
        let cfg = self.config.as_ref()?;
        let deployments: Vec<Deployment> = self
            .patterns
            .iter()
            .filter_map(|p| {
                let captured = p.capture(name)?;
                let mut entry = p.entry.clone();
                entry.model_name = name.to_string();
                entry.litellm_params.model = entry.litellm_params.model.replace('*', captured);
                let mut d = Deployment::build(p.index, &entry, cfg, &self.prices);
                d.parallel = self.slots.adopt(d.parallel.take());
                Some(d)
            })
            .collect();
        if deployments.is_empty() {
            return None;
        }
        let table = Arc::new(RoutingTable::new(
            deployments,
            self.settings.clone(),
            None,
            &self.clock.0,
        ));
        let ds = table.deployments.to_vec();
        let g = Arc::new(group_of(name, ds, table));
        let mut cache = self.expanded.write();
        if cache.len() >= WILDCARD_CACHE_MAX {
            cache.clear();
        }
        cache.insert(name.to_string(), g.clone());
        Some(g)
    }

    /// The group a caller's request for `name` goes to, as LiteLLM routes it: a key of a team
    /// reaches its team's own deployments of that name first; then the global groups
    /// ([`Router::group`]); a proxy admin without a team (`across_teams`) last reaches every
    /// team's deployments of that name.
    pub fn group_for(
        &self,
        name: &str,
        team: Option<&str>,
        across_teams: bool,
    ) -> Option<Arc<ModelGroup>> {
        if let Some(team) = team
            && let Some(g) = self.team_groups.get(&(team.to_string(), name.to_string()))
        {
            return Some(g.clone());
        }
        self.group(name).or_else(|| {
            if across_teams && team.is_none() {
                self.team_public.get(name).cloned()
            } else {
                None
            }
        })
    }

    /// The public names of `team`'s own deployments (every team's when `None`), sorted.
    pub fn team_model_names(&self, team: Option<&str>) -> Vec<&str> {
        let mut names: Vec<&str> = match team {
            Some(team) => self
                .team_groups
                .keys()
                .filter(|(t, _)| t == team)
                .map(|(_, n)| n.as_str())
                .collect(),
            None => self.team_public.keys().map(String::as_str).collect(),
        };
        names.sort_unstable();
        names
    }

    /// The provider a bare model name belongs to, as LiteLLM's `get_llm_provider` names it for
    /// a key's wildcard check (`gpt-4o` is `openai`): the price table's provider; `None` for a
    /// name the table does not know (a custom group name).
    pub fn provider_of_name(&self, name: &str) -> Option<String> {
        let price = self.prices.get(name)?;
        let provider = price.provider.as_deref()?;
        // The price map files Google's Vertex models under `vertex_ai-<kind>-models`.
        Some(if provider.starts_with("vertex_ai") {
            "vertex_ai".to_string()
        } else {
            provider.to_string()
        })
    }

    /// Whether some deployment declares `name` in `model_info.access_groups`.
    pub fn is_access_group(&self, name: &str) -> bool {
        self.groups
            .iter()
            .any(|g| g.access_groups.iter().any(|a| a == name))
            || self
                .patterns
                .iter()
                .any(|p| p.entry.model_info.access_groups.iter().any(|a| a == name))
    }

    /// Exact model groups, in config order.
    pub fn groups(&self) -> &[Arc<ModelGroup>] {
        &self.groups
    }

    /// Every configured deployment (wildcards not expanded).
    pub fn deployments(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        self.groups.iter().flat_map(|g| g.deployments.iter())
    }

    /// The routing state of every exact deployment (health, cooldowns, usage), for metrics
    /// and health output; `None` when the model list has no exact deployment.
    pub fn routing(&self) -> Option<&idlehands_routing::Router> {
        self.table.as_ref().map(|t| &t.router)
    }

    /// The effective `router_settings`.
    pub fn settings(&self) -> &RouterSettings {
        &self.settings
    }
}
