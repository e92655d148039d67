//! WhatsApp specifics: channel addresses, the 24-hour session window and Content templates.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Channel prefix of WhatsApp addresses (`whatsapp:+15551234567`).
pub(crate) const PREFIX: &str = "whatsapp:";

/// How long after a user's last inbound message free-form messages may be sent to them.
pub(crate) const SESSION_WINDOW: TimeDelta = TimeDelta::hours(24);

/// Whether `address` is a WhatsApp channel address.
pub(crate) fn is_whatsapp(address: &str) -> bool {
    address.starts_with(PREFIX)
}

/// `address` with the `whatsapp:` prefix, added if missing (admin input may omit it).
pub(crate) fn with_prefix(address: &str) -> String {
    if is_whatsapp(address) {
        address.to_owned()
    } else {
        format!("{PREFIX}{address}")
    }
}

/// Whether a window opened by an inbound message at `last_inbound` is still open at `now`.
pub(crate) fn window_open(last_inbound: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_inbound.is_some_and(|at| now < at + SESSION_WINDOW)
}

/// The `ChannelInstallSid` Twilio reports for a WhatsApp sender: stable per sender, so
/// receivers see the same value on every callback from it.
pub(crate) fn channel_install_sid(sender: &str) -> String {
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, sender.as_bytes());
    format!("XE{}", id.simple())
}

/// WhatsApp `MessageType` of an inbound message with media of this content type.
pub(crate) fn message_type(content_type: Option<&str>) -> &'static str {
    match content_type
        .and_then(|t| t.split_once('/'))
        .map(|(kind, _)| kind)
    {
        None => "text",
        Some("image") => "image",
        Some("video") => "video",
        Some("audio") => "audio",
        Some(_) => "document",
    }
}

/// A Content template registered through the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContentTemplate {
    /// Text with `{{1}}`, `{{2}}` (or named) placeholders.
    pub(crate) body: String,
    /// Values used for placeholders a message does not set, as Twilio's sample values are.
    #[serde(default)]
    pub(crate) variables: BTreeMap<String, String>,
}

impl ContentTemplate {
    /// The template's text with `variables` (then the defaults) substituted. Placeholders
    /// with neither stay as they are, so a missing variable is visible in the ledger.
    pub(crate) fn render(&self, variables: &BTreeMap<String, String>) -> String {
        let mut out = String::with_capacity(self.body.len());
        let mut rest = self.body.as_str();
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start + 2..].find("}}") else {
                break;
            };
            let key = rest[start + 2..start + 2 + len].trim();
            out.push_str(&rest[..start]);
            match variables.get(key).or_else(|| self.variables.get(key)) {
                Some(value) => out.push_str(value),
                None => out.push_str(&rest[start..start + len + 4]),
            }
            rest = &rest[start + len + 4..];
        }
        out.push_str(rest);
        out
    }
}

/// Parses `ContentVariables`: a JSON object whose values are strings or numbers. None means
/// invalid (Twilio's 21656).
pub(crate) fn parse_variables(raw: &str) -> Option<BTreeMap<String, String>> {
    let object: BTreeMap<String, serde_json::Value> = serde_json::from_str(raw).ok()?;
    object
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => Some((key, text)),
            serde_json::Value::Number(number) => Some((key, number.to_string())),
            _ => None,
        })
        .collect()
}

/// `ContentVariables` in one spelling per meaning (keys sorted, no spaces), so that equal
/// variables compare equal however the client wrote them.
pub(crate) fn canonical_variables(raw: &str) -> String {
    match parse_variables(raw) {
        // A BTreeMap serialises in key order whatever serde_json's map features are.
        Some(variables) => serde_json::to_string(&variables).unwrap_or_else(|_| raw.to_owned()),
        None => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn templates_render_given_then_default_variables() {
        let template = ContentTemplate {
            body: "Hi {{1}}, your order ships {{ 2 }}. {{3}} {{".to_owned(),
            variables: vars(&[("2", "soon")]),
        };

        assert_eq!(
            template.render(&vars(&[("1", "Ana")])),
            "Hi Ana, your order ships soon. {{3}} {{"
        );
        assert_eq!(
            template.render(&vars(&[("1", "Bo"), ("2", "today"), ("3", "!")])),
            "Hi Bo, your order ships today. ! {{"
        );
    }

    #[test]
    fn variables_must_be_an_object_of_scalars() {
        assert_eq!(
            parse_variables(r#"{"1":"12/1","2":3}"#),
            Some(vars(&[("1", "12/1"), ("2", "3")]))
        );
        assert_eq!(parse_variables("[1]"), None);
        assert_eq!(parse_variables(r#"{"1":{"a":1}}"#), None);
        assert_eq!(parse_variables("not json"), None);
    }

    #[test]
    fn canonical_variables_ignore_order_and_spacing() {
        assert_eq!(
            canonical_variables(r#"{"2": "b", "1": "a"}"#),
            canonical_variables(r#"{"1":"a","2":"b"}"#)
        );
    }

    #[test]
    fn windows_last_24_hours() {
        let at = Utc::now();
        assert!(window_open(Some(at), at + TimeDelta::hours(23)));
        assert!(!window_open(Some(at), at + TimeDelta::hours(24)));
        assert!(!window_open(None, at));
    }

    #[test]
    fn install_sids_are_stable_per_sender() {
        let sid = channel_install_sid("whatsapp:+15005550006");
        assert_eq!(sid, channel_install_sid("whatsapp:+15005550006"));
        assert_ne!(sid, channel_install_sid("whatsapp:+15005550007"));
        assert!(crate::util::is_sid(&sid, "XE"));
    }

    #[test]
    fn message_types_follow_media() {
        assert_eq!(message_type(None), "text");
        assert_eq!(message_type(Some("image/png")), "image");
        assert_eq!(message_type(Some("application/pdf")), "document");
    }
}
