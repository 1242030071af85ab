//! Money is integer nano-USD inside; LiteLLM's JSON shows USD floats (`spend`, `max_budget`).

use serde::{Deserializer, Serializer};

pub const NANOS_PER_USD: f64 = 1e9;

/// USD (from JSON) to nano-USD. `None` for NaN, infinities and values beyond i64.
pub fn usd_to_nanos(usd: f64) -> Option<i64> {
    if !usd.is_finite() {
        return None;
    }
    let nanos = (usd * NANOS_PER_USD).round();
    if nanos.abs() >= 9.0e18 {
        return None;
    }
    Some(nanos as i64)
}

pub fn nanos_to_usd(nanos: i64) -> f64 {
    nanos as f64 / NANOS_PER_USD
}

/// The USD amount as Python prints a float (`50.0`, `0.0123`), for messages and headers.
pub fn usd_string(nanos: i64) -> String {
    py_float(nanos_to_usd(nanos))
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16.
pub fn py_float(v: f64) -> String {
    let a = v.abs();
    if v != 0.0 && v.is_finite() && !(1e-4..1e16).contains(&a) {
        let s = format!("{v:e}");
        if let Some((mantissa, exp)) = s.split_once('e')
            && let Ok(exp) = exp.parse::<i32>()
        {
            let sign = if exp < 0 { '-' } else { '+' };
            return format!("{mantissa}e{sign}{:02}", exp.abs());
        }
        return s;
    }
    format!("{v:?}")
}

pub(crate) fn ser_usd<S: Serializer>(nanos: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(nanos_to_usd(*nanos))
}

pub(crate) fn ser_usd_opt<S: Serializer>(nanos: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match nanos {
        Some(n) => s.serialize_f64(nanos_to_usd(*n)),
        None => s.serialize_none(),
    }
}

pub(crate) fn de_usd<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let usd = <f64 as serde::Deserialize>::deserialize(d)?;
    usd_to_nanos(usd).ok_or_else(|| serde::de::Error::custom("amount out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_round_trips_through_nanos() {
        assert_eq!(usd_to_nanos(50.0), Some(50_000_000_000));
        assert_eq!(usd_to_nanos(0.000_001_5), Some(1_500));
        assert_eq!(usd_to_nanos(f64::NAN), None);
        assert_eq!(nanos_to_usd(1_500), 0.000_001_5);
        assert_eq!(usd_string(50_000_000_000), "50.0");
        assert_eq!(usd_string(15_000), "1.5e-05");
        assert_eq!(usd_string(100_000), "0.0001");
        assert_eq!(usd_string(0), "0.0");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(0.1 + 0.2), "0.30000000000000004");
    }
}
