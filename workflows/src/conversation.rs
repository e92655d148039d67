//! The conversation with one person on one of our numbers.

use std::collections::VecDeque;
use std::pin::pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    CancellableFuture, ContinueAsNewOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult, workflows::select,
};
use voice_agent_domain::Channel;

/// How long a conversation stays open without a new message before it completes. The next
/// message starts a fresh run under the same workflow id (signal-with-start).
pub const IDLE_CLOSE: Duration = Duration::from_secs(24 * 3600);
/// Messages kept in workflow state; older ones live in MongoDB only. Keeps every payload and
/// continue-as-new input small.
pub const MAX_RECENT_MESSAGES: usize = 50;
/// Provider ids remembered to drop duplicate webhook deliveries.
const MAX_SEEN_IDS: usize = 200;
/// Continue-as-new after this many history events even if the server has not suggested it yet.
const MAX_HISTORY_EVENTS: u32 = 2_000;

/// One message as the conversation workflow sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationMessage {
    /// Twilio `MessageSid` (inbound) or our message id (outbound).
    pub id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Text.
    pub body: String,
    /// When the webhook arrived, RFC 3339 (set by the API, not read from a clock here).
    pub at: String,
}

/// The conversation's durable state; also the input of each run, so continue-as-new carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationState {
    /// Our number (E.164).
    pub ours: String,
    /// Their number (E.164).
    pub theirs: String,
    /// SMS or WhatsApp.
    pub channel: Option<Channel>,
    /// The latest messages, oldest first.
    pub recent: VecDeque<ConversationMessage>,
    /// Ids already seen, oldest first.
    pub seen_ids: VecDeque<String>,
    /// Inbound messages over the conversation's whole life, across runs.
    pub inbound_count: u64,
    /// Runs before this one (continue-as-new count).
    pub generation: u32,
}

impl ConversationState {
    /// Adds a message unless its id was already seen; returns whether it was new.
    pub fn push(&mut self, msg: ConversationMessage) -> bool {
        if self.seen_ids.iter().any(|id| id == &msg.id) {
            return false;
        }
        self.seen_ids.push_back(msg.id.clone());
        if self.seen_ids.len() > MAX_SEEN_IDS {
            self.seen_ids.pop_front();
        }
        if msg.direction == "inbound" {
            self.inbound_count += 1;
        }
        self.recent.push_back(msg);
        if self.recent.len() > MAX_RECENT_MESSAGES {
            self.recent.pop_front();
        }
        true
    }
}

/// Holds the conversation's state and receives each inbound message as a signal. The AI agent
/// issue adds the reply turn here; until then the workflow records, deduplicates and answers
/// queries. It completes after [`IDLE_CLOSE`] without messages and continues-as-new before its
/// history grows large.
#[workflow]
pub struct ConversationWorkflow {
    state: ConversationState,
    unprocessed: usize,
}

#[workflow_methods]
impl ConversationWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, state: ConversationState) -> Self {
        Self {
            state,
            unprocessed: 0,
        }
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<ConversationState> {
        loop {
            let mut idle = pin!(ctx.timer(IDLE_CLOSE));
            let woke = select! {
                _ = ctx.wait_condition(|s| s.unprocessed > 0) => true,
                _ = idle.as_mut() => false,
            };
            if !woke {
                return Ok(ctx.state(|s| s.state.clone()));
            }
            // A pending timer would stay in history; cancel it before the next round.
            idle.cancel();
            ctx.state_mut(|s| s.unprocessed = 0);

            if ctx.continue_as_new_suggested() || ctx.history_length() > MAX_HISTORY_EVENTS {
                let mut next = ctx.state(|s| s.state.clone());
                next.generation += 1;
                ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
            }
        }
    }

    /// A message arrived (from a webhook, via signal-with-start). Duplicates are ignored.
    #[signal]
    pub fn message(&mut self, _ctx: &mut SyncWorkflowContext<Self>, msg: ConversationMessage) {
        if self.state.push(msg) {
            self.unprocessed += 1;
        }
    }

    /// The conversation as held in workflow state.
    #[query]
    pub fn transcript(&self, _ctx: &WorkflowContextView) -> ConversationState {
        self.state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> ConversationMessage {
        ConversationMessage {
            id: id.to_owned(),
            direction: "inbound".to_owned(),
            body: "hi".to_owned(),
            at: "2026-01-01T00:00:00Z".to_owned(),
        }
    }

    #[test]
    fn repeated_message_ids_are_recorded_once() {
        let mut s = ConversationState::default();
        assert!(s.push(msg("SM1")));
        assert!(!s.push(msg("SM1")));
        assert!(s.push(msg("SM2")));
        assert_eq!(s.recent.len(), 2);
        assert_eq!(s.inbound_count, 2);
    }

    #[test]
    fn state_stays_bounded() {
        let mut s = ConversationState::default();
        for i in 0..1_000 {
            s.push(msg(&format!("SM{i}")));
        }
        assert_eq!(s.recent.len(), MAX_RECENT_MESSAGES);
        assert_eq!(s.seen_ids.len(), MAX_SEEN_IDS);
        assert_eq!(s.inbound_count, 1_000);
        assert_eq!(s.recent.back().unwrap().id, "SM999");
    }
}
