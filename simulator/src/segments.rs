//! SMS segment counting: GSM-7 when every character fits, else UCS-2.

/// GSM 03.38 basic character set (one septet each).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// GSM 03.38 extension table (escape + character: two septets each).
const GSM7_EXTENDED: &str = "^{}\\[~]|€\u{000C}";

/// Number of SMS segments `body` is split into, as Twilio reports it (at least 1).
pub(crate) fn count(body: &str) -> usize {
    let septets: Option<usize> = body
        .chars()
        .map(|c| {
            if GSM7_BASIC.contains(c) {
                Some(1)
            } else if GSM7_EXTENDED.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .sum();
    let (units, single, multi) = match septets {
        Some(septets) => (septets, 160, 153),
        // UCS-2 counts UTF-16 code units: characters outside the BMP (most emoji) take two.
        None => (body.encode_utf16().count(), 70, 67),
    };
    if units <= single {
        1
    } else {
        units.div_ceil(multi)
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn empty_and_short_bodies_are_one_segment() {
        assert_eq!(count(""), 1);
        assert_eq!(count("hello"), 1);
        assert_eq!(count(&"a".repeat(160)), 1);
    }

    #[test]
    fn long_gsm_bodies_use_153_septet_parts() {
        assert_eq!(count(&"a".repeat(161)), 2);
        assert_eq!(count(&"a".repeat(306)), 2);
        assert_eq!(count(&"a".repeat(307)), 3);
    }

    #[test]
    fn extension_characters_take_two_septets() {
        assert_eq!(count(&"€".repeat(80)), 1);
        assert_eq!(count(&"€".repeat(81)), 2);
    }

    #[test]
    fn non_gsm_characters_switch_to_ucs2() {
        assert_eq!(count(&"é".repeat(160)), 1);
        assert_eq!(count(&"ł".repeat(70)), 1);
        assert_eq!(count(&"ł".repeat(71)), 2);
        // One emoji is two UTF-16 units.
        assert_eq!(count(&"👍".repeat(35)), 1);
        assert_eq!(count(&"👍".repeat(36)), 2);
    }
}
