//! Temporal workflows of Voice Agent.
//!
//! | workflow | id | what it does |
//! |---|---|---|
//! | [`SendMessageWorkflow`] | `send-<message id>` | one outbound SMS/WhatsApp, sent exactly once |
//! | [`CampaignWorkflow`] | `campaign-<campaign id>` | a campaign: materialise items, send them in rate-limited batches; pause, resume, cancel, rate as signals |
//! | [`ConversationWorkflow`] | `conversation-<our digits>-<their digits>` | the running thread with one person; inbound webhooks signal-with-start it; the agent answers when the number has one. Browser chats are `conversation-web-<chat id>`: the api streams each reply and signals the settled turn (`live_turn`) |
//! | [`CallWorkflow`] | `call-<CallSid>` (inbound), `call-<our id>` (outbound) | one phone call: the agent's turns as updates, status callbacks as signals, retries, the call log |
//! | [`FollowUpWorkflow`] | `followup-<our digits>-<their digits>-<turn id>` | a callback the agent promised: a durable timer, then a message |
//!
//! Workflow code does no I/O and reads no clock: everything that touches the world is an
//! activity from `voice-agent-activities`; time comes from `ctx.workflow_time()` and timers.
//! Each workflow keeps its history bounded (conversations continue-as-new).
#![warn(missing_docs)]
// The workflow macros generate public items without docs and with crate-local visibility.
#![allow(missing_docs, unreachable_pub)]

pub mod call;
pub mod campaign;
pub mod conversation;
pub mod followup;
mod options;
pub mod send_message;

pub use call::{
    AnswerInput, CallInput, CallResult, CallStatusEvent, CallView, CallWorkflow, GatherInput,
    IssuedTurn, RelayClosed, RelayContext, RelayEnd, RelayInterrupted, RelayTurn, STALE_GATHER,
    VoiceNext, VoiceTurn,
};
pub use campaign::{
    CAMPAIGN_CHANNEL_ATTR, CAMPAIGN_ID_ATTR, CAMPAIGN_STATUS_ATTR, CallFinished, CampaignCounters,
    CampaignRun, CampaignWorkflow, MAX_STARTS_PER_TASK, Phase, VoiceCampaign,
};
pub use conversation::{
    AgentMode, ConversationMessage, ConversationState, ConversationWorkflow, LiveTurn,
    MAX_LIVE_OUTBOX, PersonAction, WEB_OURS,
};
pub use followup::{FollowUpInput, FollowUpOutcome, FollowUpWorkflow};
pub use options::agent_task_queue;
pub use send_message::SendMessageWorkflow;

/// The task queue the worker polls and the API starts workflows on, unless configured.
pub const DEFAULT_TASK_QUEUE: &str = "voice-agent";
