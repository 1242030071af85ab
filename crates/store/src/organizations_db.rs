//! Organization rows in the database; their budgets are `org:ID` rows of `idlehands_budgets`.

use chrono::Utc;
use sqlx::Row;

use crate::budget_table::{follow_current, locked_select};
use crate::budgets::{Budget, put_budget, read_budget};
use crate::db::{BeginWrite, Db, Store, from_ms, json_text, on_db, to_ms};
use crate::entities;
use crate::error::StoreError;
use crate::organizations::OrgRecord;

const ORG_COLS: &str = "organization_id, organization_alias, models, metadata, members, created_at, created_by, updated_at, budget_id";

fn json_col<T: serde::de::DeserializeOwned + Default>(text: String) -> T {
    serde_json::from_str(&text).unwrap_or_default()
}

macro_rules! org_from_row {
    ($row:expr, $budget:expr) => {{
        let row = $row;
        let budget: Budget = $budget;
        OrgRecord {
            organization_id: row.try_get("organization_id")?,
            organization_alias: row.try_get("organization_alias")?,
            models: json_col(row.try_get("models")?),
            metadata: json_col(row.try_get("metadata")?),
            members: json_col(row.try_get("members")?),
            spend: budget.spend,
            litellm_budget_table: budget,
            budget_id: row.try_get("budget_id")?,
            created_at: from_ms(row.try_get("created_at")?),
            created_by: row.try_get("created_by")?,
            updated_at: from_ms(row.try_get("updated_at")?),
        }
    }};
}

pub(crate) fn org_not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        message: format!("Organization not found for organization_id={id}"),
        param: Some("organization_id"),
    }
}

impl Store {
    /// Inserts the organization; a followed budget's limits are taken as they are now.
    pub(crate) async fn insert_org(&self, o: &mut OrgRecord) -> Result<(), StoreError> {
        let named = locked_select(&self.db, "FOR SHARE");
        let insert = format!(
            "INSERT INTO idlehands_organizations ({ORG_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        let now = to_ms(Utc::now());
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let taken: Option<String> = sqlx::query_scalar(
                "SELECT organization_id FROM idlehands_organizations WHERE organization_id = $1",
            )
            .bind(&o.organization_id)
            .fetch_optional(&mut *tx)
            .await?;
            if taken.is_some() {
                return Err(StoreError::bad_request(
                    format!("Organization id = {} already exists. Please use a different organization id.", o.organization_id),
                    "organization_id",
                ));
            }
            sqlx::query(&insert)
                .bind(&o.organization_id)
                .bind(o.organization_alias.clone())
                .bind(json_text(&o.models))
                .bind(json_text(&o.metadata))
                .bind(json_text(&o.members))
                .bind(to_ms(o.created_at))
                .bind(o.created_by.clone())
                .bind(to_ms(o.updated_at))
                .bind(o.budget_id.clone())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM idlehands_budgets WHERE entity = $1")
                .bind(&o.litellm_budget_table.entity)
                .execute(&mut *tx)
                .await?;
            follow_current!(tx, &named, o.budget_id.as_deref(), &mut o.litellm_budget_table, o.updated_at);
            put_budget!(tx, &o.litellm_budget_table, now);
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn get_org(&self, id: &str) -> Result<Option<OrgRecord>, StoreError> {
        let sql =
            format!("SELECT {ORG_COLS} FROM idlehands_organizations WHERE organization_id = $1");
        let entity = entities::org(id);
        let o = on_db!(&self.db, pool => {
            match sqlx::query(&sql).bind(id).fetch_optional(pool).await? {
                Some(row) => {
                    let budget = read_budget!(pool, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
                    Some(org_from_row!(&row, budget))
                }
                None => None,
            }
        });
        Ok(o)
    }

    pub(crate) async fn list_orgs(&self) -> Result<Vec<OrgRecord>, StoreError> {
        let sql = format!(
            "SELECT {ORG_COLS} FROM idlehands_organizations ORDER BY created_at, organization_id"
        );
        let out = on_db!(&self.db, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get("organization_id")?;
                let entity = entities::org(&id);
                let budget = read_budget!(pool, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
                out.push(org_from_row!(row, budget));
            }
            out
        });
        Ok(out)
    }

    /// Reads the organization, lets `change` edit it (seeing the teams in it: their
    /// `(max_budget, models)`), writes it back; one transaction.
    pub(crate) async fn update_org_with<F>(
        &self,
        id: &str,
        change: F,
    ) -> Result<OrgRecord, StoreError>
    where
        F: FnOnce(&mut OrgRecord, &[(String, Option<i64>, Vec<String>)]) -> Result<(), StoreError>,
    {
        let select = format!(
            "SELECT {ORG_COLS} FROM idlehands_organizations WHERE organization_id = $1{}",
            if matches!(self.db, Db::Postgres(_)) {
                " FOR UPDATE"
            } else {
                ""
            }
        );
        let entity = entities::org(id);
        let named = locked_select(&self.db, "FOR SHARE");
        let now = to_ms(Utc::now());
        let o = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let Some(row) = sqlx::query(&select).bind(id).fetch_optional(&mut *tx).await? else {
                return Err(org_not_found(id));
            };
            let budget = read_budget!(&mut *tx, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
            let mut o = org_from_row!(&row, budget);
            let rows = sqlx::query(
                "SELECT t.team_id AS team_id, t.models AS models, b.max_budget AS max_budget \
                 FROM idlehands_teams t LEFT JOIN idlehands_budgets b ON b.entity = 'team:' || t.team_id \
                 WHERE t.organization_id = $1",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let mut teams = Vec::with_capacity(rows.len());
            for r in &rows {
                teams.push((r.try_get("team_id")?, r.try_get("max_budget")?, json_col(r.try_get("models")?)));
            }
            change(&mut o, &teams)?;
            follow_current!(tx, &named, o.budget_id.as_deref(), &mut o.litellm_budget_table, o.updated_at);
            sqlx::query(
                "UPDATE idlehands_organizations SET organization_alias = $2, models = $3, \
                 metadata = $4, members = $5, updated_at = $6, budget_id = $7 WHERE organization_id = $1",
            )
            .bind(id)
            .bind(o.organization_alias.clone())
            .bind(json_text(&o.models))
            .bind(json_text(&o.metadata))
            .bind(json_text(&o.members))
            .bind(to_ms(o.updated_at))
            .bind(o.budget_id.clone())
            .execute(&mut *tx)
            .await?;
            put_budget!(tx, &o.litellm_budget_table, now);
            let row = sqlx::query(&select).bind(id).fetch_one(&mut *tx).await?;
            let budget = read_budget!(&mut *tx, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
            let o = org_from_row!(&row, budget);
            tx.commit().await?;
            o
        });
        Ok(o)
    }

    /// Deletes the organizations and their budgets; all or nothing. An organization that
    /// still has teams is refused (400): its teams would point at nothing.
    pub(crate) async fn delete_orgs(&self, ids: &[String]) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            for id in ids {
                let teams: Vec<String> = sqlx::query_scalar(
                    "SELECT team_id FROM idlehands_teams WHERE organization_id = $1 ORDER BY team_id",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                if !teams.is_empty() {
                    return Err(StoreError::bad_request(
                        format!("Organization={id} still has teams ({}): delete them or move them to another organization first", teams.join(", ")),
                        "organization_ids",
                    ));
                }
                let gone = sqlx::query("DELETE FROM idlehands_organizations WHERE organization_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if gone.rows_affected() == 0 {
                    return Err(StoreError::NotFound {
                        message: format!("Organization={id} not found"),
                        param: Some("organization_ids"),
                    });
                }
                sqlx::query("DELETE FROM idlehands_budgets WHERE entity = $1")
                    .bind(entities::org(id))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
