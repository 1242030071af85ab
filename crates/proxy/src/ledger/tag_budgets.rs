//! The budgets of tags made over the API (`/tag/new`, `/tag/update`): a tag whose named budget
//! sets `max_budget` holds its calls to it as `litellm_settings.tag_budget_config` does (an
//! exact, fleet-shared route budget: the `route:tag:<name>` row), with the budget's
//! `budget_duration` as its window (none: it never resets, as LiteLLM allows); its
//! `rpm_limit`, `tpm_limit` and `max_parallel_requests` are held by the same limiter entity
//! (LiteLLM's 429 `Rate limit exceeded for tag: <name>`). A tag config.yaml budgets keeps
//! config.yaml's budget; the stored one is named in a warning.
//!
//! Every instance follows changes as prices are followed: the instance that writes reloads at
//! once and announces it on the invalidation channel (Redis), and every instance re-reads
//! every few seconds too (the safety net without Redis).

use std::sync::{Arc, Weak};
use std::time::Duration;

use idlehands_store::budget_table::BudgetRow;
use idlehands_store::{Ledger, RouteBudget, RouteRates, Store, StoreError, TagRow};
use tokio::task::JoinHandle;

use crate::state::{App, TagBudgets};

/// The notice an instance sends the fleet when it changed a tag or a named budget.
pub(crate) const NOTICE: &str = "tags_changed";

/// Stored tags and the named budgets they follow: what a reload reads, and what `/tag/info`
/// and `/tag/list` show.
pub(crate) struct TagRows {
    pub tags: Vec<TagRow>,
    pub budgets: Vec<BudgetRow>,
}

impl TagRows {
    /// `tags` with the named budgets they follow, read in one query.
    pub(crate) async fn with_budgets(
        store: &Store,
        tags: Vec<TagRow>,
    ) -> Result<TagRows, StoreError> {
        let mut ids: Vec<String> = tags.iter().filter_map(|t| t.budget_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let budgets = if ids.is_empty() {
            Vec::new()
        } else {
            store.budget_rows(Some(&ids)).await?
        };
        Ok(TagRows { tags, budgets })
    }

    /// The named budget `t` follows, if it follows one.
    pub(crate) fn budget_of(&self, t: &TagRow) -> Option<&BudgetRow> {
        let id = t.budget_id.as_deref()?;
        self.budgets.iter().find(|b| b.budget_id == id)
    }
}

/// Every stored tag with its budget.
pub(crate) async fn read(store: &Store) -> Result<TagRows, StoreError> {
    TagRows::with_budgets(store, store.list_tags().await?).await
}

/// The route budgets `rows` give, leaving out tags config.yaml budgets (`configured`) and
/// tags whose budget sets no `max_budget`; the shadowed names come second.
fn build(rows: &TagRows, configured: &[RouteBudget]) -> (Vec<RouteBudget>, Vec<String>) {
    let mut out = Vec::new();
    let mut shadowed = Vec::new();
    for t in &rows.tags {
        let Some(b) = rows.budget_of(t) else {
            continue;
        };
        let l = &b.limits;
        let rates = RouteRates {
            rpm_limit: l.rpm_limit,
            tpm_limit: l.tpm_limit,
            max_parallel_requests: l.max_parallel_requests,
        };
        if l.max_budget.is_none() && rates.is_empty() {
            continue;
        }
        if configured.iter().any(|c| c.name == t.tag_name) {
            shadowed.push(t.tag_name.clone());
            continue;
        }
        out.push(RouteBudget::tag(
            t.tag_name.clone(),
            l.max_budget,
            l.budget_duration.clone(),
            rates,
        ));
    }
    (out, shadowed)
}

/// Puts what `rows` give in force on `app`. A warning names the stored tags config.yaml
/// overrides at start-up, after a change made here, and when the set changed (not at every
/// periodic reload).
fn apply(app: &App, rows: &TagRows, warn: bool) {
    let (budgets, shadowed) = build(rows, &app.models.config.route_budgets.tags);
    let budgets: TagBudgets = budgets.into_iter().map(|b| (b.name.clone(), b)).collect();
    let same = **app.tag_budgets.load() == budgets;
    if same && !warn {
        return;
    }
    for name in &shadowed {
        tracing::warn!(
            tag = name.as_str(),
            "the tag's stored budget is not applied: litellm_settings.tag_budget_config budgets this tag"
        );
    }
    if !same {
        app.tag_budgets.store(Arc::new(budgets));
    }
}

/// Re-reads the stored tags and puts their budgets in force here.
async fn reload(app: &App, store: &Store, warn: bool) -> Result<(), StoreError> {
    let rows = read(store).await?;
    apply(app, &rows, warn);
    Ok(())
}

/// After a change made here: in force here at once, then announced to the fleet. A failed
/// re-read is retried by the periodic reload.
pub(crate) async fn changed(app: &App, ledger: &Ledger) {
    if let Err(e) = reload(app, ledger.store(), true).await {
        tracing::warn!(error = %e, "tags changed but could not be re-read; the next periodic reload applies them");
    }
    ledger.announce_notice(NOTICE);
}

/// Puts `initial` (read when the store opened) in force, then follows the fleet's changes:
/// on another instance's notice, and every `every`.
pub(crate) fn follow(
    app: &Arc<App>,
    ledger: &Ledger,
    initial: &TagRows,
    every: Duration,
) -> JoinHandle<()> {
    apply(app, initial, true);
    let weak: Weak<App> = Arc::downgrade(app);
    let store = ledger.store().clone();
    ledger.on_notice(NOTICE, {
        let (weak, store) = (weak.clone(), store.clone());
        move || {
            let (Some(app), Ok(handle)) = (weak.upgrade(), tokio::runtime::Handle::try_current())
            else {
                return;
            };
            let store = store.clone();
            handle.spawn(async move {
                if let Err(e) = reload(&app, &store, false).await {
                    tracing::warn!(error = %e, "another instance changed tags; they could not be re-read here yet");
                }
            });
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(app) = weak.upgrade() else { return };
            if let Err(e) = reload(&app, &store, false).await {
                tracing::warn!(error = %e, "stored tags could not be re-read; their budgets stay as they were");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use idlehands_store::{Budget, RouteKind};

    fn tag(name: &str, budget: Option<&str>) -> TagRow {
        TagRow {
            tag_name: name.into(),
            description: None,
            models: vec![],
            model_info: "{}".into(),
            budget_id: budget.map(str::to_string),
            created_at: Utc::now(),
            created_by: None,
            updated_at: Utc::now(),
        }
    }

    fn budget(id: &str, max: Option<i64>, duration: Option<&str>) -> BudgetRow {
        BudgetRow {
            budget_id: id.into(),
            limits: Budget {
                max_budget: max,
                budget_duration: duration.map(str::to_string),
                ..Budget::default()
            },
            created_at: Utc::now(),
            created_by: None,
            updated_at: Utc::now(),
            updated_by: None,
        }
    }

    #[test]
    fn tags_with_a_max_budget_are_held_unless_config_budgets_them() {
        let rows = TagRows {
            tags: vec![
                tag("a", Some("b1")),
                tag("b", Some("b2")),
                tag("c", None),
                tag("d", Some("b1")),
                tag("e", Some("gone")),
                tag("f", Some("b3")),
            ],
            budgets: vec![
                budget("b1", Some(5), Some("1d")),
                budget("b2", None, Some("1d")),
                BudgetRow {
                    limits: Budget {
                        rpm_limit: Some(2),
                        ..Budget::default()
                    },
                    ..budget("b3", None, None)
                },
            ],
        };
        let configured = vec![RouteBudget::new(RouteKind::Tag, "d".into(), 1, None)];
        let (held, shadowed) = build(&rows, &configured);
        let rpm = RouteRates {
            rpm_limit: Some(2),
            ..RouteRates::default()
        };
        assert_eq!(
            held,
            vec![
                RouteBudget::tag(
                    "a".into(),
                    Some(5),
                    Some("1d".into()),
                    RouteRates::default()
                ),
                RouteBudget::tag("f".into(), None, None, rpm),
            ]
        );
        assert_eq!(shadowed, vec!["d".to_string()]);
    }
}
