//! `os.environ/VAR` references, resolved once at load time wherever they appear, with the key
//! path recorded so that a missing variable is reported where it was used.

use serde_json::Value;

pub const PREFIX: &str = "os.environ/";

/// Where a value sits in the document, spelled as start-up errors show it:
/// `model_list[1].litellm_params.api_key`.
pub fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub struct Missing {
    pub path: String,
    pub var: String,
}

/// Replace every `os.environ/VAR` string with the variable's value and drop null-valued keys
/// (YAML's empty `general_settings:` means "defaults", not "wrong type").
pub fn resolve(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Missing> {
    match value {
        Value::String(s) => {
            if let Some(var) = s.strip_prefix(PREFIX) {
                let var = var.trim();
                match lookup(var) {
                    Some(v) => *s = v,
                    None => {
                        return Err(Missing {
                            path: path.to_string(),
                            var: var.to_string(),
                        });
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve(item, &format!("{path}[{i}]"), lookup)?;
            }
        }
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for (k, v) in map.iter_mut() {
                resolve(v, &join_key(path, k), lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_nested_and_reports_path_of_missing() {
        let env = |k: &str| (k == "A").then(|| "va".to_string());
        let mut v = json!({"x": [{"k": "os.environ/A"}], "n": null});
        assert!(resolve(&mut v, "", &env).is_ok());
        assert_eq!(v, json!({"x": [{"k": "va"}]}));
        let mut v = json!({"x": [1, {"k": "os.environ/B"}]});
        let err = resolve(&mut v, "", &env).err().map(|m| (m.path, m.var));
        assert_eq!(err, Some(("x[1].k".to_string(), "B".to_string())));
    }
}
