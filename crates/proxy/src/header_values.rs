//! Header values the gateway writes on every answer (durations, retry counts, limits, dollar
//! amounts), made without the allocation `HeaderValue::from(u64)` and `from_str` each take:
//! eight of a request's hundred-odd allocations were these.

use std::sync::LazyLock;

use http::HeaderValue;

/// Numbers below this come from a table: overhead milliseconds, retry counts and most
/// configured limits are small.
const TABLED: u64 = 1024;

static SMALL: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    // One string holds every number's digits, kept for the life of the process, so each value
    // is a static slice and cloning it copies two words.
    let digits: &'static str = Box::leak(
        (0..TABLED)
            .map(|n| n.to_string())
            .collect::<String>()
            .into_boxed_str(),
    );
    let mut at = 0;
    (0..TABLED)
        .map(|n| {
            let len = n.checked_ilog10().map_or(1, |l| l as usize + 1);
            let v = HeaderValue::from_static(&digits[at..at + len]);
            at += len;
            v
        })
        .collect()
});

/// `n` as a header value.
pub(crate) fn number(n: u64) -> HeaderValue {
    usize::try_from(n)
        .ok()
        .and_then(|i| SMALL.get(i))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(n))
}

/// `n` as a header value, negative numbers included (a key's limits are stored signed).
pub(crate) fn signed(n: i64) -> HeaderValue {
    u64::try_from(n).map_or_else(|_| HeaderValue::from(n), number)
}

/// Text already built for a header, moved in rather than copied; `None` if it cannot be a
/// header value.
pub(crate) fn owned(text: String) -> Option<HeaderValue> {
    HeaderValue::try_from(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_their_decimal_text() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            999,
            1000,
            1023,
            1024,
            1025,
            65_536,
            u64::MAX,
        ] {
            assert_eq!(number(n), HeaderValue::from(n), "{n}");
            assert_eq!(number(n).to_str().unwrap(), n.to_string());
        }
        for n in [i64::MIN, -1, 0, 7, 1024, i64::MAX] {
            assert_eq!(signed(n).to_str().unwrap(), n.to_string());
        }
    }

    #[test]
    fn owned_text_is_refused_where_a_header_cannot_hold_it() {
        assert_eq!(owned("0.00251".to_string()).unwrap(), "0.00251");
        assert!(owned("a\nb".to_string()).is_none());
    }
}
