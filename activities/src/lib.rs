//! Temporal activities: the side-effecting steps of Voice Agent workflows.
//!
//! | module | what it holds |
//! |---|---|
//! | [`channel`] | the pluggable [`MessageChannel`] trait and its provider registry |
//! | [`deadline`] | no provider request starts too late in an attempt to end before its retry |
//! | [`twilio_channel`] | the Twilio implementation of [`MessageChannel`] |
//! | [`messaging`] | [`MessagingActivities`]: the idempotent, reconciling send of one message |
//! | [`agent`] | [`AgentActivities`]: the agent's turns, summaries, opt-outs and records |
//! | [`profiles`] | agent profiles in MongoDB, versioned: lookups, validation, the agents file's import |
//! | [`campaign`] | [`CampaignActivities`]: materialise items, send them in rate-limited batches |
//! | [`sender`] | one send limit per sender number across campaigns, single sends, replies and dials |
//! | [`template`] | `{{variable}}` rendering |
//! | [`voice`] | [`VoiceActivities`]: dial exactly once per attempt, fetch and end calls, call logs |
//! | [`window`] | sending windows in the recipient's local time |
//!
//! Activities run at least once: a worker killed during a send makes Temporal run it again.
//! Every activity here is therefore safe to repeat: it records its intent in MongoDB before
//! calling a provider, and on a repeat first finds out what the provider already accepted.
//! Errors follow one rule: `?` is a retryable failure; permanent provider failures (an invalid
//! or opted-out number, any 4xx but 429) become non-retryable failures in one place,
//! [`messaging::permanent_failure`].
#![warn(missing_docs)]

pub mod agent;
pub mod campaign;
pub mod channel;
pub mod deadline;
pub mod messaging;
pub mod profiles;
pub mod sender;
pub mod template;
pub mod twilio_channel;
pub mod voice;
pub mod window;

pub use agent::AgentActivities;
pub use campaign::CampaignActivities;
pub use channel::{
    ChannelError, ChannelRegistry, MessageChannel, OutboundSend, ProviderAccept, SentProbe,
};
pub use messaging::{MessagingActivities, SendMessageInput, SendMessageOutput};
pub use twilio_channel::TwilioChannel;
pub use voice::VoiceActivities;
