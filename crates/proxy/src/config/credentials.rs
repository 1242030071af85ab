//! `credential_list`: named sets of provider fields (`api_key`, `api_base`, ...) that a
//! deployment takes by naming one in `litellm_credential_name`. As in LiteLLM, the credential
//! fills only the fields the deployment leaves unset. Unlike LiteLLM, which logs a warning and
//! calls the provider without them, a deployment naming a credential that does not exist is a
//! start-up error (or a refused `/model/new`): it could only fail, or reach the wrong account.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::ConfigError;

/// The config's named credentials. Its `Debug` shows names only: values hold secrets.
#[derive(Clone, Default)]
pub struct Credentials(BTreeMap<String, Credential>, Vec<String>);

#[derive(Clone)]
struct Credential {
    values: Map<String, Value>,
    info: Map<String, Value>,
    display_name: Option<String>,
    from_config: bool,
}

/// A credential kept in the store (`POST /credentials`), its secrets opened.
#[derive(Clone)]
pub struct StoredCredential {
    pub name: String,
    pub display_name: Option<String>,
    pub values: Map<String, Value>,
    pub info: Map<String, Value>,
}

/// One credential as the `/credentials` routes show it (values not yet masked).
pub struct CredentialView<'a> {
    pub name: &'a str,
    pub display_name: Option<&'a str>,
    pub values: &'a Map<String, Value>,
    pub info: &'a Map<String, Value>,
    /// `config` or `db`, LiteLLM's `source`.
    pub source: &'static str,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A deployment's `litellm_credential_name` that cannot be used: the reason (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCredential(pub String);

impl Credentials {
    /// The credential names with their `credential_info`, for listing.
    pub fn infos(&self) -> impl Iterator<Item = (&str, &Map<String, Value>)> {
        self.0.iter().map(|(k, c)| (k.as_str(), &c.info))
    }

    /// Every credential, by name.
    pub fn views(&self) -> impl Iterator<Item = CredentialView<'_>> {
        self.0.iter().map(|(name, c)| CredentialView {
            name,
            display_name: c.display_name.as_deref(),
            values: &c.values,
            info: &c.info,
            source: if c.from_config { "config" } else { "db" },
        })
    }

    /// The credential `name`, if there is one.
    pub fn view(&self, name: &str) -> Option<CredentialView<'_>> {
        self.views().find(|v| v.name == name)
    }

    /// The fields of `credential_list` entries that nothing reads (LiteLLM ignores them too),
    /// by path, for the start-up notices.
    pub fn ignored_fields(&self) -> &[String] {
        &self.1
    }

    /// Whether `name` comes from config.yaml (not editable over the API).
    pub fn is_config(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|c| c.from_config)
    }

    /// These (the config's) with the stored ones beside them. A config name wins over a
    /// stored one of the same name; the shadowed names are returned so they can be named.
    pub fn with_stored(&self, stored: Vec<StoredCredential>) -> (Credentials, Vec<String>) {
        let mut all = Credentials(
            self.0
                .iter()
                .filter(|(_, c)| c.from_config)
                .map(|(k, c)| (k.clone(), c.clone()))
                .collect(),
            self.1.clone(),
        );
        let mut shadowed = Vec::new();
        for c in stored {
            if all.0.contains_key(&c.name) {
                shadowed.push(c.name);
                continue;
            }
            all.0.insert(
                c.name,
                Credential {
                    values: c.values,
                    info: c.info,
                    display_name: c.display_name,
                    from_config: false,
                },
            );
        }
        (all, shadowed)
    }

    /// Fills the fields `params` (a deployment's `litellm_params`) leaves unset from the
    /// credential it names, if it names one.
    pub fn fill(&self, params: &mut Value) -> Result<(), UnknownCredential> {
        let Some(p) = params.as_object_mut() else {
            return Ok(());
        };
        let name = match p.get("litellm_credential_name") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(_) => return Err(UnknownCredential("must be a credential's name".into())),
        };
        let Some(c) = self.0.get(&name) else {
            let known = if self.0.is_empty() {
                "credential_list is empty".to_string()
            } else {
                format!(
                    "credential_list has {}",
                    self.0.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            };
            return Err(UnknownCredential(format!(
                "no credential named {name:?} ({known})"
            )));
        };
        for (k, v) in &c.values {
            if p.get(k).is_none_or(Value::is_null) {
                p.insert(k.clone(), v.clone());
            }
        }
        Ok(())
    }
}

/// Takes `credential_list` out of the (environment-resolved) config and fills every
/// `model_list` deployment that names a credential.
pub(super) fn apply(config: &mut Value, source: &str) -> Result<Credentials, ConfigError> {
    let invalid = |path: String, message: String| ConfigError::Invalid {
        file: source.to_string(),
        path,
        message,
    };
    let list = match config
        .as_object_mut()
        .and_then(|m| m.remove("credential_list"))
    {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(l)) => l,
        Some(_) => {
            return Err(invalid(
                "credential_list".into(),
                "must be a list of {credential_name, credential_values}".into(),
            ));
        }
    };
    let mut out = Credentials::default();
    for (i, item) in list.into_iter().enumerate() {
        let at = |k: &str| format!("credential_list[{i}].{k}");
        let Value::Object(mut item) = item else {
            return Err(invalid(
                format!("credential_list[{i}]"),
                "must be a mapping with credential_name and credential_values".into(),
            ));
        };
        let name = match item.remove("credential_name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                return Err(invalid(
                    at("credential_name"),
                    "must be a non-empty name".into(),
                ));
            }
        };
        let values = match item.remove("credential_values") {
            Some(Value::Object(m)) => m,
            // Values are secrets: the message names the field only.
            _ => {
                return Err(invalid(
                    at("credential_values"),
                    "must be a mapping of deployment fields (api_key, api_base, ...)".into(),
                ));
            }
        };
        let info = match item.remove("credential_info") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(invalid(at("credential_info"), "must be a mapping".into())),
        };
        let display_name = match item.remove("display_name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(_) => return Err(invalid(at("display_name"), "must be a string".into())),
        };
        out.1.extend(item.keys().map(|k| at(k)));
        if out.0.contains_key(&name) {
            return Err(invalid(
                at("credential_name"),
                format!("{name:?} is named twice"),
            ));
        }
        out.0.insert(
            name,
            Credential {
                values,
                info,
                display_name,
                from_config: true,
            },
        );
    }
    if let Some(Value::Array(models)) = config.get_mut("model_list") {
        for (i, m) in models.iter_mut().enumerate() {
            if let Some(p) = m.get_mut("litellm_params") {
                out.fill(p).map_err(|e| {
                    invalid(
                        format!("model_list[{i}].litellm_params.litellm_credential_name"),
                        e.0,
                    )
                })?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_credential_fills_only_unset_fields() {
        let mut cfg = json!({
            "credential_list": [
                {"credential_name": "az", "credential_values": {"api_key": "sk-a", "api_base": "https://a.example", "api_version": "2024-10-21"}, "credential_info": {"custom_llm_provider": "azure"}}
            ],
            "model_list": [
                {"model_name": "m", "litellm_params": {"model": "azure/m", "litellm_credential_name": "az", "api_base": "https://own.example"}},
                {"model_name": "n", "litellm_params": {"model": "openai/n"}}
            ]
        });
        let creds = apply(&mut cfg, "c.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg["model_list"][0]["litellm_params"],
            json!({"model": "azure/m", "litellm_credential_name": "az", "api_base": "https://own.example", "api_key": "sk-a", "api_version": "2024-10-21"})
        );
        assert_eq!(
            cfg["model_list"][1]["litellm_params"],
            json!({"model": "openai/n"})
        );
        assert!(cfg.get("credential_list").is_none());
        assert_eq!(format!("{creds:?}"), "{\"az\"}");
        let infos: Vec<_> = creds
            .infos()
            .map(|(n, i)| (n, Value::Object(i.clone())))
            .collect();
        assert_eq!(infos, [("az", json!({"custom_llm_provider": "azure"}))]);
        assert!(creds.ignored_fields().is_empty());

        let mut typo = json!({"credential_list": [{"credential_name": "x", "credential_values": {}, "credential_value": {"api_key": "sk-typo"}}]});
        let creds = apply(&mut typo, "c.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            creds.ignored_fields(),
            ["credential_list[0].credential_value"]
        );
    }

    #[test]
    fn an_unknown_name_and_bad_shapes_are_start_up_errors_without_values() {
        let cases = [
            (
                json!({"model_list": [{"litellm_params": {"model": "a", "litellm_credential_name": "nope"}}]}),
                "c.yaml: model_list[0].litellm_params.litellm_credential_name: no credential named \"nope\" (credential_list is empty)",
            ),
            (
                json!({"credential_list": [{"credential_name": "x", "credential_values": {"api_key": "sk-1"}}], "model_list": [{"litellm_params": {"model": "a", "litellm_credential_name": "y"}}]}),
                "c.yaml: model_list[0].litellm_params.litellm_credential_name: no credential named \"y\" (credential_list has x)",
            ),
            (
                json!({"credential_list": [{"credential_name": "x", "credential_values": "sk-secret"}]}),
                "c.yaml: credential_list[0].credential_values: must be a mapping of deployment fields (api_key, api_base, ...)",
            ),
            (
                json!({"credential_list": [{"credential_name": "x", "credential_values": {}}, {"credential_name": "x", "credential_values": {}}]}),
                "c.yaml: credential_list[1].credential_name: \"x\" is named twice",
            ),
            (
                json!({"credential_list": {"x": 1}}),
                "c.yaml: credential_list: must be a list of {credential_name, credential_values}",
            ),
            (
                json!({"credential_list": [{"credential_name": "x", "credential_values": {}, "display_name": 3}]}),
                "c.yaml: credential_list[0].display_name: must be a string",
            ),
        ];
        for (mut cfg, want) in cases {
            let e = apply(&mut cfg, "c.yaml").err().map(|e| e.to_string());
            assert_eq!(e.as_deref(), Some(want));
        }
    }
}
