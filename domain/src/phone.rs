//! E.164 phone numbers, parsed with a libphonenumber port (`rlibphonenumber`) rather than
//! hand-written rules.

use std::borrow::Cow;
use std::fmt;

use rlibphonenumber::enums::Region;
use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat};

use serde::{Deserialize, Serialize};

/// Most digits in an E.164 number, country code included (ITU-T E.164).
pub const MAX_E164_DIGITS: usize = 15;

/// Why a string is not a usable phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    /// The text could not be read as a phone number at all; ask for a number in E.164
    /// (`+14155550100`) or in the national format of the default region.
    #[error("not a phone number: {0}")]
    Unparseable(String),
    /// The text parsed but is not a valid number for its region (wrong length or prefix).
    #[error("not a valid phone number: {0}")]
    Invalid(String),
    /// The default region code is not a known ISO 3166-1 alpha-2 code; fix the configuration.
    #[error("unknown region code: {0}")]
    UnknownRegion(String),
}

/// A phone number in E.164 form (`+` and up to 15 digits), valid for its region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses `input` as written by a person or a spreadsheet: E.164, national format for
    /// `default_region`, with spaces, dashes, dots, parentheses, a leading apostrophe (Excel's
    /// text marker) or a leading international `00`.
    pub fn parse(input: &str, default_region: &str) -> Result<Self, PhoneError> {
        let region = known_region(default_region)
            .ok_or_else(|| PhoneError::UnknownRegion(default_region.to_owned()))?;
        let trimmed = input.trim().trim_start_matches('\'').trim();
        // libphonenumber treats "00" as an international prefix only for regions that use it;
        // people everywhere write it for "+", so normalise it first.
        let cleaned = match trimmed.strip_prefix("00") {
            Some(rest) if !rest.is_empty() => Cow::Owned(format!("+{rest}")),
            _ => Cow::Borrowed(trimmed),
        };
        if cleaned.is_empty() {
            return Err(PhoneError::Unparseable(mask_phone(input)));
        }
        let parsed = PHONE_NUMBER_UTIL
            .parse(cleaned.as_ref(), Some(region))
            .map_err(|_| PhoneError::Unparseable(mask_phone(input)))?;
        if !PHONE_NUMBER_UTIL.is_valid_number(&parsed) {
            return Err(PhoneError::Invalid(mask_phone(input)));
        }
        let e164 = PHONE_NUMBER_UTIL
            .format(&parsed, PhoneNumberFormat::E164)
            .into_owned();
        // libphonenumber's metadata lets some variable-length plans (Germany's) run past
        // E.164's 15 digits; Twilio refuses such a number, so it is refused here, at input.
        if e164.len() > MAX_E164_DIGITS + 1 {
            return Err(PhoneError::Invalid(mask_phone(input)));
        }
        Ok(Self(e164))
    }

    /// Parses a number that must already be in E.164 form (what Twilio sends in webhooks).
    pub fn parse_e164(input: &str) -> Result<Self, PhoneError> {
        if !input.starts_with('+') {
            return Err(PhoneError::Unparseable(mask_phone(input)));
        }
        // The region is only a fallback and is ignored for numbers starting with '+'.
        Self::parse(input, "US")
    }

    /// The number in E.164 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with all but the country code's first digit and the last four digits hidden,
    /// for logs.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }

    /// The ISO 3166-1 region the number belongs to (`US`, `GB`, …), when libphonenumber knows it.
    pub fn region(&self) -> Option<String> {
        let parsed = PHONE_NUMBER_UTIL.parse(&self.0, None).ok()?;
        PHONE_NUMBER_UTIL
            .get_region_for_number(&parsed)
            .filter(|r| *r != Region::World)
            .map(|r| r.as_region_str().as_str().to_owned())
    }

    /// The digits without the leading `+`, used in workflow ids.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for PhoneNumber {
    /// Displays the masked form, so a number formatted into a log line never leaks whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse_e164(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

/// The region for an ISO 3166-1 alpha-2 code (any case), if the phone metadata has it: the
/// library's `Region` accepts any two letters, so unknown codes are refused here.
fn known_region(code: &str) -> Option<Region> {
    let region = Region::from_code(code).ok()?;
    PHONE_NUMBER_UTIL
        .get_country_code_for_region(region)
        .is_some()
        .then_some(region)
}

/// Masks anything that may be a phone number or a channel address (`whatsapp:+1…`) for logs:
/// keeps a leading `+` and first digit and the last four characters.
pub fn mask_phone(raw: &str) -> String {
    let (prefix, number) = match raw.rsplit_once(':') {
        Some((p, n)) => (format!("{p}:"), n),
        None => (String::new(), raw),
    };
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 4 {
        return format!("{prefix}{}", "*".repeat(chars.len()));
    }
    let keep_head = if chars[0] == '+' { 2 } else { 0 };
    let tail_start = chars.len() - 4;
    let mut out = prefix;
    for (i, c) in chars.iter().enumerate() {
        if i < keep_head.min(tail_start) || i >= tail_start {
            out.push(*c);
        } else {
            out.push('*');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_formats_normalise_to_e164() {
        for input in [
            "(415) 555-0100",
            "415-555-0100",
            "415.555.0100",
            "'4155550100",
            "+1 415 555 0100",
            "0014155550100",
            "  4155550100  ",
        ] {
            assert_eq!(
                PhoneNumber::parse(input, "US").unwrap().as_str(),
                "+14155550100",
                "{input}"
            );
        }
    }

    #[test]
    fn other_regions_use_their_national_rules() {
        let n = PhoneNumber::parse("020 7946 0958", "GB").unwrap();
        assert_eq!(n.as_str(), "+442079460958");
    }

    #[test]
    fn garbage_and_invalid_numbers_are_rejected() {
        assert!(matches!(
            PhoneNumber::parse("hello", "US"),
            Err(PhoneError::Unparseable(_))
        ));
        assert!(PhoneNumber::parse("", "US").is_err());
        assert!(matches!(
            PhoneNumber::parse("+1 415 555", "US"),
            Err(PhoneError::Invalid(_) | PhoneError::Unparseable(_))
        ));
        assert!(matches!(
            PhoneNumber::parse("4155550100", "XX"),
            Err(PhoneError::UnknownRegion(_))
        ));
    }

    /// Found by the `phone` fuzz target: libphonenumber took `'433806955100365` in Germany
    /// for +49433806955100365, 17 digits.
    #[test]
    fn numbers_longer_than_e164_allows_are_invalid() {
        assert!(matches!(
            PhoneNumber::parse("'433806955100365 ", "DE"),
            Err(PhoneError::Invalid(_))
        ));
        assert!(matches!(
            PhoneNumber::parse_e164("+49433806955100365"),
            Err(PhoneError::Invalid(_))
        ));
        // An ordinary German number still passes.
        assert_eq!(
            PhoneNumber::parse("030 12345678", "DE").map(|n| n.as_str().to_owned()),
            Ok("+493012345678".to_owned())
        );
    }

    #[test]
    fn numbers_know_their_region() {
        assert_eq!(
            PhoneNumber::parse_e164("+14155550100")
                .unwrap()
                .region()
                .as_deref(),
            Some("US")
        );
        assert_eq!(
            PhoneNumber::parse_e164("+442079460958")
                .unwrap()
                .region()
                .as_deref(),
            Some("GB")
        );
    }

    #[test]
    fn e164_parsing_requires_a_plus() {
        assert!(PhoneNumber::parse_e164("4155550100").is_err());
        assert_eq!(
            PhoneNumber::parse_e164("+14155550100").unwrap().digits(),
            "14155550100"
        );
    }

    #[test]
    fn masking_hides_the_middle_of_the_number() {
        assert_eq!(mask_phone("+14155550100"), "+1******0100");
        assert_eq!(mask_phone("whatsapp:+14155550100"), "whatsapp:+1******0100");
        assert_eq!(mask_phone("123"), "***");
        let n = PhoneNumber::parse_e164("+14155550100").unwrap();
        assert_eq!(format!("{n}"), "+1******0100");
    }

    #[test]
    fn serde_round_trips_through_e164_strings() {
        let n: PhoneNumber = serde_json_like("+14155550100");
        assert_eq!(n.as_str(), "+14155550100");
        assert!(PhoneNumber::try_from("nonsense".to_owned()).is_err());
    }

    fn serde_json_like(s: &str) -> PhoneNumber {
        PhoneNumber::try_from(s.to_owned()).unwrap()
    }
}
