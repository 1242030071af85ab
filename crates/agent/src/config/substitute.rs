//! `${VAR}` substitution in every string of the parsed config. Names are upper-case
//! (`[A-Z_][A-Z0-9_]*`); lower-case `${x}` stays literal; `$${VAR}` is an escape for a literal
//! `${VAR}`. A missing or empty variable is an error that names the field, never an empty value.

use serde_json::Value;

use crate::env::Env;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingVar {
    pub var: String,
    /// Dot path of the field, e.g. `models.providers.litellm.apiKey`.
    pub field: String,
}

pub fn substitute(value: &mut Value, env: &Env) -> Result<(), MissingVar> {
    walk(value, env, &mut String::new())
}

fn walk(value: &mut Value, env: &Env, path: &mut String) -> Result<(), MissingVar> {
    match value {
        Value::String(s) => {
            if s.contains('$') {
                *s = substitute_str(s, env, path)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, env, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk(v, env, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The name at the start of `s` if it is `{NAME}` with a valid upper-case name.
fn braced_name(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('{')?;
    let end = inner.find('}')?;
    let name = &inner[..end];
    let mut chars = name.chars();
    let first = chars.next()?;
    let ok = (first.is_ascii_uppercase() || first == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    ok.then_some(name)
}

pub fn substitute_str(s: &str, env: &Env, field: &str) -> Result<String, MissingVar> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(escaped) = after.strip_prefix('$')
            && let Some(name) = braced_name(escaped)
        {
            out.push_str("${");
            out.push_str(name);
            out.push('}');
            rest = &escaped[name.len() + 2..];
            continue;
        }
        if let Some(name) = braced_name(after) {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    return Err(MissingVar {
                        var: name.to_string(),
                        field: if field.is_empty() {
                            "<root>".to_string()
                        } else {
                            field.to_string()
                        },
                    });
                }
            }
            rest = &after[name.len() + 2..];
            continue;
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// True when the whole string is one `${VAR}` reference; returns the name.
pub fn whole_reference(s: &str) -> Option<&str> {
    let name = braced_name(s.trim().strip_prefix('$')?)?;
    (s.trim().len() == name.len() + 3).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn substitutes_escapes_and_leaves_lowercase() {
        let env = Env::from_pairs([("KEY", "sk-1"), ("HOST", "h")]);
        let got = substitute_str("a ${KEY} $${KEY} ${lower} $5 http://${HOST}:1", &env, "f");
        assert_eq!(got, Ok("a sk-1 ${KEY} ${lower} $5 http://h:1".to_string()));
    }

    #[test]
    fn missing_var_names_the_field_path() {
        let mut v = json!({"models": {"providers": {"litellm": {"apiKey": "${LITELLM_API_KEY}"}}},
                           "list": ["x", "${NOPE}"]});
        let env = Env::from_pairs([("LITELLM_API_KEY", "")]);
        let err = substitute(&mut v, &env).err();
        assert!(matches!(
            err,
            Some(MissingVar { ref var, ref field }) if (var == "LITELLM_API_KEY" && field == "models.providers.litellm.apiKey") || (var == "NOPE" && field == "list[1]")
        ));
    }

    #[test]
    fn whole_reference_detects_only_exact_refs() {
        assert_eq!(
            whole_reference("${LITELLM_API_KEY}"),
            Some("LITELLM_API_KEY")
        );
        assert_eq!(whole_reference("x${A}"), None);
        assert_eq!(whole_reference("${a}"), None);
    }
}
