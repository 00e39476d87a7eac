//! Target schedules: standard cron as people know it from Vixie cron and
//! crontab(5) — five fields (minute hour day-of-month month day-of-week) or
//! six with seconds first; day of week 0–7 with 0 and 7 both Sunday and
//! 1 Monday; when both day of month and day of week are restricted, either
//! matching is enough. Parsed by `croner`, which follows those POSIX/Vixie
//! rules (the `cron` crate uses Quartz's, where 1 is Sunday), and evaluated
//! in the target's timezone.

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    timezone: chrono_tz::Tz,
    text: String,
}

impl Schedule {
    pub fn parse(text: &str, timezone: chrono_tz::Tz) -> Result<Schedule, String> {
        let fields = text.split_whitespace().count();
        if !(fields == 5 || fields == 6) {
            return Err(format!(
                "schedule {text:?} has {fields} fields; use 5 (minute hour day month weekday) or 6 (seconds first)"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            // Vixie: day of month OR day of week when both are restricted.
            .dom_and_dow(false)
            .build()
            .parse(text)
            .map_err(|e| format!("schedule {text:?}: {e}"))?;
        Ok(Schedule {
            cron,
            timezone,
            text: text.to_string(),
        })
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap()
    }

    #[test]
    fn weekdays_follow_vixie_one_is_monday() {
        // 2026-11-22 is a Sunday.
        let s = Schedule::parse("0 9 * * 1-5", chrono_tz::UTC).unwrap();
        let next = s.next_after(utc(2026, 11, 22, 12, 0)).unwrap();
        assert_eq!((next.weekday(), next.hour()), (Weekday::Mon, 9));
        let after_friday = s.next_after(utc(2026, 11, 27, 9, 0)).unwrap();
        assert_eq!(after_friday.weekday(), Weekday::Mon, "Saturday and Sunday are skipped");
    }

    #[test]
    fn zero_and_seven_are_both_sunday() {
        for text in ["0 6 * * 0", "0 6 * * 7", "0 6 * * SUN"] {
            let s = Schedule::parse(text, chrono_tz::UTC).unwrap();
            let next = s.next_after(utc(2026, 11, 23, 0, 0)).unwrap();
            assert_eq!(next.weekday(), Weekday::Sun, "{text}");
        }
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // The 1st of the month OR any Monday (crontab(5)).
        let s = Schedule::parse("0 0 1 * 1", chrono_tz::UTC).unwrap();
        let next = s.next_after(utc(2026, 11, 22, 0, 0)).unwrap();
        assert_eq!((next.day(), next.weekday()), (23, Weekday::Mon));
        let next = s.next_after(utc(2026, 11, 30, 0, 0)).unwrap();
        assert_eq!(next.day(), 1, "the 1st of December, a Tuesday");
    }

    #[test]
    fn six_fields_have_seconds_first_and_timezones_apply() {
        let s = Schedule::parse("*/15 * * * * *", chrono_tz::UTC).unwrap();
        let next = s.next_after(utc(2026, 11, 22, 0, 0)).unwrap();
        assert_eq!(next.second(), 15);
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let s = Schedule::parse("0 9 * * *", berlin).unwrap();
        let next = s.next_after(utc(2026, 11, 22, 0, 0)).unwrap();
        assert_eq!(next.hour(), 8, "09:00 in Berlin is 08:00 UTC in winter");
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(Schedule::parse("* * * *", chrono_tz::UTC).is_err());
        assert!(Schedule::parse("61 * * * *", chrono_tz::UTC).is_err());
        assert!(Schedule::parse("0 0 * * * * 2026", chrono_tz::UTC).is_err());
    }
}
