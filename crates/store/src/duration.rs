//! LiteLLM durations (`30s`, `30m`, `30h`, `30d`, `2w`, `1mo`, and the words hourly, daily,
//! weekly, monthly, yearly): key expiry is `now + duration`; budget windows reset on aligned
//! boundaries in UTC like LiteLLM's `get_next_standardized_reset_time`.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};

use crate::error::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
    Years,
}

/// A parsed duration: `value` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlmDuration {
    pub value: u32,
    pub unit: Unit,
}

/// The longest duration accepted anywhere (expiry, budget window, retention, grace period):
/// longer spans are typos, and dates beyond chrono's range would panic in the arithmetic.
pub const MAX_DAYS: u64 = 100 * 366;

/// Why a duration was refused.
enum Refused {
    Syntax,
    TooLong,
}

impl LlmDuration {
    /// Parses `(\d+)(s|m|h|d|w|mo)?` (no unit means seconds) or a word alias; `None` also for
    /// a span over [`MAX_DAYS`].
    pub fn parse(text: &str) -> Option<LlmDuration> {
        Self::parse_checked(text).ok()
    }

    fn parse_checked(text: &str) -> Result<LlmDuration, Refused> {
        let d = Self::parse_syntax(text)?;
        if d.approx_seconds() > MAX_DAYS * 86_400 {
            return Err(Refused::TooLong);
        }
        Ok(d)
    }

    /// The span in seconds, months as 31 days and years as 366: an upper bound, for checks
    /// and comparisons.
    pub fn approx_seconds(self) -> u64 {
        let unit: u64 = match self.unit {
            Unit::Seconds => 1,
            Unit::Minutes => 60,
            Unit::Hours => 3_600,
            Unit::Days => 86_400,
            Unit::Weeks => 7 * 86_400,
            Unit::Months => 31 * 86_400,
            Unit::Years => 366 * 86_400,
        };
        u64::from(self.value).saturating_mul(unit)
    }

    fn parse_syntax(text: &str) -> Result<LlmDuration, Refused> {
        let t = text.trim();
        let word = |value, unit| Ok(LlmDuration { value, unit });
        match t {
            "hourly" => return word(1, Unit::Hours),
            "daily" => return word(1, Unit::Days),
            "weekly" => return word(7, Unit::Days),
            "monthly" => return word(30, Unit::Days),
            "yearly" => return word(1, Unit::Years),
            _ => {}
        }
        let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(Refused::Syntax);
        }
        let unit = match &t[digits..] {
            "" | "s" => Unit::Seconds,
            "m" => Unit::Minutes,
            "h" => Unit::Hours,
            "d" => Unit::Days,
            "w" => Unit::Weeks,
            "mo" => Unit::Months,
            _ => return Err(Refused::Syntax),
        };
        // All digits: a number that does not fit is too long, not malformed.
        let value: u32 = t[..digits].parse().map_err(|_| Refused::TooLong)?;
        if value == 0 {
            return Err(Refused::Syntax);
        }
        Ok(LlmDuration { value, unit })
    }

    /// Parses or answers 400 naming the field and the value.
    pub fn parse_field(text: &str, field: &str) -> Result<LlmDuration, StoreError> {
        LlmDuration::parse_checked(text).map_err(|why| {
            let message = match why {
                Refused::Syntax => format!(
                    "Invalid {field} '{text}': use a positive number followed by s, m, h, d, w or mo (e.g. 30s, 30m, 30h, 30d, 1w, 1mo), or one of hourly, daily, weekly, monthly, yearly"
                ),
                Refused::TooLong => format!(
                    "Invalid {field} '{text}': longer than the maximum of {MAX_DAYS} days"
                ),
            };
            StoreError::bad_request(message, field)
        })
    }

    /// Exact expiry: `now + duration` (months and years on the calendar).
    pub fn after(self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.shift(now, true)
    }

    /// `now - duration` (months and years on the calendar): a retention window's start.
    pub fn before(self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.shift(now, false)
    }

    fn shift(self, now: DateTime<Utc>, forward: bool) -> DateTime<Utc> {
        let v = i64::from(self.value);
        let (span, months) = match self.unit {
            Unit::Seconds => (Duration::seconds(v), None),
            Unit::Minutes => (Duration::minutes(v), None),
            Unit::Hours => (Duration::hours(v), None),
            Unit::Days => (Duration::days(v), None),
            Unit::Weeks => (Duration::weeks(v), None),
            // On the calendar; the day count only if the date leaves chrono's range.
            Unit::Months => (Duration::days(30 * v), Some(self.value)),
            Unit::Years => (Duration::days(365 * v), Some(self.value.saturating_mul(12))),
        };
        // Within MAX_DAYS of a present-day `now` these cannot fail; saturate rather than panic.
        let by_days = if forward {
            now.checked_add_signed(span)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        } else {
            now.checked_sub_signed(span)
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        match months.map(Months::new) {
            None => by_days,
            Some(m) if forward => now.checked_add_months(m).unwrap_or(by_days),
            Some(m) => now.checked_sub_months(m).unwrap_or(by_days),
        }
    }

    /// The next budget reset strictly after `now`, aligned like LiteLLM: sub-day windows on
    /// multiples of the window counted from midnight (capped at midnight), `1d` at midnight,
    /// `7d`/`1w` on Monday, `30d`/`Nmo` on the 1st of the month, yearly on January 1st.
    pub fn next_reset(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let midnight = day_start(now);
        let next_midnight = midnight + Duration::days(1);
        let since_midnight = (now - midnight).num_seconds();
        let aligned = |step: i64| {
            let next = midnight + Duration::seconds((since_midnight / step + 1) * step);
            next.min(next_midnight)
        };
        let v = i64::from(self.value);
        match (self.unit, self.value) {
            (Unit::Seconds, _) => aligned(v),
            (Unit::Minutes, _) => aligned(v * 60),
            (Unit::Hours, _) => aligned(v * 3600),
            (Unit::Days, 1) => next_midnight,
            (Unit::Days, 7) | (Unit::Weeks, 1) => next_monday(now),
            (Unit::Days, 30) => first_of_month_after(now, 1),
            (Unit::Days, _) => midnight
                .checked_add_signed(Duration::days(v))
                .unwrap_or(next_midnight),
            (Unit::Weeks, _) => next_monday(now)
                .checked_add_signed(Duration::weeks(v - 1))
                .unwrap_or(next_midnight),
            (Unit::Months, _) => first_of_month_after(now, self.value),
            (Unit::Years, _) => i32::try_from(self.value)
                .ok()
                .and_then(|y| now.year().checked_add(y))
                .and_then(|y| Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).single())
                .unwrap_or(next_midnight),
        }
    }
}

fn day_start(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|n| n.and_utc())
        .unwrap_or(t)
}

fn next_monday(now: DateTime<Utc>) -> DateTime<Utc> {
    let days_from_monday = i64::from(now.weekday().num_days_from_monday());
    day_start(now) + Duration::days(7 - days_from_monday)
}

fn first_of_month_after(now: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    let first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1)
        .and_then(|d| d.checked_add_months(Months::new(months)))
        .and_then(|d| d.and_hms_opt(0, 0, 0));
    match first {
        Some(d) => d.and_utc(),
        None => day_start(now) + Duration::days(30),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn before_is_the_window_start_on_the_calendar() {
        let now = at("2026-03-31T12:00:00Z");
        let d = |t: &str| LlmDuration::parse(t).unwrap_or_else(|| panic!("{t}"));
        assert_eq!(d("30d").before(now), at("2026-03-01T12:00:00Z"));
        assert_eq!(d("1h").before(now), at("2026-03-31T11:00:00Z"));
        assert_eq!(d("2w").before(now), at("2026-03-17T12:00:00Z"));
        // A month back from the 31st of March is the last day of February.
        assert_eq!(d("1mo").before(now), at("2026-02-28T12:00:00Z"));
        assert_eq!(d("yearly").before(now), at("2025-03-31T12:00:00Z"));
    }

    #[test]
    fn parses_litellm_syntax_and_words() {
        assert_eq!(
            LlmDuration::parse("30s"),
            Some(LlmDuration {
                value: 30,
                unit: Unit::Seconds
            })
        );
        assert_eq!(
            LlmDuration::parse("1mo"),
            Some(LlmDuration {
                value: 1,
                unit: Unit::Months
            })
        );
        assert_eq!(
            LlmDuration::parse("2w"),
            Some(LlmDuration {
                value: 2,
                unit: Unit::Weeks
            })
        );
        assert_eq!(
            LlmDuration::parse("45"),
            Some(LlmDuration {
                value: 45,
                unit: Unit::Seconds
            })
        );
        assert_eq!(
            LlmDuration::parse("monthly"),
            Some(LlmDuration {
                value: 30,
                unit: Unit::Days
            })
        );
        assert_eq!(
            LlmDuration::parse("yearly"),
            Some(LlmDuration {
                value: 1,
                unit: Unit::Years
            })
        );
        for bad in ["", "d", "5x", "1.5h", "-3d", "0d", "mo"] {
            assert_eq!(LlmDuration::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn absurd_spans_are_refused_naming_the_field_never_a_panic() {
        for long in [
            "99999999d",
            "4294967295w",
            "99999mo",
            "99999999999s",
            "36700d",
        ] {
            assert_eq!(LlmDuration::parse(long), None, "{long}");
            let e = LlmDuration::parse_field(long, "budget_duration")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains("budget_duration") && e.contains("maximum"),
                "{e}"
            );
        }
        assert!(LlmDuration::parse("36500d").is_some());
        assert!(LlmDuration::parse("1000mo").is_some());
        // The extremes that are accepted stay in range from any date chrono can hold.
        let late = at("9999-06-01T00:00:00Z");
        for d in ["36500d", "1000mo", "5200w", "yearly"] {
            let d = LlmDuration::parse(d).unwrap_or_else(|| panic!("{d}"));
            let _ = (d.after(late), d.before(late), d.next_reset(late));
        }
    }

    #[test]
    fn budget_resets_align_to_boundaries() {
        let now = at("2026-11-25T15:20:53Z"); // a Wednesday
        let p = |s| {
            LlmDuration::parse(s).unwrap_or(LlmDuration {
                value: 1,
                unit: Unit::Seconds,
            })
        };
        assert_eq!(p("30s").next_reset(now), at("2026-11-25T15:21:00Z"));
        assert_eq!(p("30m").next_reset(now), at("2026-11-25T15:30:00Z"));
        assert_eq!(p("1h").next_reset(now), at("2026-11-25T16:00:00Z"));
        assert_eq!(p("5h").next_reset(now), at("2026-11-25T20:00:00Z"));
        assert_eq!(p("7h").next_reset(now), at("2026-11-25T21:00:00Z"));
        assert_eq!(p("30h").next_reset(now), at("2026-11-26T00:00:00Z"));
        assert_eq!(p("daily").next_reset(now), at("2026-11-26T00:00:00Z"));
        assert_eq!(p("weekly").next_reset(now), at("2026-11-30T00:00:00Z"));
        assert_eq!(p("1w").next_reset(now), at("2026-11-30T00:00:00Z"));
        assert_eq!(p("monthly").next_reset(now), at("2026-12-01T00:00:00Z"));
        assert_eq!(p("1mo").next_reset(now), at("2026-12-01T00:00:00Z"));
        assert_eq!(p("2mo").next_reset(now), at("2027-01-01T00:00:00Z"));
        assert_eq!(p("yearly").next_reset(now), at("2027-01-01T00:00:00Z"));
        assert_eq!(p("3d").next_reset(now), at("2026-11-28T00:00:00Z"));
    }

    #[test]
    fn expiry_is_exact() {
        let now = at("2026-11-25T15:20:53Z");
        let p = |s| {
            LlmDuration::parse(s).unwrap_or(LlmDuration {
                value: 1,
                unit: Unit::Seconds,
            })
        };
        assert_eq!(p("30s").after(now), at("2026-11-25T15:21:23Z"));
        assert_eq!(p("1mo").after(now), at("2026-12-25T15:20:53Z"));
    }
}
