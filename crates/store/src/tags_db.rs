//! Tags made over the API (`/tag/new`), LiteLLM's tag table: a description, the models the
//! tag was given to, and the named budget (`idlehands_budget_table`) whose limits the tag's
//! calls are held to. The tag's spend is not kept here: it is the sum of the spend rows that
//! carry the tag (its budget's window is the `route:tag:<name>` row of `idlehands_budgets`).

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::Store;
use crate::budget_table::{budget_not_found, locked_select};
use crate::db::{BeginWrite, Db, from_ms, on_db, to_ms};
use crate::error::StoreError;

/// One stored tag.
#[derive(Debug, Clone, PartialEq)]
pub struct TagRow {
    pub tag_name: String,
    pub description: Option<String>,
    /// Model ids or model names, as given.
    pub models: Vec<String>,
    /// JSON object text: model id -> model name, for the ids among `models` when it was set.
    pub model_info: String,
    pub budget_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "tag_name, description, models, model_info, budget_id, created_at, created_by, updated_at";

fn row_of<R: Row>(r: &R) -> Result<TagRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'q> String: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> Option<String>: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> i64: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
{
    let models: String = r.try_get("models")?;
    Ok(TagRow {
        tag_name: r.try_get("tag_name")?,
        description: r.try_get("description")?,
        models: serde_json::from_str(&models).map_err(|e| sqlx::Error::ColumnDecode {
            index: "models".to_string(),
            source: Box::new(e),
        })?,
        model_info: r.try_get("model_info")?,
        budget_id: r.try_get("budget_id")?,
        created_at: from_ms(r.try_get("created_at")?),
        created_by: r.try_get("created_by")?,
        updated_at: from_ms(r.try_get("updated_at")?),
    })
}

fn models_text(models: &[String]) -> String {
    serde_json::Value::from(models.to_vec()).to_string()
}

/// On Postgres, the named budget a tag is to follow is read `FOR SHARE` in the tag's write:
/// a `/budget/delete` then either sees the tag or finds no budget left to delete first.
fn budget_check(db: &Db) -> String {
    locked_select(db, "FOR SHARE")
}

impl Store {
    /// Adds `row`; `false` (nothing written) when the name is taken. The budget it names must
    /// exist (404 otherwise).
    pub async fn insert_tag(&self, row: &TagRow) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO idlehands_tags ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (tag_name) DO NOTHING"
        );
        let budget = budget_check(&self.db);
        let n = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            if let Some(id) = &row.budget_id
                && sqlx::query(&budget).bind(id).fetch_optional(&mut *tx).await?.is_none()
            {
                return Err(budget_not_found(id));
            }
            let n = sqlx::query(&sql)
                .bind(&row.tag_name)
                .bind(&row.description)
                .bind(models_text(&row.models))
                .bind(&row.model_info)
                .bind(&row.budget_id)
                .bind(to_ms(row.created_at))
                .bind(&row.created_by)
                .bind(to_ms(row.updated_at))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            n
        });
        Ok(n == 1)
    }

    /// Every stored tag, by name.
    pub async fn list_tags(&self) -> Result<Vec<TagRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM idlehands_tags ORDER BY tag_name");
        let rows = on_db!(&self.db, pool => {
            sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(row_of)
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// The stored tag `name`.
    pub async fn get_tag(&self, name: &str) -> Result<Option<TagRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM idlehands_tags WHERE tag_name = $1");
        let row = on_db!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(name)
                .fetch_optional(pool)
                .await?
                .map(|r| row_of(&r))
                .transpose()?
        });
        Ok(row)
    }

    /// Replaces the stored tag's description, models, model info and budget with what
    /// `change` makes of the current row, in one transaction; the budget it then names must
    /// exist. `None` when there is no such tag; the row as written otherwise.
    pub async fn update_tag<F>(&self, name: &str, change: F) -> Result<Option<TagRow>, StoreError>
    where
        F: FnOnce(&TagRow) -> Result<TagRow, StoreError> + Send,
    {
        let select = format!("SELECT {COLUMNS} FROM idlehands_tags WHERE tag_name = $1");
        let select = if matches!(self.db, Db::Postgres(_)) {
            format!("{select} FOR UPDATE")
        } else {
            select
        };
        let budget = budget_check(&self.db);
        // As stored: whole milliseconds.
        let now = from_ms(to_ms(Utc::now()));
        let written = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let current = sqlx::query(&select)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| row_of(&r))
                .transpose()?;
            let Some(current) = current else {
                return Ok(None);
            };
            let mut next = change(&current)?;
            next.tag_name = current.tag_name.clone();
            next.created_at = current.created_at;
            next.created_by = current.created_by.clone();
            next.updated_at = now;
            if let Some(id) = &next.budget_id
                && sqlx::query(&budget).bind(id).fetch_optional(&mut *tx).await?.is_none()
            {
                return Err(budget_not_found(id));
            }
            sqlx::query(
                "UPDATE idlehands_tags SET description = $2, models = $3, model_info = $4, \
                 budget_id = $5, updated_at = $6 WHERE tag_name = $1",
            )
            .bind(&next.tag_name)
            .bind(&next.description)
            .bind(models_text(&next.models))
            .bind(&next.model_info)
            .bind(&next.budget_id)
            .bind(to_ms(next.updated_at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            next
        });
        Ok(Some(written))
    }

    /// Deletes the stored tag `name`; the row it was, if there was one.
    pub async fn delete_tag(&self, name: &str) -> Result<Option<TagRow>, StoreError> {
        let sql = format!("DELETE FROM idlehands_tags WHERE tag_name = $1 RETURNING {COLUMNS}");
        let row = on_db!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(name)
                .fetch_optional(pool)
                .await?
                .map(|r| row_of(&r))
                .transpose()?
        });
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(name: &str, budget: Option<&str>) -> TagRow {
        let now = Utc::now();
        TagRow {
            tag_name: name.to_string(),
            description: Some("d".into()),
            models: vec!["m1".into(), "id-2".into()],
            model_info: r#"{"id-2":"m2"}"#.into(),
            budget_id: budget.map(str::to_string),
            created_at: now,
            created_by: Some("admin".into()),
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn tags_are_kept_changed_and_deleted_and_name_only_budgets_that_exist() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db").display().to_string())
            .await
            .unwrap();
        assert!(store.insert_tag(&tag("a", None)).await.unwrap());
        assert!(!store.insert_tag(&tag("a", None)).await.unwrap());
        let missing = store.insert_tag(&tag("b", Some("nope"))).await.unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
        assert!(store.get_tag("b").await.unwrap().is_none());
        let got = store.get_tag("a").await.unwrap().unwrap();
        assert_eq!(got.models, vec!["m1".to_string(), "id-2".to_string()]);
        let changed = store
            .update_tag("a", |t| {
                Ok(TagRow {
                    description: None,
                    models: vec![],
                    ..t.clone()
                })
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(changed.description, None);
        assert!(changed.models.is_empty());
        assert_eq!(changed.created_by.as_deref(), Some("admin"));
        assert!(
            store
                .update_tag("a", |t| Ok(TagRow {
                    budget_id: Some("nope".into()),
                    ..t.clone()
                }))
                .await
                .is_err()
        );
        assert_eq!(store.list_tags().await.unwrap(), vec![changed.clone()]);
        assert!(
            store
                .update_tag("zz", |t| Ok(t.clone()))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.delete_tag("a").await.unwrap(), Some(changed));
        assert!(store.delete_tag("a").await.unwrap().is_none());
    }
}
