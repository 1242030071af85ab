//! Budgets on routes, LiteLLM's provider budget routing: a provider's
//! (`router_settings.provider_budget_config`), a deployment's (`litellm_params.max_budget`
//! with `budget_duration`) and a request tag's (`litellm_settings.tag_budget_config`). A spent
//! one takes its deployments out of routing (a tag's: every deployment, for calls carrying the
//! tag) until its window rolls over.
//!
//! Each is an entity of `idlehands_budgets` (`route:<kind>:<name>`), held and charged like the
//! other levels: its spend is the sum of the rows that named it, kept across restarts and
//! shared by a fleet through the limiter (LiteLLM keeps it in memory, synced to Redis once a
//! second, and starts again from zero without Redis).

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::budgets::{Budget, read_budget};
use crate::db::{BeginWrite, to_ms};
use crate::duration::LlmDuration;
use crate::error::StoreError;
use crate::spend_db::text;

/// What a route budget is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Provider,
    Deployment,
    Tag,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Provider => "provider",
            RouteKind::Deployment => "deployment",
            RouteKind::Tag => "tag",
        }
    }
}

/// A stored tag's rate limits (its named budget's `rpm_limit`, `tpm_limit`,
/// `max_parallel_requests`), held with its budget: every call carrying the tag counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RouteRates {
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub max_parallel_requests: Option<i64>,
}

impl RouteRates {
    pub fn is_empty(&self) -> bool {
        *self == RouteRates::default()
    }
}

/// One configured route budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteBudget {
    pub kind: RouteKind,
    /// The provider (`openai`), the deployment's id, or the tag.
    pub name: String,
    /// Nano-USD; `None` for a stored tag that has rate limits alone.
    pub max_budget: Option<i64>,
    /// A stored tag's rate limits (none for the others).
    pub rates: RouteRates,
    /// A stored tag's (`/tag/new`), refused in LiteLLM's words for those.
    pub stored: bool,
    /// The window (`1d`, `30d`, `1mo`...), already checked to parse; `None` for a budget that
    /// never resets (a stored tag's budget without `budget_duration`, as LiteLLM allows).
    pub budget_duration: Option<String>,
    /// Its name in `idlehands_budgets` and the limiter, made once: routing asks for it at
    /// every pick.
    entity: String,
}

impl RouteBudget {
    pub fn new(
        kind: RouteKind,
        name: String,
        max_budget: i64,
        budget_duration: Option<String>,
    ) -> Self {
        let entity = format!("route:{}:{}", kind.as_str(), text(&name));
        RouteBudget {
            kind,
            name,
            max_budget: Some(max_budget),
            budget_duration,
            rates: RouteRates::default(),
            stored: false,
            entity,
        }
    }

    /// A stored tag's budget and rate limits.
    pub fn tag(
        name: String,
        max_budget: Option<i64>,
        budget_duration: Option<String>,
        rates: RouteRates,
    ) -> Self {
        RouteBudget {
            max_budget,
            rates,
            stored: true,
            ..RouteBudget::new(RouteKind::Tag, name, 0, budget_duration)
        }
    }

    /// The limiter's view of the budget: its row with the rate limits set.
    pub(crate) fn with_rates(&self, mut row: Budget) -> Budget {
        row.rpm_limit = self.rates.rpm_limit;
        row.tpm_limit = self.rates.tpm_limit;
        row.max_parallel_requests = self.rates.max_parallel_requests;
        row
    }

    /// Its name in `idlehands_budgets` and the limiter.
    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// The budget as configured: a fresh window from `now`, nothing spent.
    pub(crate) fn fresh(&self, now: DateTime<Utc>) -> Budget {
        Budget {
            entity: self.entity.clone(),
            max_budget: self.max_budget,
            budget_duration: self.budget_duration.clone(),
            budget_reset_at: self
                .budget_duration
                .as_deref()
                .and_then(LlmDuration::parse)
                .map(|d| d.next_reset(now)),
            ..Budget::default()
        }
    }
}

impl crate::db::Store {
    /// The route budget's row as it is to be enforced: created with a fresh window the first
    /// time, its limit brought in line with the configuration, its window restarted only when
    /// the window's length changed (a restart keeps the window and its spend).
    pub async fn ensure_route_budget(
        &self,
        want: &RouteBudget,
        now: DateTime<Utc>,
    ) -> Result<Budget, StoreError> {
        let entity = want.entity();
        let fresh = want.fresh(now);
        let out = crate::db::on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let existing = read_budget!(&mut *tx, entity);
            let out = match existing {
                Some(mut row) => {
                    let same_window = row.budget_duration == want.budget_duration
                        && (want.budget_duration.is_none() || row.budget_reset_at.is_some());
                    if row.max_budget != want.max_budget || !same_window {
                        row.max_budget = want.max_budget;
                        if !same_window {
                            row.budget_duration = fresh.budget_duration.clone();
                            row.budget_reset_at = fresh.budget_reset_at;
                        }
                        sqlx::query(
                            "UPDATE idlehands_budgets SET max_budget = $2, budget_duration = $3, \
                             budget_reset_at = $4, updated_at = $5 WHERE entity = $1",
                        )
                        .bind(entity)
                        .bind(row.max_budget)
                        .bind(row.budget_duration.clone())
                        .bind(row.budget_reset_at.map(to_ms))
                        .bind(to_ms(now))
                        .execute(&mut *tx)
                        .await?;
                    }
                    row
                }
                None => {
                    // Another instance (or call) may be making it at the same moment: the
                    // first one's row is the one kept.
                    sqlx::query(
                        "INSERT INTO idlehands_budgets (entity, spend, max_budget, \
                         budget_duration, budget_reset_at, updated_at) \
                         VALUES ($1, 0, $2, $3, $4, $5) ON CONFLICT (entity) DO NOTHING",
                    )
                    .bind(entity)
                    .bind(fresh.max_budget)
                    .bind(fresh.budget_duration.clone())
                    .bind(fresh.budget_reset_at.map(to_ms))
                    .bind(to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                    read_budget!(&mut *tx, entity).unwrap_or(fresh)
                }
            };
            tx.commit().await?;
            out
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_name_the_kind_and_never_collide_with_keys() {
        let b = RouteBudget::new(RouteKind::Provider, "openai".into(), 1, Some("1d".into()));
        assert_eq!(b.entity(), "route:provider:openai");
        assert!(crate::entities::is_entity(b.entity()));
        let tag = RouteBudget::new(RouteKind::Tag, "a\0b".into(), 1, None);
        assert_eq!(tag.entity(), "route:tag:ab");
        let now = Utc::now();
        let fresh = b.fresh(now);
        assert_eq!(fresh.max_budget, Some(1));
        assert!(fresh.budget_reset_at.is_some_and(|t| t > now));
        let lifetime = tag.fresh(now);
        assert_eq!(
            (lifetime.budget_duration, lifetime.budget_reset_at),
            (None, None)
        );
    }
}
