#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Models over the API, on SQLite and Postgres: `/model/new|update|delete` with
//! `store_model_in_db` (kept in the store with sealed secrets, served without a restart,
//! still there after one), config models beside them, `/model/info`, `/v2/model/info` and
//! `/model_group/info` filtered by the caller's key and never showing a secret.

mod store_support;

use std::time::Duration;

use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, Proxy, chat, error_of, generate, get, post, start, start_with,
};

const UPSTREAM_SECRET: &str = "sk-upstream-very-secret-0001";

fn added(name: &str, reply: &str) -> Value {
    json!({
        "model_name": name,
        "litellm_params": {
            "model": "openai/added-model",
            "mock_response": reply,
            "api_key": UPSTREAM_SECRET,
            "rpm": 7,
        },
        "model_info": {"access_groups": ["team-a"], "description": "added over the API"},
    })
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["model_info"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn names(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["model_name"].as_str().unwrap().to_string())
        .collect()
}

async fn reply_of(p: &Proxy, key: &str, model: &str) -> (u16, String) {
    let a = post(p, "/v1/chat/completions", key, chat(model)).await;
    let text = a.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (a.status.as_u16(), text)
}

/// The stored `litellm_params` text of `id`, read straight from the database.
async fn stored_params(place: &Place, id: &str) -> String {
    store_support::stored_text(
        place,
        "idlehands_proxy_models",
        "litellm_params",
        "model_id",
        id,
    )
    .await
}

async fn models_are_added_served_updated_and_deleted_without_a_restart(backend: Backend) {
    let place = Place::new(backend);
    let p = start(&place, "  store_model_in_db: true\n").await;

    let info = get(&p, "/model/info", MASTER).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(names(&info.body), ["mocky", "other"]);
    assert!(
        info.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["model_info"]["db_model"] == false)
    );
    let config_id = ids(&info.body)[0].clone();

    // Added: answered with the row, the secret left out.
    let a = post(
        &p,
        "/model/new",
        MASTER,
        added("added", "Hi from the added model"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!a.body.to_string().contains(UPSTREAM_SECRET), "{}", a.body);
    assert_eq!(a.body["model_name"], "added");
    assert_eq!(a.body["litellm_params"]["model"], "openai/added-model");
    assert!(a.body["litellm_params"].get("api_key").is_none());
    assert_eq!(a.body["created_by"], "default_user_id");
    let id = a.body["model_id"].as_str().unwrap().to_string();
    assert_eq!(a.body["model_info"]["id"], id.as_str());

    // Served at once, beside the config's models.
    assert_eq!(
        reply_of(&p, MASTER, "added").await,
        (200, "Hi from the added model".to_string())
    );
    assert_eq!(reply_of(&p, MASTER, "mocky").await.0, 200);
    let served = post(&p, "/v1/chat/completions", MASTER, chat("added")).await;
    assert_eq!(served.headers["x-litellm-model-id"], id.as_str());

    // Listed with LiteLLM's fields; the secret appears nowhere.
    let info = get(&p, "/model/info", MASTER).await;
    assert_eq!(names(&info.body), ["mocky", "other", "added"]);
    let text = info.body.to_string();
    assert!(!text.contains(UPSTREAM_SECRET), "{text}");
    let row = &info.body["data"][2];
    assert_eq!(row["model_info"]["db_model"], true);
    assert_eq!(row["model_info"]["description"], "added over the API");
    assert_eq!(row["model_info"]["litellm_provider"], "openai");
    assert_eq!(row["litellm_params"]["rpm"], 7);
    let one = get(&p, &format!("/model/info?litellm_model_id={id}"), MASTER).await;
    assert_eq!(names(&one.body), ["added"]);
    let missing = get(&p, "/model/info?litellm_model_id=nope", MASTER).await;
    assert_eq!(missing.status, 400);
    assert!(error_of(&missing).1.contains("Model id = nope not found"));

    // Stored sealed: the database never holds the secret in clear.
    let stored = stored_params(&place, &id).await;
    assert!(!stored.contains(UPSTREAM_SECRET), "{stored}");
    let sealed: Value = serde_json::from_str(&stored).unwrap();
    assert!(sealed["api_key"].as_str().unwrap().starts_with("v2:gcm:"));
    assert_eq!(sealed["model"], "openai/added-model");

    // Updated in place: a null keeps the stored value, the key stays sealed.
    let u = post(
        &p,
        "/model/update",
        MASTER,
        json!({"model_info": {"id": id}, "litellm_params": {"mock_response": "Updated reply", "api_key": null}}),
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.body["litellm_params"]["mock_response"], "Updated reply");
    assert_eq!(
        reply_of(&p, MASTER, "added").await,
        (200, "Updated reply".to_string())
    );
    let stored = stored_params(&place, &id).await;
    assert!(!stored.contains(UPSTREAM_SECRET), "{stored}");
    assert!(stored.contains("v2:gcm:"), "{stored}");
    // The PATCH form renames.
    let renamed = client_patch(
        &p,
        &format!("/model/{id}/update"),
        json!({"model_name": "added-2"}),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(reply_of(&p, MASTER, "added-2").await.1, "Updated reply");
    assert_eq!(reply_of(&p, MASTER, "added").await.0, 400);

    // Config models are not editable or deletable over the API.
    let u = post(
        &p,
        "/model/update",
        MASTER,
        json!({"model_info": {"id": config_id}, "litellm_params": {"mock_response": "x"}}),
    )
    .await;
    assert_eq!(u.status, 400);
    assert!(error_of(&u).1.contains("Model in config"), "{}", u.body);
    let d = post(&p, "/model/delete", MASTER, json!({"id": config_id})).await;
    assert_eq!(d.status, 400);
    assert!(error_of(&d).1.contains("not found in db"), "{}", d.body);

    // A second one, kept across the restart below; the first is deleted.
    let kept = post(&p, "/model/new", MASTER, added("kept", "Still here")).await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    let d = post(&p, "/model/delete", MASTER, json!({"id": id})).await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(
        d.body["message"],
        format!("Model: {id} deleted successfully")
    );
    assert_eq!(reply_of(&p, MASTER, "added-2").await.0, 400);
    let again = post(&p, "/model/delete", MASTER, json!({"id": id})).await;
    assert_eq!(again.status, 400);
    p.stop().await;

    let p = start(&place, "  store_model_in_db: true\n").await;
    let info = get(&p, "/model/info", MASTER).await;
    assert_eq!(names(&info.body), ["mocky", "other", "kept"]);
    assert_eq!(
        reply_of(&p, MASTER, "kept").await,
        (200, "Still here".to_string())
    );
    p.stop().await;
    place.cleanup().await;
}

async fn client_patch(p: &Proxy, path: &str, body: Value) -> store_support::Answer {
    store_support::send(
        store_support::client()
            .patch(p.url(path))
            .bearer_auth(MASTER)
            .json(&body),
    )
    .await
}

async fn keys_see_only_the_models_they_may_call(backend: Backend) {
    let place = Place::new(backend);
    let p = start(&place, "  store_model_in_db: true\n").await;
    let a = post(&p, "/model/new", MASTER, added("grouped", "hi")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // `team-a` is the added deployment's access group.
    let (key, _) = generate(&p, json!({"models": ["mocky", "team-a"]})).await;

    let info = get(&p, "/model/info", &key).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(names(&info.body), ["mocky", "grouped"]);
    assert!(!info.body.to_string().contains(UPSTREAM_SECRET));

    let v2 = get(&p, "/v2/model/info?size=1&page=2", &key).await;
    assert_eq!(v2.status, 200, "{}", v2.body);
    assert_eq!(names(&v2.body), ["grouped"]);
    assert_eq!(v2.body["total_count"], 2);
    assert_eq!(v2.body["total_pages"], 2);
    assert_eq!(v2.body["current_page"], 2);
    let all = get(&p, "/v2/model/info?search=OTH", MASTER).await;
    assert_eq!(names(&all.body), ["other"]);

    let groups = get(&p, "/model_group/info", &key).await;
    assert_eq!(groups.status, 200, "{}", groups.body);
    let listed: Vec<&str> = groups.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["model_group"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["mocky", "grouped"]);
    let g = &groups.body["data"][0];
    assert_eq!(g["providers"], json!(["openai"]));
    assert_eq!(g["input_cost_per_token"], 0.000001);
    assert_eq!(g["output_cost_per_token"], 0.000002);
    assert_eq!(groups.body["data"][1]["rpm"], 7);
    let one = get(&p, "/model_group/info?model_group=other", MASTER).await;
    assert_eq!(one.body["data"].as_array().unwrap().len(), 1);

    // Only the proxy admin changes models.
    let refused = post(&p, "/model/new", &key, added("mine", "x")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let refused = post(&p, "/model/delete", &key, json!({"id": a.body["model_id"]})).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let anonymous = get(&p, "/model/info", "sk-not-a-key-at-all-000").await;
    assert_eq!(anonymous.status, 401);
    p.stop().await;
    place.cleanup().await;
}

async fn bad_models_are_refused_with_the_field(backend: Backend) {
    let place = Place::new(backend);
    let p = start(&place, "  store_model_in_db: true\n").await;
    for (body, field) in [
        (
            json!({"litellm_params": {"model": "openai/x"}}),
            "model_name",
        ),
        (json!({"model_name": "x"}), "litellm_params"),
        (
            json!({"model_name": "x", "litellm_params": {"api_key": UPSTREAM_SECRET}}),
            "litellm_params.model",
        ),
        (
            json!({"model_name": "x", "litellm_params": {"model": "openai/x", "api_base": "ftp://h"}}),
            "litellm_params.api_base",
        ),
        (
            json!({"model_name": "x", "litellm_params": {"model": "openai/x", "timeout": "soon"}}),
            "litellm_params.timeout",
        ),
        (
            json!({"model_name": "x", "litellm_params": {"model": "openai/x", "api_key": "os.environ/IDLEHANDS_TEST_UNSET_VAR_0"}}),
            "litellm_params.api_key",
        ),
    ] {
        let a = post(&p, "/model/new", MASTER, body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        let (_, message) = error_of(&a);
        assert!(message.starts_with(field), "{field}: {message}");
        assert!(!a.body.to_string().contains(UPSTREAM_SECRET));
    }
    // An id already taken, by a stored model or a config one.
    let first = post(
        &p,
        "/model/new",
        MASTER,
        json!({"model_name": "x", "litellm_params": {"model": "openai/x", "mock_response": "a"}, "model_info": {"id": "fixed-id"}}),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let twice = post(&p, "/model/new", MASTER, json!({"model_name": "y", "litellm_params": {"model": "openai/y"}, "model_info": {"id": "fixed-id"}})).await;
    assert_eq!(twice.status, 400, "{}", twice.body);
    assert!(error_of(&twice).1.contains("already exists"));
    let info = get(&p, "/model/info", MASTER).await;
    let config_id = ids(&info.body)[0].clone();
    let clash = post(&p, "/model/new", MASTER, json!({"model_name": "y", "litellm_params": {"model": "openai/y"}, "model_info": {"id": config_id}})).await;
    assert_eq!(clash.status, 400, "{}", clash.body);
    // An update that would break the model is refused, and the model keeps serving.
    let u = post(
        &p,
        "/model/update",
        MASTER,
        json!({"model_info": {"id": "fixed-id"}, "litellm_params": {"api_base": "nope"}}),
    )
    .await;
    assert_eq!(u.status, 400, "{}", u.body);
    assert!(error_of(&u).1.starts_with("litellm_params.api_base"));
    assert_eq!(reply_of(&p, MASTER, "x").await, (200, "a".to_string()));
    let u = post(&p, "/model/update", MASTER, json!({"litellm_params": {}})).await;
    assert_eq!(u.status, 400);
    let u = post(
        &p,
        "/model/update",
        MASTER,
        json!({"model_info": {"id": "unknown"}}),
    )
    .await;
    assert_eq!(u.status, 400);
    assert!(error_of(&u).1.contains("not found"));
    p.stop().await;
    place.cleanup().await;
}

/// `(model_name, model_info.access_via_team_ids, model_info.direct_access)` of each row.
fn access(body: &Value) -> Vec<(String, Value, Value)> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let info = &d["model_info"];
            (
                d["model_name"].as_str().unwrap().to_string(),
                info.get("access_via_team_ids")
                    .cloned()
                    .unwrap_or(Value::Null),
                info.get("direct_access").cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

fn row(name: &str, via: Value, direct: bool) -> (String, Value, Value) {
    (name.to_string(), via, Value::Bool(direct))
}

fn model_ids_of(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// A model added with `model_info.team_id`: stored under an internal name with the given one
/// as the team's public name (added to the team's models), called and listed by that name
/// from the team's keys only (and by the proxy admin), shown with how each caller reaches
/// every model, and gone with its team.
async fn team_models_belong_to_their_team(backend: Backend) {
    let place = Place::new(backend);
    let p = start(&place, "  store_model_in_db: true\n").await;
    for team in [json!({"team_id": "alpha"}), json!({"team_id": "beta"})] {
        assert_eq!(post(&p, "/team/new", MASTER, team).await.status, 200);
    }
    let body = |team: &str| {
        json!({
            "model_name": "team-gpt",
            "litellm_params": {"model": "openai/team-model", "mock_response": "from alpha's own"},
            "model_info": {"team_id": team},
        })
    };
    let ghost = post(&p, "/model/new", MASTER, body("ghost")).await;
    assert_eq!(ghost.status, 400, "{}", ghost.body);
    assert_eq!(error_of(&ghost).1, "Team id=ghost does not exist in db");
    assert_eq!(ghost.body["error"]["param"], "model_info.team_id");

    let made = post(&p, "/model/new", MASTER, body("alpha")).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let internal = made.body["model_name"].as_str().unwrap().to_string();
    assert!(internal.starts_with("model_name_alpha_"), "{internal}");
    assert_eq!(
        made.body["model_info"]["team_public_model_name"],
        "team-gpt"
    );
    assert_eq!(made.body["model_info"]["team_id"], "alpha");
    // The team (which had every model) keeps every model and names its own.
    let info = get(&p, "/team/info?team_id=alpha", MASTER).await;
    assert_eq!(
        info.body["team_info"]["models"],
        json!(["all-proxy-models", "team-gpt"])
    );

    let (alpha, _) = generate(&p, json!({"team_id": "alpha"})).await;
    let (beta, _) = generate(&p, json!({"team_id": "beta"})).await;
    let (teamless, _) = generate(&p, json!({})).await;
    assert_eq!(
        reply_of(&p, &alpha, "team-gpt").await,
        (200, "from alpha's own".to_string())
    );
    // Another team's key, a key without a team: no such model; nor by the internal name.
    for key in [&beta, &teamless] {
        for name in ["team-gpt", internal.as_str()] {
            let a = post(&p, "/v1/chat/completions", key, chat(name)).await;
            assert_eq!(a.status, 400, "{name}: {}", a.body);
            assert!(error_of(&a).1.contains("Invalid model name"), "{}", a.body);
        }
    }
    // The proxy admin reaches every team's models by their public names.
    assert_eq!(reply_of(&p, MASTER, "team-gpt").await.0, 200);
    let listed = get(&p, "/v1/models", &alpha).await;
    assert_eq!(model_ids_of(&listed.body), ["mocky", "other", "team-gpt"]);
    let listed = get(&p, "/v1/models", &beta).await;
    assert_eq!(model_ids_of(&listed.body), ["mocky", "other"]);

    // `/model/info`: every row says how the caller reaches it; the admin's teams are all
    // teams and it reaches every model that belongs to no team directly.
    let info = get(&p, "/model/info", MASTER).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(
        access(&info.body),
        [
            row("mocky", json!(["alpha", "beta"]), true),
            row("other", json!(["alpha", "beta"]), true),
            row("team-gpt", json!(["alpha"]), false),
        ]
    );
    let team_row = &info.body["data"][2];
    assert_eq!(team_row["model_info"]["team_public_model_name"], "team-gpt");
    // A key without a user: no teams of its own to show, nothing direct (as in LiteLLM); it
    // does not see another team's model.
    let info = get(&p, "/model/info", &beta).await;
    assert_eq!(
        access(&info.body),
        [
            row("mocky", Value::Null, false),
            row("other", Value::Null, false)
        ]
    );
    // A user in team alpha, limited to `mocky` on its own.
    let dev = post(
        &p,
        "/user/new",
        MASTER,
        json!({"user_id": "dev", "models": ["mocky"], "teams": ["alpha"]}),
    )
    .await;
    assert_eq!(dev.status, 200, "{}", dev.body);
    let dev = dev.body["key"].as_str().unwrap().to_string();
    let info = get(&p, "/model/info", &dev).await;
    assert_eq!(access(&info.body), [row("mocky", json!(["alpha"]), true)]);
    // `/v2/model/info` fills the fields only with `include_team_models`, and then keeps what
    // the caller can use.
    let v2 = get(&p, "/v2/model/info", MASTER).await;
    assert_eq!(
        access(&v2.body),
        [
            ("mocky".to_string(), Value::Null, Value::Null),
            ("other".to_string(), Value::Null, Value::Null),
            ("team-gpt".to_string(), Value::Null, Value::Null),
        ]
    );
    let v2 = get(&p, "/v2/model/info?include_team_models=true", MASTER).await;
    assert_eq!(v2.status, 200, "{}", v2.body);
    assert_eq!(v2.body["total_count"], 3);
    assert_eq!(
        access(&v2.body)[2],
        row("team-gpt", json!(["alpha"]), false)
    );
    let v2 = get(&p, "/v2/model/info?include_team_models=true", &beta).await;
    assert_eq!(v2.body["total_count"], 0, "{}", v2.body);
    // `teamId`: that team's models, for the proxy admin or the team's members.
    let v2 = get(&p, "/v2/model/info?teamId=beta", MASTER).await;
    assert_eq!(names(&v2.body), ["mocky", "other"]);
    let v2 = get(&p, "/v2/model/info?teamId=alpha", &dev).await;
    assert_eq!(v2.status, 200, "{}", v2.body);
    assert_eq!(names(&v2.body), ["mocky"]);
    let refused = get(&p, "/v2/model/info?teamId=alpha", &beta).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        error_of(&refused).1,
        "Not authorized to view this team's models"
    );
    let groups = get(&p, "/model_group/info", &alpha).await;
    let listed: Vec<&str> = groups.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["model_group"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["mocky", "other", "team-gpt"]);

    // Renamed: the new name is the public one (added to the team's models), the internal
    // one stays.
    let id = made.body["model_id"].as_str().unwrap().to_string();
    let renamed = post(
        &p,
        "/model/update",
        MASTER,
        json!({"model_info": {"id": id}, "model_name": "team-gpt-2"}),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["model_name"], internal.as_str());
    assert_eq!(
        renamed.body["model_info"]["team_public_model_name"],
        "team-gpt-2"
    );
    assert_eq!(reply_of(&p, &alpha, "team-gpt-2").await.0, 200);
    assert_eq!(reply_of(&p, &alpha, "team-gpt").await.0, 400);

    // The team goes, and its model with it.
    let gone = post(&p, "/team/delete", MASTER, json!({"team_ids": ["alpha"]})).await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert_eq!(reply_of(&p, MASTER, "team-gpt-2").await.0, 400);
    let info = get(&p, "/model/info", MASTER).await;
    assert_eq!(names(&info.body), ["mocky", "other"]);
    p.stop().await;
    place.cleanup().await;
}

/// A wildcard deployment is listed as the price map's models of its provider, as LiteLLM's
/// users see it: `/v1/models` (the route itself only on request), `/model_group/info` (each
/// priced as that model) and `/model/info` (a row each, with the deployment's id).
async fn wildcards_are_listed_as_the_models_they_serve(backend: Backend) {
    let place = Place::new(backend);
    let p = start(&place, "  store_model_in_db: true\n").await;
    let made = post(
        &p,
        "/model/new",
        MASTER,
        json!({"model_name": "openai/*", "litellm_params": {"model": "openai/*", "mock_response": "wild", "rpm": 9}}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let id = made.body["model_id"].as_str().unwrap().to_string();

    let listed = model_ids_of(&get(&p, "/v1/models", MASTER).await.body);
    assert_eq!(listed[..2], ["mocky", "other"]);
    assert!(listed.contains(&"openai/gpt-4o".to_string()), "{listed:?}");
    assert!(!listed.contains(&"openai/*".to_string()));
    assert!(listed[2..].iter().all(|m| m.starts_with("openai/")));
    let expanded = listed.len() - 2;
    assert!(expanded > 50, "{expanded}");
    let with_route = model_ids_of(
        &get(&p, "/v1/models?return_wildcard_routes=true", MASTER)
            .await
            .body,
    );
    assert_eq!(with_route[2], "openai/*");
    assert_eq!(with_route.len(), listed.len() + 1);

    let groups = get(&p, "/model_group/info", MASTER).await;
    let data = groups.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2 + expanded);
    assert!(!data.iter().any(|g| g["model_group"] == "openai/*"));
    let g = get(&p, "/model_group/info?model_group=openai/gpt-4o", MASTER).await;
    let g = &g.body["data"][0];
    assert_eq!(g["providers"], json!(["openai"]), "{g}");
    // gpt-4o's published price, context and flags; the deployment's rpm.
    assert_eq!(g["input_cost_per_token"], 2.5e-6, "{g}");
    assert_eq!(g["output_cost_per_token"], 1e-5, "{g}");
    assert_eq!(g["max_input_tokens"], 128000, "{g}");
    assert_eq!(g["mode"], "chat");
    assert_eq!(g["rpm"], 9);
    assert_eq!(g["supports_vision"], true);

    let info = get(&p, "/model/info", MASTER).await;
    let rows = info.body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2 + expanded);
    let row = rows
        .iter()
        .find(|r| r["model_name"] == "openai/gpt-4o")
        .unwrap();
    assert_eq!(row["litellm_params"]["model"], "openai/gpt-4o");
    assert_eq!(row["model_info"]["id"], id.as_str());
    assert_eq!(row["model_info"]["max_input_tokens"], 128000);
    assert_eq!(row["model_info"]["direct_access"], true);
    // `/v2/model/info` shows the deployment as configured.
    let v2 = get(&p, &format!("/v2/model/info?modelId={id}"), MASTER).await;
    assert_eq!(names(&v2.body), ["openai/*"]);

    // A key sees the names it may call, and calls them through the wildcard.
    let (mini, _) = generate(&p, json!({"models": ["openai/gpt-4o-mini"]})).await;
    assert_eq!(
        model_ids_of(&get(&p, "/v1/models", &mini).await.body),
        ["openai/gpt-4o-mini"]
    );
    assert_eq!(
        names(&get(&p, "/model/info", &mini).await.body),
        ["openai/gpt-4o-mini"]
    );
    assert_eq!(
        reply_of(&p, &mini, "openai/gpt-4o-mini").await,
        (200, "wild".to_string())
    );
    p.stop().await;
    place.cleanup().await;
}

/// `/model/block` and `/model/unblock` (LiteLLM's): a blocked stored deployment serves nothing
/// (its group's other deployments answer), a model all of whose deployments are blocked is a
/// 403 and is not listed, `/model/info` still shows them (`model_info.blocked`), and it holds
/// across a restart; config models, unknown ids and non-admins are refused.
async fn blocked_models_serve_nothing_until_unblocked(backend: Backend) {
    let place = Place::new(backend);
    let p = start(&place, "  store_model_in_db: true\n").await;
    let mut ids = Vec::new();
    for reply in ["from a", "from b"] {
        let a = post(&p, "/model/new", MASTER, added("pair", reply)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        ids.push(a.body["model_id"].as_str().unwrap().to_string());
    }
    let b = post(&p, "/model/block", MASTER, json!({"model_id": ids[0]})).await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.body["model_info"]["blocked"], true, "{}", b.body);
    for _ in 0..6 {
        assert_eq!(
            reply_of(&p, MASTER, "pair").await,
            (200, "from b".to_string())
        );
    }
    let b = post(&p, "/model/block", MASTER, json!({"model_id": ids[1]})).await;
    assert_eq!(b.status, 200, "{}", b.body);
    let refused = post(&p, "/v1/chat/completions", MASTER, chat("pair")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        error_of(&refused).1.contains("Model is blocked"),
        "{}",
        refused.body
    );
    let listed = get(&p, "/v1/models", MASTER).await;
    assert!(
        !listed.body.to_string().contains("\"pair\""),
        "{}",
        listed.body
    );
    let info = get(&p, "/model/info", MASTER).await;
    let blocked: Vec<&Value> = info.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["model_name"] == "pair")
        .collect();
    assert_eq!(blocked.len(), 2, "{}", info.body);
    assert!(
        blocked.iter().all(|d| d["model_info"]["blocked"] == true),
        "{}",
        info.body
    );
    // Refused: a config model, an unknown id, a key that is not an admin's.
    let config_id = ids_of_config(&info.body);
    let a = post(&p, "/model/block", MASTER, json!({"model_id": config_id})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(error_of(&a).1.contains("config-based model"), "{}", a.body);
    let a = post(
        &p,
        "/model/block",
        MASTER,
        json!({"model_id": "no-such-id"}),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
    let (key, _) = generate(&p, json!({})).await;
    let a = post(&p, "/model/unblock", &key, json!({"model_id": ids[0]})).await;
    assert_eq!(a.status, 403, "{}", a.body);
    p.stop().await;

    // Kept: still blocked after a restart, until unblocked.
    let p = start(&place, "  store_model_in_db: true\n").await;
    assert_eq!(
        post(&p, "/v1/chat/completions", MASTER, chat("pair"))
            .await
            .status,
        403
    );
    let u = post(&p, "/model/unblock", MASTER, json!({"model_id": ids[0]})).await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.body["model_info"]["blocked"], false, "{}", u.body);
    assert_eq!(
        reply_of(&p, MASTER, "pair").await,
        (200, "from a".to_string())
    );
    p.stop().await;
    place.cleanup().await;
}

/// The id of the first config (not stored) model in a `/model/info` answer.
fn ids_of_config(body: &Value) -> String {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["model_info"]["db_model"] == false)
        .and_then(|d| d["model_info"]["id"].as_str())
        .unwrap()
        .to_string()
}

both_backends!(
    blocked_models_serve_nothing_until_unblocked,
    models_are_added_served_updated_and_deleted_without_a_restart,
    keys_see_only_the_models_they_may_call,
    bad_models_are_refused_with_the_field,
    team_models_belong_to_their_team,
    wildcards_are_listed_as_the_models_they_serve,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_store_model_in_db_changes_are_refused_as_litellm_does() {
    let place = Place::new(Backend::Sqlite);
    let p = start(&place, "").await;
    for (path, body) in [
        ("/model/new", added("x", "y")),
        ("/model/update", json!({"model_info": {"id": "a"}})),
        ("/model/delete", json!({"id": "a"})),
    ] {
        let a = post(&p, path, MASTER, body).await;
        assert_eq!(a.status, 500, "{path}: {}", a.body);
        assert!(error_of(&a).1.contains("STORE_MODEL_IN_DB"), "{}", a.body);
    }
    // Listing works all the same.
    let info = get(&p, "/model/info", MASTER).await;
    assert_eq!(names(&info.body), ["mocky", "other"]);
    p.stop().await;
}

/// Two instances sharing one SQLite file and no Redis: the periodic reload carries a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_without_redis_follow_by_the_periodic_reload() {
    let place = Place::new(Backend::Sqlite);
    let cfg = store_support::config(&store_support::yaml("  store_model_in_db: true\n"));
    let mut s = store_support::settings(&cfg, &place);
    s.models.as_mut().unwrap().reload_every = Duration::from_millis(100);
    let a = start_with(cfg.clone(), s.clone()).await;
    let b = start_with(cfg, s).await;
    let r = post(&a, "/model/new", MASTER, added("shared", "from a")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if reply_of(&b, MASTER, "shared").await == (200, "from a".to_string()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "instance b never served the model added on a"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
}

/// Model info carries the price map's capability flags as LiteLLM shows them: the map's value
/// where it has one (gpt-4o: vision and function calling in LiteLLM's published list), `null`
/// for the usual flags it does not set; a group has a flag when any deployment has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_info_shows_the_price_maps_capability_flags() {
    let place = Place::new(Backend::Sqlite);
    let p = start(&place, "  store_model_in_db: true\n").await;
    let made = post(
        &p,
        "/model/new",
        MASTER,
        json!({"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "mock_response": "hi"}}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let info = get(&p, "/model/info", MASTER).await;
    let row = info.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["model_name"] == "gpt")
        .unwrap()
        .clone();
    let mi = &row["model_info"];
    assert_eq!(mi["supports_vision"], true, "{mi}");
    assert_eq!(mi["supports_function_calling"], true, "{mi}");
    assert_eq!(mi["supports_prompt_caching"], true, "{mi}");
    assert!(mi["supports_audio_input"].is_null(), "{mi}");
    let groups = get(&p, "/model_group/info?model_group=gpt", MASTER).await;
    let g = &groups.body["data"][0];
    assert_eq!(g["supports_vision"], true, "{g}");
    assert_eq!(g["supports_web_search"], false, "{g}");
    p.stop().await;
    place.cleanup().await;
}
