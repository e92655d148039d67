//! Twilio's default opt-out handling for SMS: a user who texts STOP to a sender cannot be
//! messaged by it (21610) until they text START.

/// What an inbound SMS body means to Twilio's default opt-out handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    /// The user unsubscribes from the sender.
    OptOut,
    /// The user subscribes again.
    OptIn,
}

/// Twilio's default opt-out keywords.
const OPT_OUT: [&str; 6] = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];

/// Twilio's default opt-in keywords.
const OPT_IN: [&str; 3] = ["START", "YES", "UNSTOP"];

/// The keyword `body` is, if it is one: only a whole body counts (trimmed, any case), as on
/// Twilio; "stop it" is an ordinary message.
pub(crate) fn classify(body: &str) -> Option<Keyword> {
    let word = body.trim();
    let is = |keywords: &[&str]| keywords.iter().any(|k| k.eq_ignore_ascii_case(word));
    if is(&OPT_OUT) {
        Some(Keyword::OptOut)
    } else if is(&OPT_IN) {
        Some(Keyword::OptIn)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_trimmed_keywords_in_any_case_count() {
        for body in [
            "STOP",
            " stop\n",
            "StopAll",
            "unsubscribe",
            "Cancel",
            "end",
            "QUIT",
        ] {
            assert_eq!(classify(body), Some(Keyword::OptOut), "{body:?}");
        }
        for body in ["START", "yes", " Unstop "] {
            assert_eq!(classify(body), Some(Keyword::OptIn), "{body:?}");
        }
        for body in ["stop it", "STOP!", "", "hello", "stopp"] {
            assert_eq!(classify(body), None, "{body:?}");
        }
    }
}
