//! Small helpers shared by the REST, webhook and admin code.

use chrono::{DateTime, Utc};

/// Whether `value` is `prefix` followed by exactly 32 hex digits.
pub(crate) fn is_sid(value: &str, prefix: &str) -> bool {
    value
        .strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Twilio's REST date format (RFC 2822, always `+0000`).
pub(crate) fn rfc2822(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// Whether `value` is an E.164 number: `+`, a non-zero digit, 7 to 15 digits in all.
pub(crate) fn is_e164(value: &str) -> bool {
    value.strip_prefix('+').is_some_and(|digits| {
        (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// Whether `value` is a valid message address: E.164 or `whatsapp:` + E.164.
pub(crate) fn is_valid_address(value: &str) -> bool {
    is_e164(value.strip_prefix("whatsapp:").unwrap_or(value))
}

/// The address without a channel prefix such as `whatsapp:`.
pub(crate) fn bare_number(value: &str) -> &str {
    value.split_once(':').map_or(value, |(_, number)| number)
}

/// The sender a Messaging Service "picks" for a message: stable per service, in the
/// 555-0100..0199 range reserved for fictional use, on the message's channel.
pub(crate) fn pool_number(service_sid: &str, whatsapp: bool) -> String {
    let slot = service_sid.bytes().map(u32::from).sum::<u32>() % 100;
    let prefix = if whatsapp {
        crate::whatsapp::PREFIX
    } else {
        ""
    };
    format!("{prefix}+1201555{:04}", 100 + slot)
}

/// A phone number (or any identifier) safe for logs: all but the last four characters hidden.
pub(crate) fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let keep = chars.len().min(4);
    let tail: String = chars[chars.len() - keep..].iter().collect();
    format!("***{tail}")
}

/// A URL safe for logs: scheme, host, port and path only (query strings may carry tokens).
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            parsed.set_fragment(None);
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed.to_string()
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

/// ISO 3166 country of a number, from its calling code (enough for webhook geo fields).
pub(crate) fn country_of(number: &str) -> &'static str {
    const CODES: &[(&str, &str)] = &[
        ("+1", "US"),
        ("+44", "GB"),
        ("+49", "DE"),
        ("+33", "FR"),
        ("+34", "ES"),
        ("+39", "IT"),
        ("+31", "NL"),
        ("+61", "AU"),
        ("+64", "NZ"),
        ("+65", "SG"),
        ("+81", "JP"),
        ("+91", "IN"),
        ("+55", "BR"),
        ("+52", "MX"),
        ("+27", "ZA"),
    ];
    let number = bare_number(number);
    CODES
        .iter()
        .find(|(code, _)| number.starts_with(code))
        .map_or("", |(_, country)| country)
}

/// Compares secrets without an early exit, so timing reveals nothing about the expected value.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_use_twilio_format() {
        let at = DateTime::parse_from_rfc3339("2023-08-24T05:01:45Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc2822(at), "Thu, 24 Aug 2023 05:01:45 +0000");
    }

    #[test]
    fn e164_validation() {
        assert!(is_valid_address("+15558675310"));
        assert!(is_valid_address("whatsapp:+15558675310"));
        assert!(!is_valid_address("+1asd"));
        assert!(!is_valid_address("15558675310"));
        assert!(!is_valid_address("+05558675310"));
        assert!(!is_valid_address("+1234567890123456"));
    }

    #[test]
    fn pool_numbers_are_stable_and_fictional() {
        let sid = "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert_eq!(pool_number(sid, false), pool_number(sid, false));
        assert!(pool_number(sid, false).starts_with("+12015550"));
        assert_eq!(pool_number(sid, false).len(), 12);
        assert_eq!(
            pool_number(sid, true),
            format!("whatsapp:{}", pool_number(sid, false))
        );
    }

    #[test]
    fn masking_keeps_last_four() {
        assert_eq!(mask("+15558675310"), "***5310");
        assert_eq!(mask("12"), "***12");
    }

    #[test]
    fn redacted_urls_lose_query_and_credentials() {
        assert_eq!(
            redact_url("https://u:p@example.com/cb?token=x"),
            "https://example.com/cb"
        );
    }

    #[test]
    fn countries_from_calling_codes() {
        assert_eq!(country_of("+15558675310"), "US");
        assert_eq!(country_of("whatsapp:+447700900123"), "GB");
        assert_eq!(country_of("+999"), "");
    }
}
