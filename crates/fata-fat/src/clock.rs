//! The time stamped on new and written files: the platform's wall clock in FAT's calendar form.

use fata::{Clock, SysClock};
use hadris_fat::time::FatDateTime;
use hadris_fat::time::TimeProvider;

/// The wall clock as hadris-fat's time source.
#[derive(Debug)]
pub(crate) struct WallClock;

/// The one clock every volume uses.
pub(crate) static WALL_CLOCK: WallClock = WallClock;

impl TimeProvider for WallClock {
    fn now(&self) -> FatDateTime {
        fat_time(SysClock.wall_clock_ns())
    }
}

/// A calendar date and time of day (UTC), as FAT stores it: two-second steps, years 1980 to 2107.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime {
    /// The year, 1980 to 2107.
    pub year: u16,
    /// The month, 1 to 12.
    pub month: u8,
    /// The day of the month, 1 to 31.
    pub day: u8,
    /// The hour, 0 to 23.
    pub hour: u8,
    /// The minute, 0 to 59.
    pub minute: u8,
    /// The second, 0 to 58 (FAT keeps even seconds).
    pub second: u8,
}

impl DateTime {
    /// Decodes FAT's packed date and time words.
    pub(crate) fn from_fat(stamp: FatDateTime) -> DateTime {
        DateTime {
            year: 1980 + (stamp.date >> 9),
            month: ((stamp.date >> 5) & 0x0F) as u8,
            day: (stamp.date & 0x1F) as u8,
            hour: (stamp.time >> 11) as u8,
            minute: ((stamp.time >> 5) & 0x3F) as u8,
            second: ((stamp.time & 0x1F) * 2) as u8,
        }
    }
}

/// Nanoseconds since 1970 (UTC) as a FAT time stamp; times before 1980 become 1980-01-01.
fn fat_time(unix_ns: u64) -> FatDateTime {
    let seconds = unix_ns / 1_000_000_000;
    let (year, month, day) = civil_from_days(seconds / 86400);
    let of_day = seconds % 86400;
    if year < 1980 {
        return FatDateTime::EPOCH;
    }
    let mut stamp = FatDateTime::new(
        u16::try_from(year).unwrap_or(u16::MAX),
        month,
        day,
        (of_day / 3600) as u8,
        (of_day / 60 % 60) as u8,
        (of_day % 60) as u8,
    );
    // Hundredths of a second within the two-second step, for the creation time.
    let hundredths = (of_day % 2) * 100 + unix_ns % 1_000_000_000 / 10_000_000;
    stamp.time_tenth = hundredths as u8;
    stamp
}

/// The proleptic Gregorian date `days` days after 1970-01-01: counted in 400-year eras of
/// 146097 days from 0000-03-01, so that each leap day falls at the end of its year.
fn civil_from_days(days: u64) -> (u64, u8, u8) {
    let days = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u8;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u8;
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_unix_time_to_the_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        // 2000-02-29, a leap day in a year divisible by 400.
        assert_eq!(civil_from_days(11016), (2000, 2, 29));
        assert_eq!(civil_from_days(11017), (2000, 3, 1));
        // 2024-12-31 and 2100-03-01 (2100 is not a leap year).
        assert_eq!(civil_from_days(20088), (2024, 12, 31));
        assert_eq!(civil_from_days(47541), (2100, 3, 1));
    }

    #[test]
    fn stamps_fat_times_and_reads_them_back() {
        // 2024-05-17 13:45:27.35 UTC.
        let ns = 1_715_953_527_350_000_000;
        let stamp = fat_time(ns);
        let when = DateTime::from_fat(stamp);
        assert_eq!(
            when,
            DateTime {
                year: 2024,
                month: 5,
                day: 17,
                hour: 13,
                minute: 45,
                second: 26
            }
        );
        assert_eq!(stamp.time_tenth, 135);
        assert_eq!(fat_time(0), FatDateTime::EPOCH);
    }
}
