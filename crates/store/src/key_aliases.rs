//! LiteLLM's `/key/aliases`: the keys' aliases in order, a page at a time, for the dashboard's
//! key filters; optionally searched (case-insensitive part of the alias), of one team, or of
//! the keys a user may see (their own and their teams').

use crate::db::{Backend, Store, on_db, placeholders};
use crate::error::StoreError;

/// A page of [`Store::key_aliases`].
#[derive(Debug, Clone, Default)]
pub struct AliasQuery {
    /// Part of the alias, any case.
    pub search: Option<String>,
    pub team_id: Option<String>,
    /// Only keys this user owns or that belong to these teams (a caller who is not an admin).
    pub visible_to: Option<(String, Vec<String>)>,
    /// From 1.
    pub page: u32,
    pub size: u32,
}

impl Store {
    /// The aliases of the page, and how many keys with an alias match in all.
    pub async fn key_aliases(&self, q: &AliasQuery) -> Result<(Vec<String>, i64), StoreError> {
        let mut binds: Vec<String> = Vec::new();
        let mut conds = vec![
            "key_alias IS NOT NULL".to_owned(),
            "key_alias <> ''".to_owned(),
        ];
        if let Some((user, teams)) = &q.visible_to {
            binds.push(user.clone());
            let mut own = format!("user_id = ${}", binds.len());
            if !teams.is_empty() {
                let at = placeholders(binds.len() + 1, teams.len());
                binds.extend(teams.iter().cloned());
                own = format!("({own} OR team_id IN ({at}))");
            }
            conds.push(own);
        }
        if let Some(search) = q.search.as_ref().filter(|s| !s.is_empty()) {
            binds.push(format!("%{}%", search.to_lowercase()));
            conds.push(format!("LOWER(key_alias) LIKE ${}", binds.len()));
        }
        if let Some(team) = &q.team_id {
            binds.push(team.clone());
            conds.push(format!("team_id = ${}", binds.len()));
        }
        let where_sql = conds.join(" AND ");
        let count_sql =
            format!("SELECT COUNT(*) FROM idlehands_verification_tokens WHERE {where_sql}");
        // Byte order on both stores (Postgres would otherwise sort by the database's locale).
        let order = match self.backend() {
            Backend::Sqlite => "key_alias",
            Backend::Postgres => "key_alias COLLATE \"C\"",
        };
        let page_sql = format!(
            "SELECT key_alias FROM idlehands_verification_tokens WHERE {where_sql} \
             ORDER BY {order} LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        );
        let offset = i64::from(q.page.max(1) - 1) * i64::from(q.size);
        let out = on_db!(&self.db, pool => {
            let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
            for b in &binds {
                count = count.bind(b.clone());
            }
            let total = count.fetch_one(pool).await?;
            let mut page = sqlx::query_scalar::<_, String>(&page_sql);
            for b in &binds {
                page = page.bind(b.clone());
            }
            let aliases = page.bind(i64::from(q.size)).bind(offset).fetch_all(pool).await?;
            (aliases, total)
        });
        Ok(out)
    }
}
