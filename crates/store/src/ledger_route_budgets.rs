//! The ledger's side of route budgets (`crate::route_budgets`): each one's row read (or made)
//! once and kept while its configuration stays the same, a call's hold on the budgets of the
//! deployment it is tried on, and what `/provider/budgets` shows.

use chrono::{DateTime, Utc};

use crate::budgets::Budget;
use crate::error::{AccessError, StoreError};
use crate::ledger::{Ledger, Reservation};
use crate::route_budgets::RouteBudget;

/// Why a call could not be held on a deployment's route budgets.
#[derive(Debug, Clone)]
pub enum RouteRefusal {
    /// `budgets[index]` has no room: its settled spend and limit, nano-USD.
    Spent {
        index: usize,
        spend_nanos: i64,
        max_budget_nanos: i64,
    },
    /// A budget's rate limit (a stored tag's `rpm_limit`, `tpm_limit` or
    /// `max_parallel_requests`) has no room: the call is refused with LiteLLM's 429
    /// (`Rate limit exceeded for tag: <name>. ...`, with `retry-after`).
    Limited(AccessError),
    /// The budget could not be read or checked (the database or a fleet's Redis is down).
    Unavailable,
}

impl Ledger {
    /// The route budget as the limiter enforces it; the first use creates its row.
    async fn route_budget(&self, want: &RouteBudget) -> Result<Budget, AccessError> {
        let entity = want.entity();
        if let Some((configured, b)) = self.routes_cache().read().get(entity)
            && configured == want
        {
            return Ok(b.clone());
        }
        let now = self.config().clock.now();
        let b = match self.store().ensure_route_budget(want, now).await {
            Ok(b) => want.with_rates(b),
            Err(e) => {
                tracing::warn!(error = %e, budget = %entity, "a route budget could not be read");
                return Err(AccessError::Unavailable);
            }
        };
        // A changed limit or window reaches counters that already exist.
        self.limiter().reconfigure(&b.key_limits(), false);
        self.routes_cache()
            .write()
            .insert(entity.to_owned(), (want.clone(), b.clone()));
        Ok(b)
    }

    /// Holds the call's estimate on each of `budgets` (a deployment's and the call's tags'),
    /// checked and reserved in one step each like the key's budget; the first without room
    /// refuses, and what was held for this deployment is given back. The holds settle with
    /// the reservation, whose row then names them.
    pub async fn hold_routes(
        &self,
        reservation: &mut Reservation,
        budgets: &[&RouteBudget],
        estimate_nanos: i64,
        estimate_tokens: u64,
    ) -> Result<(), RouteRefusal> {
        for (index, want) in budgets.iter().enumerate() {
            let held = match self.route_budget(want).await {
                Ok(b) => self
                    .limiter()
                    .admit(&b.key_limits(), estimate_nanos, estimate_tokens)
                    .await
                    .map(|ticket| (ticket, b.entity)),
                Err(e) => Err(e),
            };
            match held {
                Ok((ticket, entity)) => {
                    reservation.routes.push(ticket);
                    reservation.route_entities.push(entity);
                }
                Err(e) => {
                    self.release_routes(reservation);
                    return Err(match e {
                        AccessError::BudgetExceeded {
                            spend_nanos,
                            max_budget_nanos,
                            ..
                        } => {
                            let now = self.config().clock.now();
                            self.routes_refused()
                                .write()
                                .insert(want.entity().to_owned(), (now, want.max_budget));
                            RouteRefusal::Spent {
                                index,
                                spend_nanos,
                                max_budget_nanos,
                            }
                        }
                        AccessError::RateLimited {
                            kind,
                            limit,
                            reset_at,
                            retry_after_secs,
                            ..
                        } => RouteRefusal::Limited(AccessError::RateLimited {
                            scope: want.kind.as_str(),
                            key_hash: want.name.clone(),
                            kind,
                            limit,
                            reset_at,
                            retry_after_secs,
                        }),
                        _ => RouteRefusal::Unavailable,
                    });
                }
            }
        }
        Ok(())
    }

    /// Gives back the route holds of an attempt that failed: the next attempt (another
    /// deployment, maybe another provider) holds its own.
    pub fn release_routes(&self, reservation: &mut Reservation) {
        for ticket in std::mem::take(&mut reservation.routes) {
            self.limiter().release(ticket);
        }
        reservation.route_entities.clear();
    }

    /// Whether the budget refused a hold here within the last second: routing's first look
    /// passes its deployments over without asking again (as LiteLLM reads a copy of the
    /// spend synced once a second); after that the next call's hold asks, and finds a new
    /// window or another instance's view.
    pub fn route_refused_lately(&self, want: &RouteBudget) -> bool {
        let entity = want.entity();
        let Some((at, limit)) = self.routes_refused().read().get(entity).copied() else {
            return false;
        };
        // A changed limit (a tag's budget raised) is asked at once.
        let lately = limit == want.max_budget
            && self.config().clock.now() - at < chrono::Duration::seconds(1);
        if !lately {
            self.routes_refused().write().remove(entity);
        }
        lately
    }

    /// The budget's spend as far as this instance knows, nano-USD (for the metric and the
    /// refusal's words); `None` before its first call here.
    pub fn route_spend(&self, want: &RouteBudget) -> Option<i64> {
        self.limiter().spend(want.entity())
    }

    /// The spend of the budget's open window (what the limiter counts, committed or not: a
    /// fleet's shared count; else the stored row's) and when the window ends.
    pub async fn route_usage(
        &self,
        want: &RouteBudget,
    ) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        // A read unless the row is still to be made: dashboards poll this.
        let row = match self.store().get_budget(want.entity()).await? {
            Some(row) => row,
            None => {
                let now = self.config().clock.now();
                self.store().ensure_route_budget(want, now).await?
            }
        };
        let spend = match self.limiter().live(&row.entity).await {
            Some(live) => live.spend,
            None => row.spend,
        };
        Ok((spend, row.budget_reset_at))
    }
}
