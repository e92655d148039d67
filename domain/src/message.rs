//! Message channels, directions and delivery statuses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Plain SMS.
    Sms,
    /// Twilio's WhatsApp channel (`whatsapp:` addresses).
    Whatsapp,
}

impl Channel {
    /// The address Twilio expects for `number` on this channel.
    pub fn address(self, number: &str) -> String {
        match self {
            Self::Sms => number.to_owned(),
            Self::Whatsapp => format!("whatsapp:{number}"),
        }
    }

    /// Splits a Twilio address such as `whatsapp:+1415…` into its channel and number.
    pub fn from_address(address: &str) -> (Self, &str) {
        match address.strip_prefix("whatsapp:") {
            Some(number) => (Self::Whatsapp, number),
            None => (Self::Sms, address),
        }
    }

    /// Lower-case name, as stored in MongoDB.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
        }
    }
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a person to us.
    Inbound,
    /// From us to a person.
    Outbound,
}

impl Direction {
    /// Lower-case name, as stored in MongoDB.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// The life of a message, in Twilio's vocabulary plus our own `pending` (intent recorded, not
/// yet accepted by the provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessageStatus {
    /// Recorded by us; the provider has not accepted it yet.
    Pending,
    /// Accepted by a Messaging Service, sender not yet chosen.
    Accepted,
    /// Queued at the provider.
    Queued,
    /// Being sent to the carrier.
    Sending,
    /// Handed to the carrier; no delivery receipt yet.
    Sent,
    /// The carrier confirmed delivery.
    Delivered,
    /// WhatsApp: the person opened it.
    Read,
    /// The carrier could not deliver it.
    Undelivered,
    /// The provider could not send it.
    Failed,
    /// Received from a person.
    Received,
    /// Cancelled before sending.
    Canceled,
}

impl MessageStatus {
    /// Position in the life of a message. Status callbacks can arrive out of order (and a
    /// callback can beat the REST answer), so a status only ever replaces a lower-ranked one.
    pub fn rank(self) -> i32 {
        match self {
            Self::Pending => 0,
            Self::Accepted => 1,
            Self::Queued => 2,
            Self::Sending => 3,
            Self::Sent => 4,
            Self::Delivered | Self::Undelivered | Self::Failed | Self::Canceled => 5,
            Self::Read => 6,
            Self::Received => 7,
        }
    }

    /// Whether no further status is expected.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Delivered
                | Self::Read
                | Self::Undelivered
                | Self::Failed
                | Self::Canceled
                | Self::Received
        )
    }

    /// Twilio's lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
            Self::Received => "received",
            Self::Canceled => "canceled",
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string that is not one of Twilio's message statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown message status: {0}")]
pub struct UnknownStatus(pub String);

impl FromStr for MessageStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Self::Pending,
            "accepted" => Self::Accepted,
            "queued" | "scheduled" => Self::Queued,
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "undelivered" => Self::Undelivered,
            "failed" => Self::Failed,
            "received" | "receiving" => Self::Received,
            "canceled" => Self::Canceled,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward() {
        assert!(MessageStatus::Sent.rank() > MessageStatus::Queued.rank());
        assert!(MessageStatus::Delivered.rank() > MessageStatus::Sent.rank());
        assert!(MessageStatus::Read.rank() > MessageStatus::Delivered.rank());
        assert_eq!(
            MessageStatus::Failed.rank(),
            MessageStatus::Undelivered.rank()
        );
    }

    #[test]
    fn twilio_names_round_trip() {
        for s in [
            "queued",
            "sent",
            "delivered",
            "undelivered",
            "failed",
            "read",
        ] {
            assert_eq!(MessageStatus::from_str(s).unwrap().as_str(), s);
        }
        assert!(MessageStatus::from_str("exploded").is_err());
    }

    #[test]
    fn whatsapp_addresses_split_into_channel_and_number() {
        assert_eq!(
            Channel::from_address("whatsapp:+14155550100"),
            (Channel::Whatsapp, "+14155550100")
        );
        assert_eq!(
            Channel::from_address("+14155550100"),
            (Channel::Sms, "+14155550100")
        );
        assert_eq!(Channel::Whatsapp.address("+1"), "whatsapp:+1");
    }
}
