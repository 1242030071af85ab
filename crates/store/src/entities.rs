//! Names of the budget entities besides keys: a team, a user, an organization, an end user
//! (the request's `user`), and a user's membership of a team. Each has a row in
//! `idlehands_budgets` and, while it is enforced, counters in the limiter under the same
//! name. A key's token is hex and never contains `:`, so the two never collide.

use crate::spend::SpendLogRow;
use crate::spend_db::text;

// Ids come from requests (the end user is any `user` string): NULs are dropped as in stored
// text, or Postgres refuses the whole spend commit that names the entity.

pub fn team(id: &str) -> String {
    format!("team:{}", text(id))
}

pub fn user(id: &str) -> String {
    format!("user:{}", text(id))
}

pub fn org(id: &str) -> String {
    format!("org:{}", text(id))
}

pub fn customer(id: &str) -> String {
    format!("customer:{}", text(id))
}

pub fn member(team_id: &str, user_id: &str) -> String {
    format!("member:{}:{}", text(team_id), text(user_id))
}

/// Whether a limiter token names an entity rather than a key.
pub fn is_entity(token: &str) -> bool {
    token.contains(':')
}

/// Every entity whose spend the row adds to.
pub(crate) fn entities_of(row: &SpendLogRow) -> impl Iterator<Item = String> + '_ {
    let team_id = row.team_id.as_deref().filter(|s| !s.is_empty());
    let user_id = row.user.as_deref().filter(|s| !s.is_empty());
    let members = match (team_id, user_id) {
        (Some(t), Some(u)) => Some(member(t, u)),
        _ => None,
    };
    team_id
        .map(team)
        .into_iter()
        .chain(user_id.map(user))
        .chain(members)
        .chain(
            row.organization_id
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(org),
        )
        .chain(
            row.end_user
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(customer),
        )
        .chain(
            row.proxy_budget
                .then(|| user(crate::ledger::PROXY_BUDGET_USER)),
        )
        .chain(
            row.model_budget
                .as_deref()
                .filter(|_| !row.api_key.is_empty())
                .map(|entry| crate::key_model_budgets::entity(&row.api_key, entry)),
        )
        .chain(row.route_budgets.iter().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_names_its_team_user_membership_org_end_user_and_the_proxy_budget() {
        let row = SpendLogRow {
            team_id: Some("t1".into()),
            user: Some("u1".into()),
            organization_id: Some("o1".into()),
            end_user: Some("e1".into()),
            proxy_budget: true,
            route_budgets: vec!["route:provider:openai".into()],
            ..SpendLogRow::default()
        };
        let names: Vec<String> = entities_of(&row).collect();
        assert_eq!(
            names,
            [
                "team:t1",
                "user:u1",
                "member:t1:u1",
                "org:o1",
                "customer:e1",
                "user:litellm-proxy-budget",
                "route:provider:openai"
            ]
        );
        let bare = SpendLogRow {
            user: Some(String::new()),
            ..SpendLogRow::default()
        };
        assert_eq!(entities_of(&bare).count(), 0);
        assert!(is_entity("team:x") && !is_entity(&"a".repeat(64)));
    }
}
