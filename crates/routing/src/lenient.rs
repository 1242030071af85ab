//! Config values arrive as YAML numbers, or as strings once `os.environ/VAR` references are
//! resolved; accept both, as LiteLLM's Python does.

use serde::de::Error;
use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

fn raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Raw>, D::Error> {
    Option::<Raw>::deserialize(d)
}

pub(crate) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match raw(d)? {
        None => Ok(None),
        Some(Raw::Int(i)) => Ok(Some(i as f64)),
        Some(Raw::Float(f)) => Ok(Some(f)),
        Some(Raw::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(Raw::Str(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("expected a number, got {s:?}"))),
        Some(Raw::Bool(b)) => Err(D::Error::custom(format!("expected a number, got {b}"))),
    }
}

pub(crate) fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
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

pub(crate) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match raw(d)? {
        None => Ok(None),
        Some(Raw::Bool(b)) => Ok(Some(b)),
        Some(Raw::Int(0)) => Ok(Some(false)),
        Some(Raw::Int(1)) => Ok(Some(true)),
        Some(Raw::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" | "" => Ok(Some(false)),
            _ => Err(D::Error::custom(format!(
                "expected true or false, got {s:?}"
            ))),
        },
        Some(Raw::Int(i)) => Err(D::Error::custom(format!("expected true or false, got {i}"))),
        Some(Raw::Float(f)) => Err(D::Error::custom(format!("expected true or false, got {f}"))),
    }
}

pub(crate) fn bool_or_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_bool(d)?.unwrap_or(false))
}

pub(crate) fn f64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(opt_f64(d)?.unwrap_or(0.0))
}
