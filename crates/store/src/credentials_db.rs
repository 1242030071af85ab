//! Credentials added over the API (`POST /credentials`), LiteLLM's credentials table. The store
//! keeps JSON text as given; the gateway owns its meaning (and seals secret values before they
//! get here), as with stored deployments.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::Store;
use crate::db::{BeginWrite, from_ms, on_db, to_ms};
use crate::error::StoreError;

/// One stored credential.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialRow {
    pub credential_name: String,
    pub display_name: Option<String>,
    /// JSON object text, secrets sealed.
    pub credential_values: String,
    /// JSON object text.
    pub credential_info: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

const COLUMNS: &str = "credential_name, display_name, credential_values, credential_info, \
                       created_at, created_by, updated_at, updated_by";

fn row_of<R: Row>(r: &R) -> Result<CredentialRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'q> String: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> Option<String>: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> i64: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
{
    Ok(CredentialRow {
        credential_name: r.try_get("credential_name")?,
        display_name: r.try_get("display_name")?,
        credential_values: r.try_get("credential_values")?,
        credential_info: r.try_get("credential_info")?,
        created_at: from_ms(r.try_get("created_at")?),
        created_by: r.try_get("created_by")?,
        updated_at: from_ms(r.try_get("updated_at")?),
        updated_by: r.try_get("updated_by")?,
    })
}

/// The credential's name by name, read in a write transaction; on Postgres the row stays
/// locked (`lock`: `FOR SHARE` for a deployment write naming it, `FOR UPDATE` for its delete)
/// until the transaction ends. SQLite's writers take turns already (`BEGIN IMMEDIATE`).
pub(crate) fn locked_credential(db: &crate::db::Db, lock: &str) -> String {
    let lock = if matches!(db, crate::db::Db::Postgres(_)) {
        lock
    } else {
        ""
    };
    format!("SELECT credential_name FROM idlehands_credentials WHERE credential_name = $1 {lock}")
}

impl Store {
    /// Adds `row`; `false` (nothing written) when the name is taken.
    pub async fn insert_credential(&self, row: &CredentialRow) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO idlehands_credentials ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (credential_name) DO NOTHING"
        );
        let n = on_db!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(&row.credential_name)
                .bind(&row.display_name)
                .bind(&row.credential_values)
                .bind(&row.credential_info)
                .bind(to_ms(row.created_at))
                .bind(&row.created_by)
                .bind(to_ms(row.updated_at))
                .bind(&row.updated_by)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Every stored credential, by name.
    pub async fn list_credentials(&self) -> Result<Vec<CredentialRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM idlehands_credentials ORDER BY credential_name");
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

    /// Replaces the stored credential's display name, values and info with what `change` makes
    /// of the current row, in one transaction (two concurrent edits never lose one another's
    /// change). `None` when there is no such row; the row as written otherwise.
    pub async fn update_credential<F>(
        &self,
        name: &str,
        updated_by: Option<&str>,
        change: F,
    ) -> Result<Option<CredentialRow>, StoreError>
    where
        F: FnOnce(&CredentialRow) -> Result<CredentialRow, StoreError> + Send,
    {
        let select =
            format!("SELECT {COLUMNS} FROM idlehands_credentials WHERE credential_name = $1");
        let select = if matches!(self.db, crate::db::Db::Postgres(_)) {
            format!("{select} FOR UPDATE")
        } else {
            select
        };
        let now = Utc::now();
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
            next.credential_name = current.credential_name.clone();
            next.created_at = current.created_at;
            next.created_by = current.created_by.clone();
            next.updated_at = now;
            next.updated_by = updated_by.map(str::to_string);
            sqlx::query(
                "UPDATE idlehands_credentials SET display_name = $2, credential_values = $3, \
                 credential_info = $4, updated_at = $5, updated_by = $6 WHERE credential_name = $1",
            )
            .bind(&next.credential_name)
            .bind(&next.display_name)
            .bind(&next.credential_values)
            .bind(&next.credential_info)
            .bind(to_ms(next.updated_at))
            .bind(&next.updated_by)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            next
        });
        Ok(Some(written))
    }

    /// Deletes the stored credential `name` unless a stored deployment names it (`refuse` reads
    /// the deployments in the same transaction and says why not); the row it was, if any.
    pub async fn delete_credential<F>(
        &self,
        name: &str,
        refuse: F,
    ) -> Result<Option<CredentialRow>, StoreError>
    where
        F: FnOnce(&[crate::ProxyModelRow]) -> Result<(), StoreError> + Send,
    {
        let delete = format!(
            "DELETE FROM idlehands_credentials WHERE credential_name = $1 RETURNING {COLUMNS}"
        );
        let models = format!(
            "SELECT {} FROM idlehands_proxy_models",
            crate::models_db::COLUMNS
        );
        // Locked before the deployments are read: a deployment write naming it (which holds it
        // shared, see `models_db`) has then committed, and is seen, or waits and finds it gone.
        let lock = locked_credential(&self.db, "FOR UPDATE");
        let row = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let _locked: Option<String> = sqlx::query_scalar(&lock)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            let rows = sqlx::query(&models)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(crate::models_db::row_of)
                .collect::<Result<Vec<_>, _>>()?;
            refuse(&rows)?;
            let row = sqlx::query(&delete)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| row_of(&r))
                .transpose()?;
            tx.commit().await?;
            row
        });
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ProxyModelRow;

    fn credential(name: &str) -> CredentialRow {
        let now = Utc::now();
        CredentialRow {
            credential_name: name.into(),
            display_name: None,
            credential_values: "{}".into(),
            credential_info: "{}".into(),
            created_at: now,
            created_by: None,
            updated_at: now,
            updated_by: None,
        }
    }

    fn model(id: &str, credential: &str) -> ProxyModelRow {
        let now = Utc::now();
        ProxyModelRow {
            model_id: id.into(),
            model_name: "m".into(),
            litellm_params:
                serde_json::json!({"model": "openai/x", "litellm_credential_name": credential})
                    .to_string(),
            model_info: "{}".into(),
            created_at: now,
            created_by: None,
            updated_at: now,
            updated_by: None,
        }
    }

    /// Refuses the delete while a stored deployment names the credential.
    fn refuse(name: &str) -> impl FnOnce(&[ProxyModelRow]) -> Result<(), StoreError> + Send {
        let needle = format!("\"litellm_credential_name\":\"{name}\"");
        move |rows: &[ProxyModelRow]| {
            if rows.iter().any(|r| r.litellm_params.contains(&needle)) {
                Err(StoreError::bad_request("named", "credential_name"))
            } else {
                Ok(())
            }
        }
    }

    /// A deployment written while its credential is deleted: either the delete sees it and is
    /// refused, or the write finds the credential gone; never a deployment naming nothing.
    async fn writes_and_deletes_race(store: Store) {
        assert!(matches!(
            store
                .insert_model(&model("early", "never"), Some("never"))
                .await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(store.get_model("early").await.unwrap().is_none());
        let rounds = 24;
        for i in 0..rounds {
            assert!(
                store
                    .insert_credential(&credential(&format!("c{i}")))
                    .await
                    .unwrap()
            );
        }
        let mut tasks = Vec::new();
        for i in 0..rounds {
            let (a, b) = (store.clone(), store.clone());
            let name = format!("c{i}");
            tasks.push(tokio::spawn(async move {
                let row = model(&format!("m{i}"), &name);
                let (write, delete) = tokio::join!(
                    a.insert_model(&row, Some(&name)),
                    b.delete_credential(&name, refuse(&name))
                );
                (write.is_ok(), delete.is_ok_and(|r| r.is_some()))
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let (written, deleted) = t.await.unwrap();
            assert!(
                written != deleted,
                "round {i}: written {written}, deleted {deleted}"
            );
        }
        let names: Vec<String> = store
            .list_credentials()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.credential_name)
            .collect();
        for m in store.list_models().await.unwrap() {
            let p: serde_json::Value = serde_json::from_str(&m.litellm_params).unwrap();
            let named = p["litellm_credential_name"].as_str().unwrap();
            assert!(
                names.iter().any(|n| n == named),
                "{} names the deleted {named}",
                m.model_id
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_sqlite_a_deployment_never_names_a_deleted_credential() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db").display().to_string())
            .await
            .unwrap();
        writes_and_deletes_race(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_postgres_a_deployment_never_names_a_deleted_credential() {
        let (pool, opts, schema) = crate::test_postgres::postgres_schema().await;
        let store = Store::open_with(opts).await.unwrap();
        writes_and_deletes_race(store.clone()).await;
        store.close().await;
        crate::test_postgres::drop_schema(&pool, &schema).await;
    }
}
