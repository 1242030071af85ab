//! Persistence and accounting behind LiteLLM-compatible virtual keys: the database ([`Store`]:
//! SQLite by default, Postgres for `postgres://` URLs), the request-path [`Ledger`] (cached key
//! lookups, model/budget/rate-limit checks, reservations), the group-committing
//! [`SpendWriter`], and the `/key/*` and `/spend/logs` operations with LiteLLM's field names,
//! texts and statuses.
//!
//! A request through the proxy: [`Ledger::authenticate`] -> [`AuthedKey::check_model`] ->
//! [`Ledger::reserve`] -> upstream call -> [`Reservation::settle`] with the spend-log row ->
//! `x-litellm-key-spend` from [`Settled`].

pub mod budget_table;
mod budgets;
pub mod clock;
mod credentials_db;
pub mod customers;
mod customers_db;
pub mod daily_activity;
mod daily_spend;
mod day_group_sums;
mod db;
pub mod duration;
pub mod entities;
pub mod error;
pub mod health_checks;
mod interner;
pub mod key_aliases;
pub mod key_model_budgets;
mod key_model_sums;
pub mod keygen;
mod keys_db;
mod ledger;
mod ledger_budget_table;
mod ledger_customers;
mod ledger_jwt;
mod ledger_key_models;
mod ledger_key_tiers;
mod ledger_orgs;
mod ledger_teams;
mod ledger_users;
pub mod limiter;
pub mod model_metrics;
mod models_db;
pub mod money;
mod tags_db;
pub use credentials_db::CredentialRow;
pub use models_db::ProxyModelRow;
pub use tags_db::TagRow;
mod leases;
mod ledger_route_budgets;
mod redis_limiter;
mod responses_db;
pub mod route_budgets;
pub use responses_db::StoredResponseRow;
pub mod organizations;
mod organizations_db;
mod pair_names;
mod pg_reads;
pub mod spend;
mod spend_db;
pub mod spend_log_pages;
pub mod spend_slices;
mod sqlite_reads;
mod sqlite_rows;
pub mod tag_spend;
pub mod teams;
mod teams_db;
#[cfg(test)]
mod test_postgres;
pub mod types;
pub mod users;
mod users_db;
mod validate;
pub mod writer;

pub use budgets::{Budget, BudgetPatch};
pub use day_group_sums::DayGroupParts;
pub use db::{Backend, Store, StoreOptions};
pub use error::{AccessError, ApiError, BudgetLevel, LimitKind, StoreError};
pub use keys_db::{KeyFacts, UpdateScope};
pub use ledger::{
    AuthedKey, CallModel, Ledger, LedgerConfig, PROXY_BUDGET_USER, ProxyBudget, Reservation,
    Settled,
};
pub use ledger_jwt::JWT_TOKEN_PREFIX;
pub use ledger_route_budgets::RouteRefusal;
pub use limiter::{KeyLimits, Limiter, LiveSpend, LocalLimiter, Ticket};
pub use redis_limiter::{
    HEARTBEAT_EVERY, INSTANCE_TIMEOUT, Reclaimed, RedisLimiter, subscribe_invalidations,
};
pub use route_budgets::{RouteBudget, RouteKind, RouteRates};
pub use spend::{STATUS_FAILURE, STATUS_SUCCESS, SpendAggregate, SpendGroup, SpendLogRow};
pub use spend_db::{BatchItem, DayGroupSpend, KeyModelSpend, ReportGroup};
pub use tag_spend::{TagActivityQuery, TagSeen, TagSpend};
pub use types::*;
pub use writer::{SpendWriter, WriterConfig};
