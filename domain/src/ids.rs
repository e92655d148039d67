//! Our own identifiers and the deterministic workflow ids derived from them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::PhoneNumber;

/// Namespace of [`MessageId::from_idempotency_key`] (a fixed random UUID).
const IDEMPOTENCY_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5c1c_0e2a_8d4b_4f7e_9a61_3b0e_7d2f_c4a9);

/// Our id for a message, assigned before any provider sees it, so a retried send can find what
/// an earlier attempt did. Rendered as `msg_<uuid v4 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(String);

impl MessageId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(format!("msg_{}", uuid::Uuid::new_v4().simple()))
    }

    /// The id a client's idempotency key maps to: the same key always gives the same id, so
    /// a repeated request finds the first message instead of sending again.
    pub fn from_idempotency_key(key: &str) -> Self {
        let uuid = uuid::Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, key.as_bytes());
        Self(format!("msg_{}", uuid.simple()))
    }

    /// Accepts an id produced by [`MessageId::generate`]; anything else is rejected so an
    /// unknown-id lookup fails cleanly instead of querying with arbitrary text.
    pub fn parse(raw: &str) -> Option<Self> {
        let hex = raw.strip_prefix("msg_")?;
        (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Workflow id of the workflow that sends one outbound message.
pub fn send_workflow_id(id: &MessageId) -> String {
    format!("send-{id}")
}

/// Workflow id of the conversation between one of our numbers and one person: the same pair
/// always maps to the same workflow, so webhooks can signal-with-start it.
pub fn conversation_workflow_id(ours: &PhoneNumber, theirs: &PhoneNumber) -> String {
    format!("conversation-{}-{}", ours.digits(), theirs.digits())
}

/// A workflow id fit for logs: conversation ids (`conversation-<our digits>-<their digits>`)
/// and the follow-up and call ids derived from them carry whole phone numbers, so every run of
/// seven or more digits keeps its first digit and last four, as [`crate::mask_phone`] does.
/// Shorter runs (turn counters, attempt numbers) stay readable.
pub fn mask_workflow_id(id: &str) -> String {
    const MIN_RUN: usize = 7;
    let mut out = String::with_capacity(id.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= MIN_RUN {
            out.push_str(&run[..1]);
            out.extend(std::iter::repeat_n('*', run.len() - 5));
            out.push_str(&run[run.len() - 4..]);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in id.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_others_do_not() {
        let id = MessageId::generate();
        assert_eq!(MessageId::parse(id.as_str()), Some(id));
        assert_eq!(MessageId::parse("msg_123"), None);
        assert_eq!(MessageId::parse("SM0123456789abcdef0123456789abcdef"), None);
        let keyed = MessageId::from_idempotency_key("order-42");
        assert_eq!(keyed, MessageId::from_idempotency_key("order-42"));
        assert_ne!(keyed, MessageId::from_idempotency_key("order-43"));
        assert!(MessageId::parse(keyed.as_str()).is_some());
    }

    #[test]
    fn conversation_ids_are_deterministic_per_pair() {
        let a = PhoneNumber::parse_e164("+14155550100").unwrap();
        let b = PhoneNumber::parse_e164("+14155550199").unwrap();
        assert_eq!(
            conversation_workflow_id(&a, &b),
            "conversation-14155550100-14155550199"
        );
        assert_ne!(
            conversation_workflow_id(&a, &b),
            conversation_workflow_id(&b, &a)
        );
    }

    #[test]
    fn workflow_ids_in_logs_keep_no_whole_number() {
        assert_eq!(
            mask_workflow_id("conversation-15005550006-14155550123"),
            "conversation-1******0006-1******0123"
        );
        assert_eq!(
            mask_workflow_id("call-followup-15005550006-14155550123-3"),
            "call-followup-1******0006-1******0123-3"
        );
        assert_eq!(mask_workflow_id("call-CA12ab"), "call-CA12ab");
        assert_eq!(mask_workflow_id("send-msg_1"), "send-msg_1");
        assert_eq!(mask_workflow_id("x1234567"), "x1**4567");
    }
}
