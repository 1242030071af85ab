#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! LiteLLM's dashboard totals over the last 30 days: `/global/spend`, `/global/spend/keys` and
//! `/global/spend/models`, each equal to the spend rows it adds up, with an internal user's
//! own view and the refusals. SQLite and Postgres.

mod store_support;

use std::collections::HashMap;

use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, chat, close, error_of, generate, get, internal_user, post, spend_rows,
    start,
};

async fn totals_equal_their_rows(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    internal_user(&p, "u1").await;
    let (mine, _) = generate(&p, json!({"user_id": "u1"})).await;
    let (plain, _) = generate(&p, json!({})).await;
    for (key, model) in [
        (&mine, "mocky"),
        (&mine, "mocky"),
        (&plain, "other"),
        (&plain, "mocky"),
    ] {
        let a = post(&p, "/v1/chat/completions", key, chat(model)).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let rows = spend_rows(&p, "", 4).await;
    let spend = |r: &Value| r["spend"].as_f64().unwrap();
    let mut by_key: HashMap<String, f64> = HashMap::new();
    let mut by_model: HashMap<String, f64> = HashMap::new();
    for r in &rows {
        *by_key
            .entry(r["api_key"].as_str().unwrap().to_owned())
            .or_default() += spend(r);
        *by_model
            .entry(r["model_group"].as_str().unwrap().to_owned())
            .or_default() += spend(r);
    }
    let all: f64 = rows.iter().map(spend).sum();
    assert!(all > 0.0);

    let a = get(&p, "/global/spend", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        close(a.body["spend"].as_f64().unwrap(), all),
        "{} vs {all}",
        a.body
    );
    assert_eq!(a.body["max_budget"], json!(0.0));

    let a = get(&p, "/global/spend/keys", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let keys = a.body.as_array().unwrap();
    assert_eq!(keys.len(), by_key.len(), "{}", a.body);
    let mut last = f64::INFINITY;
    for k in keys {
        let total = k["total_spend"].as_f64().unwrap();
        assert!(total <= last, "biggest first: {}", a.body);
        last = total;
        assert!(close(total, by_key[k["api_key"].as_str().unwrap()]), "{k}");
        assert!(k["key_name"].as_str().unwrap().starts_with("sk-"), "{k}");
    }
    let a = get(&p, "/global/spend/keys?limit=1", MASTER).await;
    assert_eq!(a.body.as_array().unwrap().len(), 1, "{}", a.body);
    assert_eq!(a.body[0], keys[0]);
    let a = get(&p, "/global/spend/keys?limit=0", MASTER).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(error_of(&a).1.contains("Invalid limit"), "{}", a.body);

    let a = get(&p, "/global/spend/models", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let models: HashMap<String, f64> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["model"].as_str().unwrap().to_owned(),
                m["total_spend"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(models.len(), by_model.len(), "{}", a.body);
    for (m, s) in &by_model {
        assert!(close(models[m], *s), "{m}: {} vs {s}", models[m]);
    }
    let a = get(&p, "/global/spend/models?limit=1", MASTER).await;
    assert_eq!(a.body.as_array().unwrap().len(), 1, "{}", a.body);

    // An internal user: the keys and models of their own calls; not the proxy's total.
    let own_hash = idlehands_store::keygen::hash_key(&mine);
    let a = get(&p, "/global/spend/keys", &mine).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body.as_array().unwrap().len(), 1, "{}", a.body);
    assert_eq!(a.body[0]["api_key"], json!(own_hash));
    assert!(close(
        a.body[0]["total_spend"].as_f64().unwrap(),
        by_key[&own_hash]
    ));
    let a = get(&p, "/global/spend/models", &mine).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body.as_array().unwrap().len(), 1, "{}", a.body);
    assert_eq!(a.body[0]["model"], "mocky");
    assert!(
        a.body[0]["total_tokens"].as_i64().unwrap() > 0,
        "{}",
        a.body
    );
    assert_eq!(get(&p, "/global/spend", &mine).await.status, 403);
    // A key without a user sees none of it.
    assert_eq!(get(&p, "/global/spend/keys", &plain).await.status, 403);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(totals_equal_their_rows);
