//! Phone-number masking for logs and error text: numbers are personal data and must not reach log sinks.

/// Digits left visible at the end of a masked number: enough to tell numbers apart when debugging.
const VISIBLE_DIGITS: usize = 4;

/// Runs shorter than this are not treated as phone numbers (short codes, counts, error codes).
const MIN_NUMBER_DIGITS: usize = 7;

/// Masks one address (`+15558675310`, `whatsapp:+1555…`), keeping any prefix and the last four digits.
pub(crate) fn mask_phone(address: &str) -> String {
    let total = address.chars().filter(char::is_ascii_digit).count();
    let hidden = total.saturating_sub(VISIBLE_DIGITS);
    let mut seen = 0;
    address
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen <= hidden {
                    return '*';
                }
            }
            c
        })
        .collect()
}

/// Masks phone-number-looking runs inside free text such as Twilio error messages
/// ("The 'To' number +15558675310 is not a valid phone number.").
///
/// Only digit runs that stand alone (not glued to letters) count, so SIDs and URLs stay readable.
pub(crate) fn mask_numbers_in(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let mut j = i;
        if chars[j] == '+' {
            j += 1;
        }
        let digits_start = j;
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
        let digits = j - digits_start;
        let glued_before = start > 0 && chars[start - 1].is_alphanumeric();
        let glued_after = j < chars.len() && chars[j].is_alphanumeric();
        if digits >= MIN_NUMBER_DIGITS && !glued_before && !glued_after {
            let run: String = chars[start..j].iter().collect();
            out.push_str(&mask_phone(&run));
            i = j;
        } else {
            // Copy at least one char, and a whole digit run at once so its tail is not re-scanned as a number.
            let end = if digits > 0 { j } else { start + 1 };
            out.extend(&chars[start..end]);
            i = end;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_the_last_four_digits_and_keeps_prefixes() {
        assert_eq!(mask_phone("+15558675310"), "+*******5310");
        assert_eq!(mask_phone("whatsapp:+15558675310"), "whatsapp:+*******5310");
        assert_eq!(mask_phone("1234"), "1234");
        assert_eq!(mask_phone("AgentName"), "AgentName");
    }

    #[test]
    fn masks_numbers_inside_error_messages_but_not_sids_or_codes() {
        assert_eq!(
            mask_numbers_in("The 'To' number +15558675310 is not a valid phone number."),
            "The 'To' number +*******5310 is not a valid phone number."
        );
        assert_eq!(
            mask_numbers_in("From 6594497191, code 21211"),
            "From ******7191, code 21211"
        );
        let sid = "SM11111111111111111111111111111111";
        assert_eq!(mask_numbers_in(sid), sid);
        assert_eq!(
            mask_numbers_in("/Accounts//Messages.json"),
            "/Accounts//Messages.json"
        );
        assert_eq!(mask_numbers_in("+1asd"), "+1asd");
    }
}
