//! Config values arrive as YAML numbers, or as strings once `os.environ/VAR` references are
//! resolved; accept both, as LiteLLM's Python does. The one definition of these readers: the
//! proxy's config reads its numbers and booleans through them too, so `""`, `"inf"` or `1`
//! mean the same in `router_settings` as anywhere else.

use std::collections::BTreeMap;

use serde::de::{Error, IgnoredAny};
use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<IgnoredAny>),
    Map(BTreeMap<String, IgnoredAny>),
}

impl Raw {
    /// The value as an error message names it.
    fn shown(&self) -> String {
        match self {
            Raw::Bool(b) => b.to_string(),
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Str(s) => format!("{s:?}"),
            Raw::List(items) if items.is_empty() => "an empty list".to_string(),
            Raw::List(_) => "a list".to_string(),
            Raw::Map(entries) if entries.is_empty() => "an empty mapping".to_string(),
            Raw::Map(_) => "a mapping".to_string(),
        }
    }
}

fn raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Raw>, D::Error> {
    Option::<Raw>::deserialize(d)
}

/// A finite number, or a string holding one. An empty string (a variable set to nothing) and
/// `"inf"`/`"nan"` are errors naming the value, never a silent default.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let Some(r) = raw(d)? else {
        return Ok(None);
    };
    let value = match &r {
        Raw::Int(i) => Some(*i as f64),
        Raw::Float(f) => Some(*f),
        Raw::Str(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match value.filter(|f| f.is_finite()) {
        Some(f) => Ok(Some(f)),
        None => Err(D::Error::custom(format!(
            "expected a number, got {}",
            r.shown()
        ))),
    }
}

pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(f) = opt_f64(d)? else {
        return Ok(None);
    };
    if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) {
        Ok(Some(f as u32))
    } else {
        Err(D::Error::custom(format!(
            "expected a whole number of at least 0, got {f}"
        )))
    }
}

/// `true`/`false`, `1`/`0`, or a string of `true|yes|1` / `false|no|0|""` in any case.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let Some(r) = raw(d)? else {
        return Ok(None);
    };
    match &r {
        Raw::Bool(b) => Ok(Some(*b)),
        Raw::Int(0) => Ok(Some(false)),
        Raw::Int(1) => Ok(Some(true)),
        Raw::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" | "" => Ok(Some(false)),
            _ => Err(D::Error::custom(format!(
                "expected true or false, got {}",
                r.shown()
            ))),
        },
        _ => Err(D::Error::custom(format!(
            "expected true or false, got {}",
            r.shown()
        ))),
    }
}

pub(crate) fn bool_or_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_bool(d)?.unwrap_or(false))
}

pub(crate) fn bool_or_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_bool(d)?.unwrap_or(true))
}

pub(crate) fn f64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(opt_f64(d)?.unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct S {
        #[serde(default, deserialize_with = "super::opt_f64")]
        n: Option<f64>,
        #[serde(default, deserialize_with = "super::opt_bool")]
        b: Option<bool>,
    }

    fn read(json: &str) -> Result<S, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_as_litellm_takes_them_and_nothing_silently_defaulted() {
        assert_eq!(read(r#"{"n": 2}"#).unwrap().n, Some(2.0));
        assert_eq!(read(r#"{"n": " 2.5 "}"#).unwrap().n, Some(2.5));
        assert_eq!(read(r#"{}"#).unwrap().n, None);
        assert_eq!(read(r#"{"n": null}"#).unwrap().n, None);
        for (bad, named) in [
            (r#""""#, r#"got """#),
            (r#""inf""#, r#"got "inf""#),
            (r#""NaN""#, r#"got "NaN""#),
            (r#"true"#, "got true"),
            (r#"[1]"#, "got a list"),
            (r#"{"a": 1}"#, "got a mapping"),
        ] {
            let err = read(&format!(r#"{{"n": {bad}}}"#)).unwrap_err();
            assert!(
                err.contains("expected a number") && err.contains(named),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn booleans_from_words_and_digits() {
        for (v, want) in [
            ("true", true),
            ("0", false),
            (r#""Yes""#, true),
            (r#""""#, false),
        ] {
            assert_eq!(
                read(&format!(r#"{{"b": {v}}}"#)).unwrap().b,
                Some(want),
                "{v}"
            );
        }
        let err = read(r#"{"b": "maybe"}"#).unwrap_err();
        assert!(
            err.contains(r#"expected true or false, got "maybe""#),
            "{err}"
        );
        let err = read(r#"{"b": 2}"#).unwrap_err();
        assert!(err.contains("expected true or false, got 2"), "{err}");
    }
}
