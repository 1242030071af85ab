//! Deployments and credentials kept in the store (`store_model_in_db`) and how every instance
//! of a fleet follows their changes (a credential's change rebuilds the deployments naming it):
//!
//! - the instance that writes a change reloads the table and swaps its router at once, then
//!   publishes on `{redis_key_prefix}models`;
//! - every instance subscribed there reloads on a message (after subscribing, and after
//!   every re-subscription, it reloads once too, so a change made while it was not listening
//!   is not missed);
//! - every instance also reloads every [`ModelStoreSettings::reload_every`] (default 10 s), the
//!   safety net when Redis is down or absent (instances sharing only a database).
//!
//! A reload that finds the same rows as last time changes nothing (routing state is kept).

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use idlehands_store::{CredentialRow, ProxyModelRow, Store, StoreError};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::config::{StoredCredential, process_env};
use crate::models::ApiModel;
use crate::models::secrets::Cipher;
use crate::state::App;

/// How often stored deployments are re-read when no change was announced.
pub const DEFAULT_MODEL_RELOAD: Duration = Duration::from_secs(10);

/// `store_model_in_db`'s settings.
#[derive(Clone)]
pub struct ModelStoreSettings {
    /// `LITELLM_SALT_KEY`, else the master key: seals stored secrets.
    pub signing_key: crate::config::Secret,
    pub reload_every: Duration,
    /// The config's `credential_list`, which stored deployments may name.
    pub credentials: crate::config::Credentials,
}

impl std::fmt::Debug for ModelStoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelStoreSettings")
            .field("signing_key", &"<redacted>")
            .field("reload_every", &self.reload_every)
            .finish()
    }
}

/// Stored deployments and their fleet-wide reloads.
pub struct ModelSync {
    pub(crate) store: Store,
    pub(crate) cipher: Cipher,
    /// config.yaml's `credential_list`.
    config_credentials: crate::config::Credentials,
    /// Those and the stored ones (`/credentials`), as last read: what deployments may name.
    credentials: parking_lot::RwLock<crate::config::Credentials>,
    app: parking_lot::Mutex<Weak<App>>,
    /// Fingerprint of the rows last applied (or loaded before the gateway was built).
    applied: parking_lot::Mutex<Option<[u8; 32]>>,
    /// One reload at a time, so an older read never lands after a newer one.
    reloading: tokio::sync::Mutex<()>,
    redis: Option<RedisChannel>,
}

struct RedisChannel {
    client: redis::Client,
    channel: String,
    publisher: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
}

/// How long a publish or a subscribe may take before it counts as failed.
const REDIS_WAIT: Duration = Duration::from_secs(3);
/// Longest wait between two attempts to subscribe again.
const RESUBSCRIBE_MAX_WAIT: Duration = Duration::from_secs(1);

/// What a reload reads: the stored deployments and the stored credentials they may name.
struct Rows {
    models: Vec<ProxyModelRow>,
    credentials: Vec<CredentialRow>,
}

fn fingerprint(rows: &Rows) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut part = |p: &str| {
        h.update(p.len().to_le_bytes());
        h.update(p.as_bytes());
    };
    for r in &rows.models {
        part(&r.model_id);
        part(&r.model_name);
        part(&r.litellm_params);
        part(&r.model_info);
        part(&r.updated_at.timestamp_millis().to_string());
    }
    part("credentials");
    for c in &rows.credentials {
        part(&c.credential_name);
        part(c.display_name.as_deref().unwrap_or_default());
        part(&c.credential_values);
        part(&c.credential_info);
        part(&c.updated_at.timestamp_millis().to_string());
    }
    h.finalize().into()
}

impl ModelSync {
    pub(crate) fn new(
        store: Store,
        settings: &ModelStoreSettings,
        redis: Option<(&str, &str)>,
    ) -> Result<ModelSync, StoreError> {
        let redis = match redis {
            Some((url, prefix)) => Some(RedisChannel {
                client: redis::Client::open(url)?,
                channel: format!("{prefix}models"),
                publisher: tokio::sync::Mutex::new(None),
            }),
            None => None,
        };
        Ok(ModelSync {
            store,
            cipher: Cipher::new(settings.signing_key.expose()),
            config_credentials: settings.credentials.clone(),
            credentials: parking_lot::RwLock::new(settings.credentials.clone()),
            app: parking_lot::Mutex::new(Weak::new()),
            applied: parking_lot::Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
            redis,
        })
    }

    /// config.yaml's `credential_list`.
    pub(crate) fn config_credentials(&self) -> &crate::config::Credentials {
        &self.config_credentials
    }

    /// The credentials deployments may name: config.yaml's and the stored ones.
    pub(crate) fn credentials(&self) -> crate::config::Credentials {
        self.credentials.read().clone()
    }

    /// A stored credential row, its secrets opened; `None` (with a warning naming it, never a
    /// value) when it cannot be read.
    pub(crate) fn open_credential(&self, row: &CredentialRow) -> Option<StoredCredential> {
        let object = |text: &str, field: &str| match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            _ => Err(format!("{field} is not a JSON object")),
        };
        let opened = (|| {
            let sealed = object(&row.credential_values, "credential_values")?;
            let values = match self
                .cipher
                .open_params(&serde_json::Value::Object(sealed))
                .map_err(|e| e.to_string())?
            {
                serde_json::Value::Object(m) => m,
                _ => return Err("credential_values is not a JSON object".to_string()),
            };
            Ok::<_, String>(StoredCredential {
                name: row.credential_name.clone(),
                display_name: row.display_name.clone(),
                values,
                info: object(&row.credential_info, "credential_info")?,
            })
        })();
        match opened {
            Ok(c) => Some(c),
            Err(why) => {
                tracing::warn!(credential = %row.credential_name, "stored credential not used: {why}");
                None
            }
        }
    }

    /// The config's credentials with the stored `rows` beside them.
    fn merge_credentials(&self, rows: &[CredentialRow]) -> crate::config::Credentials {
        let stored = rows
            .iter()
            .filter_map(|r| self.open_credential(r))
            .collect();
        let (all, shadowed) = self.config_credentials.with_stored(stored);
        for name in shadowed {
            tracing::warn!(credential = %name, "stored credential not used: config.yaml has one of the same name");
        }
        all
    }

    async fn read_rows(&self) -> Result<Rows, StoreError> {
        Ok(Rows {
            models: self.store.list_models().await?,
            credentials: self.store.list_credentials().await?,
        })
    }

    /// The credentials and the deployments (built with them) that `rows` hold.
    fn build(&self, rows: &Rows) -> (crate::config::Credentials, Vec<ApiModel>) {
        let credentials = self.merge_credentials(&rows.credentials);
        let models = rows
            .models
            .iter()
            .filter_map(|r| self.parse_with(r, &credentials))
            .collect();
        (credentials, models)
    }

    /// A stored row as a deployment; `None` (with a warning naming the id, never a value)
    /// when it cannot serve.
    fn parse_with(
        &self,
        row: &ProxyModelRow,
        credentials: &crate::config::Credentials,
    ) -> Option<ApiModel> {
        let parsed = (|| {
            let params: serde_json::Value = serde_json::from_str(&row.litellm_params)
                .map_err(|e| format!("litellm_params is not JSON: {e}"))?;
            let info: serde_json::Value = serde_json::from_str(&row.model_info)
                .map_err(|e| format!("model_info is not JSON: {e}"))?;
            let params = self
                .cipher
                .open_params(&params)
                .map_err(|e| e.to_string())?;
            let mut m = ApiModel::from_parts(
                &row.model_id,
                &row.model_name,
                params,
                info,
                credentials,
                &process_env,
            )
            .map_err(|e| e.to_string())?;
            m.created_at = row.created_at;
            m.created_by = row.created_by.clone();
            m.updated_at = row.updated_at;
            m.updated_by = row.updated_by.clone();
            Ok::<_, String>(m)
        })();
        match parsed {
            Ok(m) => Some(m),
            Err(why) => {
                tracing::warn!(model_id = %row.model_id, "stored model not served: {why}");
                None
            }
        }
    }

    /// Before the gateway is built: the deployments it starts with.
    pub(crate) async fn initial(&self) -> Result<Vec<ApiModel>, StoreError> {
        let _one = self.reloading.lock().await;
        let rows = self.read_rows().await?;
        let (credentials, models) = self.build(&rows);
        *self.credentials.write() = credentials;
        *self.applied.lock() = Some(fingerprint(&rows));
        Ok(models)
    }

    /// The gateway whose router reloads swap.
    pub(crate) fn attach(&self, app: &Arc<App>) {
        *self.app.lock() = Arc::downgrade(app);
    }

    /// Re-reads the table and, when it changed, swaps the router.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _one = self.reloading.lock().await;
        let rows = self.read_rows().await?;
        let fp = fingerprint(&rows);
        if *self.applied.lock() == Some(fp) {
            return Ok(());
        }
        let Some(app) = self.app.lock().upgrade() else {
            return Ok(());
        };
        let (credentials, models) = self.build(&rows);
        app.set_api_models(models);
        // After the swap: whoever sees the new credentials is served by deployments built
        // with them.
        *self.credentials.write() = credentials;
        *self.applied.lock() = Some(fp);
        Ok(())
    }

    /// After this instance wrote a change: apply it here, then tell the fleet.
    pub(crate) async fn changed(&self) -> Result<(), StoreError> {
        self.reload().await?;
        self.publish().await;
        Ok(())
    }

    async fn publish(&self) {
        let Some(r) = &self.redis else {
            return;
        };
        let mut slot = r.publisher.lock().await;
        if slot.is_none() {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_connection_timeout(REDIS_WAIT)
                .set_response_timeout(REDIS_WAIT);
            match r.client.get_connection_manager_with_config(config).await {
                Ok(c) => *slot = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "model change not announced on Redis; other instances see it at their next periodic reload");
                    return;
                }
            }
        }
        let Some(conn) = slot.as_mut() else {
            return;
        };
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&r.channel)
            .arg("reload")
            .query_async(conn)
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "model change not announced on Redis; other instances see it at their next periodic reload");
        }
    }

    /// The background work: the periodic reload, and the Redis listener when there is one.
    pub(crate) fn start(self: &Arc<Self>, every: Duration) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = me.reload().await {
                    tracing::warn!(error = %e, "periodic reload of stored models failed; retried at the next one");
                }
            }
        }));
        if self.redis.is_some() {
            let me = self.clone();
            tasks.push(tokio::spawn(async move { me.listen().await }));
        }
        tasks
    }

    async fn subscribe(&self) -> Option<redis::aio::PubSub> {
        let r = self.redis.as_ref()?;
        let work = async {
            let mut pubsub = r.client.get_async_pubsub().await?;
            pubsub.subscribe(&r.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(REDIS_WAIT, work).await {
            Ok(Ok(p)) => Some(p),
            _ => None,
        }
    }

    async fn listen(&self) {
        let mut wait = Duration::from_millis(100);
        loop {
            let Some(mut pubsub) = self.subscribe().await else {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RESUBSCRIBE_MAX_WAIT);
                continue;
            };
            wait = Duration::from_millis(100);
            // Changes announced before the subscription took effect were not heard.
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "reloading stored models failed; retried at the next change or period");
            }
            {
                let mut messages = pubsub.on_message();
                while messages.next().await.is_some() {
                    if let Err(e) = self.reload().await {
                        tracing::warn!(error = %e, "reloading stored models failed; retried at the next change or period");
                    }
                }
            }
            tracing::warn!("model change subscription lost; subscribing again");
        }
    }
}
