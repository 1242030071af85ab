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
    if v.is_finite() {
        // In this range ryu's shortest round-trip digits come out positional, as Python's
        // repr() writes them; it costs a fraction of `{:?}` (two of these per response).
        return ryu::Buffer::new().format_finite(v).to_string();
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
        // Python's repr() of each, checked against CPython 3.11.
        for (v, py) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (0.00009, "9e-05"),
            (123456789.125, "123456789.125"),
            (1e15, "1000000000000000.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (1.5e16, "1.5e+16"),
            (-2.5, "-2.5"),
            (1_000_000.0, "1000000.0"),
            (0.001_234_567_8, "0.0012345678"),
        ] {
            assert_eq!(py_float(v), py, "{v:e}");
        }
        // A tie between two shortest forms goes to the even digit, as in repr(); Rust's
        // `{:?}` (used here before) rounded it up.
        // (the double nearest this literal is exactly ...012.25)
        assert_eq!(py_float(723_452_228_110_012.2), "723452228110012.2");
        // Across the positional range: positional, round-trips, and as short as `{:?}`, on
        // a spread of magnitudes and digit counts.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mantissa = (x >> 11) as f64 / (1u64 << 53) as f64;
            let exp = (x % 21) as i32 - 4;
            let v = (1.0 + mantissa * 9.0) * 10f64.powi(exp);
            if (1e-4..1e16).contains(&v) {
                let s = py_float(v);
                assert!(!s.contains('e') && s.contains('.'), "{s}");
                assert_eq!(s.parse::<f64>().ok(), Some(v), "{s}");
                assert_eq!(s.len(), format!("{v:?}").len(), "{s}");
                assert_eq!(py_float(-v), format!("-{s}"));
            }
        }
    }
}
