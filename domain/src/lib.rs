//! Domain types shared by every Voice Agent crate.
//!
//! | module | what it holds |
//! |---|---|
//! | [`phone`] | [`PhoneNumber`]: a parsed, E.164-normalised number, and masking for logs |
//! | [`ids`] | our own identifiers ([`MessageId`]) and deterministic workflow ids |
//! | [`message`] | [`Channel`], [`Direction`] and [`MessageStatus`] with its monotonic ordering |
//! | [`variables`] | [`variable_key`]: column headers and template placeholders to variable keys |
//!
//! Types here are parsed once at the edge (gRPC, webhooks, uploads) and carried as values, so
//! code further in never re-validates a phone number or a status string.
//!
//! ```
//! use voice_agent_domain::PhoneNumber;
//! let n = PhoneNumber::parse("(415) 555-0100", "US").unwrap();
//! assert_eq!(n.as_str(), "+14155550100");
//! assert_eq!(n.masked(), "+1******0100");
//! ```
#![warn(missing_docs)]

pub mod ids;
pub mod message;
pub mod phone;
pub mod variables;

pub use ids::{MessageId, conversation_workflow_id, mask_workflow_id, send_workflow_id};
pub use message::{Channel, Direction, MessageStatus};
pub use phone::{PhoneError, PhoneNumber, mask_phone};
pub use variables::variable_key;
