//! Sending windows in the recipient's local time.
//!
//! The recipient's zone is the contact's own (`time_zone`, IANA) when given; otherwise every
//! zone of the number's country, and the window must be open in all of them. A US number
//! without a zone is therefore only messaged when it is, say, 9:00 to 20:00 from Honolulu to
//! New York: never too early or too late for anyone it could belong to.

use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// A daily window, minutes after local midnight: `[start, end)`. `start > end` wraps midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Opening minute.
    pub start: u32,
    /// Closing minute (exclusive).
    pub end: u32,
}

impl Window {
    fn contains(self, minute: u32) -> bool {
        if self.start <= self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// The zones a recipient may be in.
pub fn zones(contact_zone: Option<&str>, region: Option<&str>) -> Vec<Tz> {
    if let Some(tz) = contact_zone.and_then(|z| Tz::from_str(z).ok()) {
        return vec![tz];
    }
    region
        .map(|r| {
            country_zones(r)
                .iter()
                .filter_map(|z| Tz::from_str(z).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the window is open at `now` in every zone. With no zone known, the window is taken as
/// UTC, so a campaign with a window never sends blind.
pub fn is_open(window: Window, zones: &[Tz], now: DateTime<Utc>) -> bool {
    if zones.is_empty() {
        return window.contains(minute_of_day(now));
    }
    zones
        .iter()
        .all(|tz| window.contains(minute_of_day(tz.from_utc_datetime(&now.naive_utc()))))
}

/// The first minute at or after `now` when the window is open in every zone, within the next
/// two days (`None` if the zones never share an open minute).
pub fn next_open(window: Window, zones: &[Tz], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let start = now.with_second(0)?.with_nanosecond(0)?;
    (0..(2 * 24 * 60))
        .map(|m| start + Duration::minutes(m))
        .find(|t| is_open(window, zones, *t))
}

fn minute_of_day<T: Timelike>(t: T) -> u32 {
    t.hour() * 60 + t.minute()
}

/// IANA zones by ISO country. Countries spanning several zones list the ones their people live
/// in; a country not listed has no known zone (the window is then checked in UTC).
fn country_zones(region: &str) -> &'static [&'static str] {
    match region {
        "US" => &[
            "America/New_York",
            "America/Chicago",
            "America/Denver",
            "America/Phoenix",
            "America/Los_Angeles",
            "America/Anchorage",
            "Pacific/Honolulu",
        ],
        "CA" => &[
            "America/St_Johns",
            "America/Halifax",
            "America/Toronto",
            "America/Winnipeg",
            "America/Edmonton",
            "America/Vancouver",
        ],
        "MX" => &[
            "America/Mexico_City",
            "America/Cancun",
            "America/Chihuahua",
            "America/Tijuana",
        ],
        "BR" => &["America/Sao_Paulo", "America/Manaus", "America/Rio_Branco"],
        "AU" => &[
            "Australia/Sydney",
            "Australia/Adelaide",
            "Australia/Brisbane",
            "Australia/Perth",
        ],
        "RU" => &[
            "Europe/Moscow",
            "Asia/Yekaterinburg",
            "Asia/Novosibirsk",
            "Asia/Vladivostok",
        ],
        "ID" => &["Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura"],
        "GB" => &["Europe/London"],
        "IE" => &["Europe/Dublin"],
        "FR" => &["Europe/Paris"],
        "DE" => &["Europe/Berlin"],
        "ES" => &["Europe/Madrid"],
        "IT" => &["Europe/Rome"],
        "NL" => &["Europe/Amsterdam"],
        "BE" => &["Europe/Brussels"],
        "PT" => &["Europe/Lisbon"],
        "CH" => &["Europe/Zurich"],
        "AT" => &["Europe/Vienna"],
        "SE" => &["Europe/Stockholm"],
        "NO" => &["Europe/Oslo"],
        "DK" => &["Europe/Copenhagen"],
        "FI" => &["Europe/Helsinki"],
        "PL" => &["Europe/Warsaw"],
        "GR" => &["Europe/Athens"],
        "TR" => &["Europe/Istanbul"],
        "IL" => &["Asia/Jerusalem"],
        "AE" => &["Asia/Dubai"],
        "SA" => &["Asia/Riyadh"],
        "EG" => &["Africa/Cairo"],
        "ZA" => &["Africa/Johannesburg"],
        "NG" => &["Africa/Lagos"],
        "KE" => &["Africa/Nairobi"],
        "IN" => &["Asia/Kolkata"],
        "PK" => &["Asia/Karachi"],
        "BD" => &["Asia/Dhaka"],
        "CN" => &["Asia/Shanghai"],
        "HK" => &["Asia/Hong_Kong"],
        "TW" => &["Asia/Taipei"],
        "JP" => &["Asia/Tokyo"],
        "KR" => &["Asia/Seoul"],
        "SG" => &["Asia/Singapore"],
        "MY" => &["Asia/Kuala_Lumpur"],
        "TH" => &["Asia/Bangkok"],
        "VN" => &["Asia/Ho_Chi_Minh"],
        "PH" => &["Asia/Manila"],
        "NZ" => &["Pacific/Auckland"],
        "AR" => &["America/Argentina/Buenos_Aires"],
        "CL" => &["America/Santiago"],
        "CO" => &["America/Bogota"],
        "PE" => &["America/Lima"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 15, h, m, 0).unwrap()
    }

    const NINE_TO_EIGHT: Window = Window {
        start: 9 * 60,
        end: 20 * 60,
    };

    #[test]
    fn a_contacts_own_zone_wins() {
        let z = zones(Some("Europe/Paris"), Some("US"));
        assert_eq!(z, vec![chrono_tz::Europe::Paris]);
        // 08:30 UTC is 09:30 in Paris (winter).
        assert!(is_open(NINE_TO_EIGHT, &z, at(8, 30)));
        assert!(!is_open(NINE_TO_EIGHT, &z, at(7, 30)));
    }

    #[test]
    fn a_country_with_several_zones_must_be_open_in_all() {
        let us = zones(None, Some("US"));
        assert_eq!(us.len(), 7);
        // 15:00 UTC: 10:00 New York but 05:00 Honolulu: closed.
        assert!(!is_open(NINE_TO_EIGHT, &us, at(15, 0)));
        // 20:00 UTC: 15:00 New York, 10:00 Honolulu: open.
        assert!(is_open(NINE_TO_EIGHT, &us, at(20, 0)));
        let next = next_open(NINE_TO_EIGHT, &us, at(15, 0)).unwrap();
        assert_eq!(next, at(19, 0));
    }

    #[test]
    fn windows_may_wrap_midnight_and_unknown_zones_fall_back_to_utc() {
        let night = Window {
            start: 22 * 60,
            end: 2 * 60,
        };
        assert!(is_open(night, &[], at(23, 0)));
        assert!(is_open(night, &[], at(1, 0)));
        assert!(!is_open(night, &[], at(3, 0)));
        assert!(zones(Some("Not/AZone"), Some("XX")).is_empty());
    }
}
