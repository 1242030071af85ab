#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `/credentials` on SQLite and Postgres with `store_model_in_db`: a credential added over the
//! API is kept sealed, listed masked, named by a stored deployment that then reaches a strict
//! upstream with its values; an edit reaches that deployment (and survives a restart); a
//! masked read-back keeps the secret; an edit or a delete that would break the deployment is
//! refused; config.yaml's credentials are read only; only admins may use the routes; two
//! instances on one Postgres and Redis follow each other's changes.

mod store_support;

use std::time::{Duration, Instant};

use idlehands_testkit::FakeOpenAi;
use serde_json::{Value, json};
use store_support::{
    Answer, Backend, MASTER, Place, Proxy, chat, client, generate, get, post, redis_url, send,
    settings, start_with,
};

const KEY_ONE: &str = "sk-credential-one-0001";
const KEY_TWO: &str = "sk-credential-two-0002";
const CONFIG_KEY: &str = "sk-config-credential-0003";

/// `general` goes under `general_settings`, `rest` after the credentials.
fn yaml(general: &str, rest: &str) -> String {
    store_support::yaml(&format!(
        "  store_model_in_db: true
{general}credential_list:
  - credential_name: from-config
    credential_values:
      api_key: {CONFIG_KEY}
    credential_info:
      description: kept in config.yaml
{rest}"
    ))
}

async fn start(place: &Place) -> Proxy {
    let cfg = store_support::config(&yaml("", ""));
    let s = settings(&cfg, place);
    start_with(cfg, s).await
}

async fn patch(p: &Proxy, path: &str, key: &str, body: Value) -> Answer {
    send(client().patch(p.url(path)).bearer_auth(key).json(&body)).await
}

async fn delete(p: &Proxy, path: &str, key: &str) -> Answer {
    send(client().delete(p.url(path)).bearer_auth(key)).await
}

/// The stored `credential_values` text of `name`, read straight from the database.
async fn stored_values(place: &Place, name: &str) -> String {
    store_support::stored_text(
        place,
        "idlehands_credentials",
        "credential_values",
        "credential_name",
        name,
    )
    .await
}

fn authorization(up: &FakeOpenAi) -> String {
    up.last_request()
        .unwrap()
        .header("authorization")
        .unwrap_or_default()
        .to_string()
}

async fn lifecycle(backend: Backend) {
    let place = Place::new(backend);
    let up = FakeOpenAi::start().await;
    up.require_key(KEY_ONE);
    let p = start(&place).await;

    let created = post(
        &p,
        "/credentials",
        MASTER,
        json!({
            "credential_name": "upstream",
            "display_name": "  The upstream  ",
            "credential_values": {"api_key": KEY_ONE, "api_base": up.base_url(), "organization": null},
            "credential_info": {"custom_llm_provider": "openai"},
        }),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(
        created.body,
        json!({"success": true, "message": "Credential created successfully"})
    );
    let noted = post(
        &p,
        "/credentials",
        MASTER,
        json!({"credential_name": "noted", "credential_values": {"api_key": "sk-noted"}, "credential_info": {}, "team_id": "t"}),
    )
    .await;
    assert_eq!(noted.status, 200, "{}", noted.body);
    assert!(
        noted.body["ignored_fields"]["team_id"].is_string(),
        "{}",
        noted.body
    );
    let again = post(
        &p,
        "/credentials",
        MASTER,
        json!({"credential_name": "upstream", "credential_values": {"api_key": "sk-other"}, "credential_info": {}}),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(
        again.body["error"]["message"],
        "Credential 'upstream' already exists. Update it with PATCH /credentials/upstream, or delete it first."
    );
    let neither = post(
        &p,
        "/credentials",
        MASTER,
        json!({"credential_name": "empty", "credential_info": {}}),
    )
    .await;
    assert_eq!(neither.status, 400, "{}", neither.body);

    // Sealed in the store, masked in every answer.
    let sealed = stored_values(&place, "upstream").await;
    assert!(!sealed.contains(KEY_ONE), "{sealed}");
    assert!(sealed.contains("v2:gcm:"), "{sealed}");
    let listed = get(&p, "/credentials", MASTER).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(
        !listed.body.to_string().contains(KEY_ONE),
        "{}",
        listed.body
    );
    let mine = listed.body["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["credential_name"] == "upstream")
        .cloned()
        .unwrap();
    assert_eq!(
        mine,
        json!({
            "credential_name": "upstream",
            "display_name": "The upstream",
            "credential_values": {"api_key": "sk****01", "api_base": up.base_url()},
            "credential_info": {"custom_llm_provider": "openai"},
            "source": "db",
        })
    );
    let one = get(&p, "/credentials/by_name/upstream", MASTER).await;
    assert_eq!(one.body, mine);

    // A stored deployment names it and reaches the strict upstream with its key.
    let added = post(
        &p,
        "/model/new",
        MASTER,
        json!({"model_name": "via-db-credential", "litellm_params": {"model": "openai/gpt-4o", "litellm_credential_name": "upstream"}, "model_info": {"id": "model-a"}}),
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let a = post(
        &p,
        "/v1/chat/completions",
        MASTER,
        chat("via-db-credential"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(authorization(&up), format!("Bearer {KEY_ONE}"));

    // A new key reaches the deployment at once; the old one is refused upstream from now on.
    up.require_key(KEY_TWO);
    let edited = patch(
        &p,
        "/credentials/upstream",
        MASTER,
        json!({"credential_values": {"api_key": KEY_TWO}, "credential_info": {"rotated": true}}),
    )
    .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(edited.body["message"], "Credential updated successfully");
    let a = post(
        &p,
        "/v1/chat/completions",
        MASTER,
        chat("via-db-credential"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(authorization(&up), format!("Bearer {KEY_TWO}"));

    // What a client was shown, sent back, keeps the secret; the display name can be cleared.
    let shown = get(&p, "/credentials/by_name/upstream", MASTER).await;
    let masked_key = shown.body["credential_values"]["api_key"].clone();
    assert_eq!(masked_key, "sk****02");
    let read_back = patch(
        &p,
        "/credentials/upstream",
        MASTER,
        json!({"credential_values": {"api_key": masked_key}, "credential_info": {}, "display_name": null}),
    )
    .await;
    assert_eq!(read_back.status, 200, "{}", read_back.body);
    let a = post(
        &p,
        "/v1/chat/completions",
        MASTER,
        chat("via-db-credential"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(authorization(&up), format!("Bearer {KEY_TWO}"));
    let shown = get(&p, "/credentials/by_name/upstream", MASTER).await;
    assert_eq!(shown.body["display_name"], Value::Null);
    assert_eq!(
        shown.body["credential_info"],
        json!({"custom_llm_provider": "openai", "rotated": true})
    );

    // An edit that would leave the deployment unable to serve is refused, naming it.
    let broken = patch(
        &p,
        "/credentials/upstream",
        MASTER,
        json!({"credential_values": {"api_base": "not-a-url"}, "credential_info": {}}),
    )
    .await;
    assert_eq!(broken.status, 400, "{}", broken.body);
    let message = broken.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("model-a") && message.contains("api_base"),
        "{}",
        broken.body
    );
    let renamed = patch(
        &p,
        "/credentials/upstream",
        MASTER,
        json!({"credential_name": "other", "credential_info": {}}),
    )
    .await;
    assert_eq!(renamed.status, 400, "{}", renamed.body);
    let overlap = patch(
        &p,
        "/credentials/upstream",
        MASTER,
        json!({"credential_values": {"api_key": "x"}, "credential_values_to_delete": ["api_key"], "credential_info": {}}),
    )
    .await;
    assert_eq!(overlap.status, 400, "{}", overlap.body);
    assert_eq!(
        overlap.body["error"]["message"],
        "credential_values_to_delete overlaps credential_values for key(s): ['api_key']"
    );

    // Kept across a restart.
    p.stop().await;
    let p = start(&place).await;
    let a = post(
        &p,
        "/v1/chat/completions",
        MASTER,
        chat("via-db-credential"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(authorization(&up), format!("Bearer {KEY_TWO}"));

    // Not deleted while a stored deployment names it.
    let in_use = delete(&p, "/credentials/upstream", MASTER).await;
    assert_eq!(in_use.status, 400, "{}", in_use.body);
    assert!(
        in_use.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("model-a"),
        "{}",
        in_use.body
    );
    let gone = post(&p, "/model/delete", MASTER, json!({"id": "model-a"})).await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    let deleted = delete(&p, "/credentials/upstream", MASTER).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body["message"], "Credential deleted successfully");
    let missing = get(&p, "/credentials/by_name/upstream", MASTER).await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(
        missing.body["error"]["message"],
        "Credential not found. Got credential name: upstream"
    );
    let twice = delete(&p, "/credentials/upstream", MASTER).await;
    assert_eq!(twice.status, 404, "{}", twice.body);
    let unknown = patch(
        &p,
        "/credentials/nope",
        MASTER,
        json!({"credential_info": {}}),
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(
        unknown.body["error"]["message"],
        "Credential not found in DB."
    );
    p.stop().await;
    place.cleanup().await;
}

both_backends!(lifecycle);

/// The config's own credential and deployment: read only over the API, and a credential can be
/// made from a deployment's fields (`model_id`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_credentials_are_read_only_and_deployments_lend_their_fields() {
    let place = Place::new(Backend::Sqlite);
    let up = FakeOpenAi::start().await;
    up.require_key(CONFIG_KEY);
    let cfg = store_support::config(&format!(
        "model_list:
  - model_name: config-model
    litellm_params:
      model: openai/gpt-4o
      api_base: {}
      litellm_credential_name: from-config
    model_info:
      id: config-model-id
general_settings:
  master_key: {MASTER}
  store_model_in_db: true
credential_list:
  - credential_name: from-config
    display_name: Config's
    credential_values:
      api_key: {CONFIG_KEY}
",
        up.base_url()
    ));
    let s = settings(&cfg, &place);
    let p = start_with(cfg, s).await;

    let listed = get(&p, "/credentials", MASTER).await;
    assert_eq!(
        listed.body["credentials"],
        json!([{
            "credential_name": "from-config",
            "display_name": "Config's",
            "credential_values": {"api_key": "sk****03"},
            "credential_info": {},
            "source": "config",
        }])
    );
    let taken = post(
        &p,
        "/credentials",
        MASTER,
        json!({"credential_name": "from-config", "credential_values": {"api_key": "sk-x"}, "credential_info": {}}),
    )
    .await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert_eq!(
        taken.body["error"]["message"],
        "Credential 'from-config' is defined in config. Edit config.yaml to change it."
    );
    for a in [
        patch(
            &p,
            "/credentials/from-config",
            MASTER,
            json!({"credential_info": {}}),
        )
        .await,
        delete(&p, "/credentials/from-config", MASTER).await,
    ] {
        assert_eq!(a.status, 405, "{}", a.body);
        assert_eq!(a.headers.get("allow").unwrap(), "GET");
        assert_eq!(a.body["error"]["type"], "validation_error");
    }

    // The deployment's fields, masked, under LiteLLM's made-up name.
    let lent = get(&p, "/credentials/by_model/config-model-id", MASTER).await;
    assert_eq!(lent.status, 200, "{}", lent.body);
    assert_eq!(
        lent.body,
        json!({
            "credential_name": "config-model-credential-config-model-id",
            "display_name": null,
            "credential_values": {"api_key": "sk****03", "api_base": up.base_url()},
            "credential_info": {},
        })
    );
    let none = get(&p, "/credentials/by_model/no-such-id", MASTER).await;
    assert_eq!(none.status, 404, "{}", none.body);

    // A credential made from that deployment serves a stored one with the same key and base.
    let made = post(
        &p,
        "/credentials",
        MASTER,
        json!({"credential_name": "copied", "model_id": "config-model-id", "credential_info": {}}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let added = post(
        &p,
        "/model/new",
        MASTER,
        json!({"model_name": "copy-user", "litellm_params": {"model": "openai/gpt-4o-mini", "litellm_credential_name": "copied"}}),
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let before = up.served();
    let a = post(&p, "/v1/chat/completions", MASTER, chat("copy-user")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(up.served(), before + 1);
    assert_eq!(authorization(&up), format!("Bearer {CONFIG_KEY}"));

    // Only admins: a virtual key is refused every route.
    let (key, _) = generate(&p, json!({})).await;
    for a in [
        get(&p, "/credentials", &key).await,
        get(&p, "/credentials/by_name/copied", &key).await,
        post(
            &p,
            "/credentials",
            &key,
            json!({"credential_name": "k", "credential_values": {"api_key": "sk-k"}, "credential_info": {}}),
        )
        .await,
        delete(&p, "/credentials/copied", &key).await,
    ] {
        assert_eq!(a.status, 403, "{}", a.body);
    }
    p.stop().await;
    place.cleanup().await;
}

/// Without `store_model_in_db` there is nowhere to keep one: LiteLLM's 500 says how to turn
/// it on, and the config's are still listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_stored_models_credentials_are_config_only() {
    let place = Place::new(Backend::Sqlite);
    let cfg = store_support::config(&format!(
        "{}credential_list:
  - credential_name: only-config
    credential_values:
      api_key: sk-only-config-0004
",
        store_support::yaml("")
    ));
    let s = settings(&cfg, &place);
    let p = start_with(cfg, s).await;
    let refused = post(
        &p,
        "/credentials",
        MASTER,
        json!({"credential_name": "x", "credential_values": {"api_key": "sk-x"}, "credential_info": {}}),
    )
    .await;
    assert_eq!(refused.status, 500, "{}", refused.body);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("STORE_MODEL_IN_DB"),
        "{}",
        refused.body
    );
    let listed = get(&p, "/credentials", MASTER).await;
    assert_eq!(
        listed.body["credentials"][0]["credential_values"]["api_key"],
        "sk****04"
    );
    p.stop().await;
    place.cleanup().await;
}

async fn fleet_instance(place: &Place, prefix: &str) -> Proxy {
    let cfg = store_support::config(&yaml(
        &format!("  redis_key_prefix: \"{prefix}\"\n"),
        &format!("router_settings:\n  redis_url: {}\n", redis_url()),
    ));
    let mut s = settings(&cfg, place);
    s.models.as_mut().expect("store_model_in_db").reload_every = Duration::from_secs(3600);
    start_with(cfg, s).await
}

/// Two instances on one Postgres and Redis (periodic reloads an hour apart, so only the
/// announcement can carry a change): a credential added on one can be named on the other at
/// once, and its edit reaches the other's deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_credential_change_on_one_instance_reaches_the_other() {
    let place = Place::new(Backend::Postgres);
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let up = FakeOpenAi::start().await;
    up.require_key(KEY_ONE);
    let a = fleet_instance(&place, &prefix).await;
    let b = fleet_instance(&place, &prefix).await;

    let created = post(
        &a,
        "/credentials",
        MASTER,
        json!({"credential_name": "shared", "credential_values": {"api_key": KEY_ONE, "api_base": up.base_url()}, "credential_info": {}}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = get(&b, "/credentials/by_name/shared", MASTER).await;
        if seen.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", seen.body);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let added = post(
        &b,
        "/model/new",
        MASTER,
        json!({"model_name": "fleet-cred", "litellm_params": {"model": "openai/gpt-4o", "litellm_credential_name": "shared"}}),
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.body);

    let r = post(&b, "/v1/chat/completions", MASTER, chat("fleet-cred")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(authorization(&up), format!("Bearer {KEY_ONE}"));

    up.require_key(KEY_TWO);
    let edited = patch(
        &a,
        "/credentials/shared",
        MASTER,
        json!({"credential_values": {"api_key": KEY_TWO}, "credential_info": {}}),
    )
    .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    // The other instance shows the new credential only once its deployments use it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = get(&b, "/credentials/by_name/shared", MASTER).await;
        if seen.body["credential_values"]["api_key"] == "sk****02" {
            break;
        }
        assert!(Instant::now() < deadline, "{}", seen.body);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = post(&b, "/v1/chat/completions", MASTER, chat("fleet-cred")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(authorization(&up), format!("Bearer {KEY_TWO}"));
    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}
