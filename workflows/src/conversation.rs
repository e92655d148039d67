//! The conversation with one person on one of our numbers, answered by the agent when the
//! number has one.

use std::collections::{BTreeMap, VecDeque};
use std::pin::pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    CancellableFuture, ChildWorkflowOptions, ContinueAsNewOptions, ParentClosePolicy,
    SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult, workflows::select,
};
use voice_agent_activities::agent::{AgentActivities, AgentTurnInput, OptOutInput, SummaryInput};
use voice_agent_activities::messaging::{MessagingActivities, SendMessageInput};
use voice_agent_agent::{
    AgentAction, AgentChannel, AgentProfile, AgentReply, AgentRequest, Disposition, Turn, Usage,
};
use voice_agent_domain::{Channel, MessageId};
use voice_agent_store::{AgentTurnRecord, ConversationCarry, TranscriptLine, conversation_status};

use crate::followup::{FollowUpInput, FollowUpWorkflow};
use crate::options::{
    agent_options, quick_options, reply_send_options, store_options, summary_options,
};

/// How long a conversation without an agent stays open without a new message before it
/// completes (with an agent: the profile's `idle_close_secs`, 24 h by default). The next
/// message starts a fresh run under the same workflow id (signal-with-start).
pub const IDLE_CLOSE: Duration = Duration::from_secs(24 * 3600);
/// Messages kept in workflow state; older ones live in MongoDB only. Keeps every payload and
/// continue-as-new input small, and is the context the agent sees.
pub const MAX_RECENT_MESSAGES: usize = 50;
/// Provider ids remembered to drop duplicate webhook deliveries.
const MAX_SEEN_IDS: usize = 200;
/// Patch id of the agent's replies (the profile lookup at the start of each run).
const AGENT_REPLIES_PATCH: &str = "agent-replies";
/// Patch id of answering, at the start of a run, the message the previous run carried over
/// unanswered (it arrived during that run's last turn).
const CARRIED_TURN_PATCH: &str = "carried-turn";
/// Most person actions waiting to be carried out; more are dropped (a client flooding one
/// conversation must not grow its history without bound).
const MAX_PERSON_OUTBOX: usize = 20;
/// Most live turns waiting to be recorded (a worker that is down lets them pile up in history
/// until it is back; beyond this many the api is told no and the session says so).
pub const MAX_LIVE_OUTBOX: usize = 50;
/// Our side of every browser chat: `ours` of a web conversation, so its id is
/// `conversation-web-<chat id>`.
pub const WEB_OURS: &str = "web";

/// Patch id of keeping memory, a hand-over and the seen ids across an idle close (stored in
/// the `conversations` collection at the close, loaded when the next run starts).
const IDLE_CARRY_PATCH: &str = "idle-carry";
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
    /// `stop`, `start` or `help` when the message was one of those keywords: the API has
    /// already acted on it and the agent does not answer it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    /// A live session's agent turn cut off by the person: `body` is what they heard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// Whether the agent is answering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMode {
    /// Answering.
    #[default]
    Open,
    /// Handed to a person; the agent stays quiet.
    Handoff,
    /// Ended by the agent or an opt-out.
    Ended,
}

impl AgentMode {
    /// The conversation's status as `conversations` records it.
    fn status(self) -> &'static str {
        match self {
            AgentMode::Open => conversation_status::OPEN,
            AgentMode::Handoff => conversation_status::HANDOFF,
            AgentMode::Ended => conversation_status::ENDED,
        }
    }
}

/// The conversation's durable state; also the input of each run, so continue-as-new carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationState {
    /// Our number (E.164).
    pub ours: String,
    /// Their number (E.164).
    pub theirs: String,
    /// SMS or WhatsApp.
    pub channel: Option<Channel>,
    /// The latest messages in conversation order: oldest first, except that a reply sits right
    /// after the message it answers even when later ones arrived while it was being sent.
    pub recent: VecDeque<ConversationMessage>,
    /// Ids already seen, oldest first.
    pub seen_ids: VecDeque<String>,
    /// Inbound messages over the conversation's whole life, across runs.
    pub inbound_count: u64,
    /// Runs before this one (continue-as-new count).
    pub generation: u32,
    /// The latest inbound message not answered yet.
    #[serde(default)]
    pub pending_turn: Option<String>,
    /// What the agent remembered (slots), across runs.
    #[serde(default)]
    pub memory: BTreeMap<String, String>,
    /// Whether the agent is answering.
    #[serde(default)]
    pub mode: AgentMode,
    /// Agent turns in this run (continue-as-new after the profile's `turns_per_run`).
    #[serde(default)]
    pub turns_this_run: u32,
    /// Agent turns over the conversation's life.
    #[serde(default)]
    pub turns: u64,
    /// Something happened since the last summary.
    #[serde(default)]
    pub needs_summary: bool,
    /// Model tokens used.
    #[serde(default)]
    pub usage: Usage,
    /// The latest disposition.
    #[serde(default)]
    pub disposition: Option<Disposition>,
    /// The latest summary.
    #[serde(default)]
    pub summary: Option<String>,
    /// Replies written by a person, not sent yet.
    #[serde(default)]
    pub person_outbox: VecDeque<PersonAction>,
    /// The profile by name, for conversations that are not on one of our numbers (a browser
    /// chat); `None`: the profile of `ours`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_name: Option<String>,
    /// Live turns in history (and in `recent`), not yet recorded in MongoDB.
    #[serde(default)]
    pub live_outbox: VecDeque<LiveTurn>,
}

/// One settled turn of a live session (a browser chat), as the api hands it over: the api
/// streamed the reply to the person itself, and the workflow makes the turn durable and carries
/// out its actions. Tokens never come here, only whole turns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveTurn {
    /// The api's id of the turn, unique in the conversation: a repeat does nothing more.
    pub turn_id: String,
    /// What the person said.
    pub person: String,
    /// What the agent said; when `interrupted`, only what the person heard before cutting in.
    pub agent: String,
    /// The person cut the agent off.
    #[serde(default)]
    pub interrupted: bool,
    /// The agent's actions this turn.
    #[serde(default)]
    pub actions: Vec<AgentAction>,
    /// Slots the agent remembered this turn.
    #[serde(default)]
    pub remember: BTreeMap<String, String>,
    /// Model tokens used.
    #[serde(default)]
    pub usage: Usage,
    /// A disposition the turn established.
    #[serde(default)]
    pub disposition: Option<Disposition>,
    /// Which agent answered (`scripted`, `model:<name>`, `fallback`).
    pub agent_name: String,
    /// When the person spoke, RFC 3339 (the api's clock; workflow code reads none).
    pub at: String,
}

/// Something a person did in a conversation (the web app's hand-over queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonAction {
    /// The client's request id: a repeat of the same request does nothing more.
    pub request_id: String,
    /// Who (the signed-in user, or `api`).
    pub by: String,
    /// The reply to send; `None`: hand the conversation back to the agent.
    pub reply: Option<String>,
    /// The last message the conversation held when the reply arrived (set by the workflow,
    /// never by the caller): the reply is recorded right after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl ConversationState {
    /// Adds a message unless its id was already seen; returns whether it was new.
    pub fn push(&mut self, msg: ConversationMessage) -> bool {
        let (inbound, turn) = (msg.direction == "inbound", msg.keyword.is_none());
        let id = msg.id.clone();
        if !self.insert_new(self.recent.len(), msg) {
            return false;
        }
        if inbound {
            self.inbound_count += 1;
            if turn {
                self.pending_turn = Some(id);
            }
        }
        true
    }

    /// Records an outbound message sent in answer to `after` (an id in `recent`): right after
    /// it and the replies already recorded to it, not at the end. A message that arrived while
    /// this one was being sent stays after it, so the person's latest words stay the last line
    /// the next turn sees (at the end, the agent would seem to have spoken last and start over).
    /// Without `after`, or once it has left `recent`, at the end.
    pub fn push_reply(&mut self, after: Option<&str>, msg: ConversationMessage) -> bool {
        let at = after
            .and_then(|after| self.recent.iter().position(|m| m.id == after))
            .map_or(self.recent.len(), |p| {
                let replies = self
                    .recent
                    .iter()
                    .skip(p + 1)
                    .take_while(|m| m.direction != "inbound")
                    .count();
                p + 1 + replies
            });
        self.insert_new(at, msg)
    }

    /// Puts `msg` at `at` in `recent` (the oldest goes past the bound) unless its id was seen.
    fn insert_new(&mut self, at: usize, msg: ConversationMessage) -> bool {
        if self.seen_ids.iter().any(|id| id == &msg.id) {
            return false;
        }
        self.remember_id(msg.id.clone());
        self.recent.insert(at, msg);
        if self.recent.len() > MAX_RECENT_MESSAGES {
            self.recent.pop_front();
        }
        true
    }

    /// Takes a live turn into the conversation: its two lines into `recent` (the agent's as
    /// heard), its memory and mode at once (a reconnecting session reads them back by query),
    /// and the turn itself into the outbox for the run to record. Returns whether it was new.
    pub fn push_live(&mut self, turn: LiveTurn) -> bool {
        let key = format!("live/{}", turn.turn_id);
        if self.seen_ids.iter().any(|id| id == &key) || self.live_outbox.len() >= MAX_LIVE_OUTBOX {
            return false;
        }
        self.remember_id(key);
        self.inbound_count += 1;
        for (direction, body, interrupted) in [
            ("inbound", &turn.person, false),
            ("outbound", &turn.agent, turn.interrupted),
        ] {
            if body.is_empty() && direction == "outbound" {
                continue;
            }
            self.recent.push_back(ConversationMessage {
                id: format!("{}/{direction}", turn.turn_id),
                direction: direction.to_owned(),
                body: body.clone(),
                at: turn.at.clone(),
                keyword: None,
                interrupted,
            });
        }
        while self.recent.len() > MAX_RECENT_MESSAGES {
            self.recent.pop_front();
        }
        self.memory
            .extend(turn.remember.iter().map(|(k, v)| (k.clone(), v.clone())));
        for action in &turn.actions {
            match action {
                AgentAction::Transfer { .. } if self.mode == AgentMode::Open => {
                    self.mode = AgentMode::Handoff;
                }
                AgentAction::EndConversation { .. } | AgentAction::OptOut
                    if self.mode == AgentMode::Open =>
                {
                    self.mode = AgentMode::Ended;
                }
                _ => {}
            }
        }
        self.live_outbox.push_back(turn);
        true
    }

    /// Adds an id to the ones already seen (the oldest fall out past [`MAX_SEEN_IDS`]).
    fn remember_id(&mut self, id: String) {
        self.seen_ids.push_back(id);
        if self.seen_ids.len() > MAX_SEEN_IDS {
            self.seen_ids.pop_front();
        }
    }

    /// The recent messages as the agent's turns (keyword messages left out).
    pub fn turns(&self) -> Vec<Turn> {
        self.recent
            .iter()
            .filter(|m| m.keyword.is_none())
            .map(|m| {
                if m.direction == "inbound" {
                    Turn::person(m.body.clone())
                } else {
                    Turn::agent(m.body.clone())
                }
            })
            .collect()
    }

    /// Person turns that fell out of [`Self::recent`].
    fn earlier_person_turns(&self) -> usize {
        let kept = self
            .recent
            .iter()
            .filter(|m| m.direction == "inbound")
            .count() as u64;
        usize::try_from(self.inbound_count.saturating_sub(kept)).unwrap_or(usize::MAX)
    }

    fn agent_channel(&self) -> AgentChannel {
        if self.is_web() {
            return AgentChannel::Web;
        }
        match self.channel {
            Some(Channel::Whatsapp) => AgentChannel::Whatsapp,
            _ => AgentChannel::Sms,
        }
    }

    /// A browser chat (no phone number on either side).
    pub fn is_web(&self) -> bool {
        self.ours == WEB_OURS
    }

    /// The channel's name as recorded in `conversations`.
    fn channel_name(&self) -> &'static str {
        if self.is_web() {
            "web"
        } else {
            self.channel.unwrap_or(Channel::Sms).as_str()
        }
    }

    /// A turn's record with this conversation's identity, status and disposition as they are
    /// now, on `channel`; the caller fills in the turn.
    fn turn_record(&self, channel: &str) -> AgentTurnRecord {
        AgentTurnRecord {
            conversation_id: self.conversation_id(),
            ours: self.ours.clone(),
            theirs: self.theirs.clone(),
            channel: channel.to_owned(),
            status: self.mode.status().to_owned(),
            disposition: self.disposition.map(|d| d.as_str().to_owned()),
            ..AgentTurnRecord::default()
        }
    }

    /// What the next run needs after this one completes idle.
    fn carry(&self) -> ConversationCarry {
        ConversationCarry {
            conversation_id: self.conversation_id(),
            memory: self.memory.clone(),
            status: self.mode.status().to_owned(),
            seen_ids: self.seen_ids.iter().cloned().collect(),
        }
    }

    /// Takes back what the previous run left. The message that started this run was checked
    /// for duplicates before the previous run's ids were known: a redelivery of an old message
    /// is dropped now.
    fn restore(&mut self, carry: ConversationCarry) {
        for (k, v) in carry.memory {
            self.memory.entry(k).or_insert(v);
        }
        if carry.status == conversation_status::HANDOFF && self.mode == AgentMode::Open {
            self.mode = AgentMode::Handoff;
        }
        let old: std::collections::BTreeSet<&str> =
            carry.seen_ids.iter().map(String::as_str).collect();
        let before = self.recent.len();
        let mut dropped_inbound = 0;
        self.recent.retain(|m| {
            let repeated = old.contains(m.id.as_str());
            if repeated && m.direction == "inbound" {
                dropped_inbound += 1;
            }
            !repeated
        });
        if self.recent.len() != before {
            self.inbound_count = self.inbound_count.saturating_sub(dropped_inbound);
            if self
                .pending_turn
                .as_deref()
                .is_some_and(|id| old.contains(id))
            {
                self.pending_turn = None;
            }
        }
        let mut seen: VecDeque<String> = carry
            .seen_ids
            .into_iter()
            .filter(|id| !self.seen_ids.contains(id))
            .collect();
        seen.extend(self.seen_ids.drain(..));
        while seen.len() > MAX_SEEN_IDS {
            seen.pop_front();
        }
        self.seen_ids = seen;
    }

    /// The conversation's workflow id.
    pub fn conversation_id(&self) -> String {
        let digits = |n: &str| n.trim_start_matches('+').to_owned();
        format!(
            "conversation-{}-{}",
            digits(&self.ours),
            digits(&self.theirs)
        )
    }
}

/// Holds the conversation and receives each inbound message as a signal. When our number has
/// an agent profile, each new inbound message gets the agent's reply through the idempotent
/// send path (opt-outs and the WhatsApp window apply there), and the agent's actions are
/// carried out: opt-out, hand-over to a person, end, or a callback later (a child workflow
/// that outlives this run). An idle conversation is summarised; after [`IDLE_CLOSE`] it
/// completes. It continues-as-new before its history grows large, carrying its messages and
/// memory, so the agent keeps its context.
#[workflow]
pub struct ConversationWorkflow {
    state: ConversationState,
    unprocessed: usize,
    /// This run's agent profile (looked up when the run starts).
    profile: Option<AgentProfile>,
}

#[workflow_methods]
impl ConversationWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, state: ConversationState) -> Self {
        Self {
            state,
            unprocessed: 0,
            profile: None,
        }
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<ConversationState> {
        let ours = ctx.state(|s| s.state.ours.clone());
        // A failed lookup means no agent for this run, never a stuck conversation.
        // Conversations started by a version without the agent replay without the lookup (and
        // answer nothing until their next run); new runs record the patch and look it up.
        let by_name = ctx.state(|s| s.state.profile_name.clone());
        let profile = if let Some(name) = by_name {
            // Browser chats are new with this field: no history without the lookup exists.
            ctx.execute_activity(
                AgentActivities::agent_profile_by_name,
                name,
                quick_options(),
            )
            .await
            .ok()
            .flatten()
        } else if ctx.patched(AGENT_REPLIES_PATCH) {
            ctx.execute_activity(AgentActivities::agent_profile, ours, quick_options())
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        ctx.state_mut(|s| s.profile.clone_from(&profile));
        // A first run (after an idle close too) takes back what the last idle close stored.
        // Runs recorded before the patch replay without the lookup.
        if profile.is_some()
            && ctx.state(|s| s.state.generation == 0)
            && ctx.patched(IDLE_CARRY_PATCH)
        {
            let id = ctx.state(|s| s.state.conversation_id());
            if let Ok(Some(carry)) = ctx
                .execute_activity(
                    AgentActivities::load_conversation_carry,
                    id,
                    quick_options(),
                )
                .await
            {
                ctx.state_mut(|s| s.state.restore(carry));
            }
        }
        // A message that arrived during the previous run's last turn came over in
        // `pending_turn` but woke nothing in this run: without this it would never be answered
        // (the run would wait for the next message, or close idle). Runs recorded before the
        // patch replay without the wake-up.
        let carried = ctx.state(|s| {
            s.unprocessed == 0 && s.state.pending_turn.is_some() && s.state.mode == AgentMode::Open
        });
        if profile.is_some() && carried && ctx.patched(CARRIED_TURN_PATCH) {
            ctx.state_mut(|s| s.unprocessed += 1);
        }
        // A person's reply carried over by continue-as-new wakes this run too (runs from before
        // person replies existed always carry an empty outbox).
        if ctx.state(|s| !s.state.person_outbox.is_empty() || !s.state.live_outbox.is_empty()) {
            ctx.state_mut(|s| s.unprocessed += 1);
        }

        loop {
            let summary_due = profile.is_some() && ctx.state(|s| s.state.needs_summary);
            let wait = match &profile {
                Some(p) if summary_due => Duration::from_secs(p.summary_after_idle_secs.max(1)),
                Some(p) => Duration::from_secs(p.idle_close_secs.max(1)),
                None => IDLE_CLOSE,
            };
            let woke = {
                let mut idle = pin!(ctx.timer(wait));
                let woke = select! {
                    _ = ctx.wait_condition(|s| s.unprocessed > 0) => true,
                    _ = idle.as_mut() => false,
                };
                if woke {
                    // A pending timer would stay in history; cancel it before the next round.
                    idle.cancel();
                }
                woke
            };
            if !woke {
                if summary_due {
                    summarise(ctx).await;
                    continue;
                }
                if profile.is_some() && ctx.patched(IDLE_CARRY_PATCH) {
                    let carry = ctx.state(|s| s.state.carry());
                    // Losing it costs the next run its context, never this one's close.
                    let _ = ctx
                        .execute_activity(
                            AgentActivities::save_conversation_carry,
                            carry,
                            store_options(Duration::from_secs(10)),
                        )
                        .await;
                    // A message that came in meanwhile belongs to this run.
                    if ctx.state(|s| s.unprocessed > 0) {
                        continue;
                    }
                }
                // Never close on a person's reply or a live turn the api has handed over.
                if ctx
                    .state(|s| !s.state.person_outbox.is_empty() || !s.state.live_outbox.is_empty())
                {
                    continue;
                }
                return Ok(ctx.state(|s| s.state.clone()));
            }
            ctx.state_mut(|s| s.unprocessed = 0);

            while let Some(action) = ctx.state_mut(|s| s.state.person_outbox.pop_front()) {
                person_action(ctx, profile.as_ref(), action).await;
            }
            // Each is popped only once recorded, so a continue-as-new in between carries it.
            while let Some(turn) = ctx.state(|s| s.state.live_outbox.front().cloned()) {
                live_turn(ctx, profile.as_ref(), turn).await;
                ctx.state_mut(|s| s.state.live_outbox.pop_front());
            }
            if ctx.state(|s| s.state.is_web() && s.state.mode == AgentMode::Ended) {
                summarise(ctx).await;
                return Ok(ctx.state(|s| s.state.clone()));
            }

            if let Some(profile) = &profile {
                let turn = ctx.state_mut(|s| {
                    if s.state.mode == AgentMode::Open {
                        s.state.pending_turn.take()
                    } else {
                        None
                    }
                });
                if let Some(turn_id) = turn {
                    agent_turn(ctx, profile, &turn_id).await;
                }
                if ctx.state(|s| s.state.mode == AgentMode::Ended) {
                    summarise(ctx).await;
                    return Ok(ctx.state(|s| s.state.clone()));
                }
            }

            let per_run = profile
                .as_ref()
                .map_or(u32::MAX, |p| p.turns_per_run.max(1));
            if ctx.continue_as_new_suggested()
                || ctx.history_length() > MAX_HISTORY_EVENTS
                || ctx.state(|s| s.state.turns_this_run >= per_run)
            {
                let mut next = ctx.state(|s| s.state.clone());
                next.generation += 1;
                next.turns_this_run = 0;
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

    /// A person replies by hand, or hands the conversation back to the agent (the api, via
    /// signal-with-start, so a conversation closed while idle opens again). Each request id
    /// counts once, whatever the run it arrives in.
    ///
    /// The mode changes as the signal arrives, not when the run gets to it: a reply takes the
    /// conversation over from the agent (it stays quiet until handed back), and a hand-back lets
    /// the agent answer every message that arrives after it.
    #[signal]
    pub fn person(&mut self, _ctx: &mut SyncWorkflowContext<Self>, action: PersonAction) {
        let key = format!("person/{}", action.request_id);
        if self.state.seen_ids.iter().any(|id| id == &key)
            || self
                .state
                .person_outbox
                .iter()
                .any(|a| a.request_id == action.request_id)
            || self.state.person_outbox.len() >= MAX_PERSON_OUTBOX
        {
            return;
        }
        match (&action.reply, self.state.mode) {
            (Some(_), AgentMode::Open) => self.state.mode = AgentMode::Handoff,
            (None, AgentMode::Handoff) => {
                self.state.mode = AgentMode::Open;
                // What came in during the hand-over was the person's to answer.
                self.state.pending_turn = None;
            }
            _ => {}
        }
        let after = self.state.recent.back().map(|m| m.id.clone());
        self.state
            .person_outbox
            .push_back(PersonAction { after, ..action });
        self.unprocessed += 1;
    }

    /// A settled turn of a live session (browser chat), from the api that streamed it.
    /// Repeats and turns beyond [`MAX_LIVE_OUTBOX`] waiting are dropped.
    #[signal]
    pub fn live_turn(&mut self, _ctx: &mut SyncWorkflowContext<Self>, turn: LiveTurn) {
        if self.state.push_live(turn) {
            self.unprocessed += 1;
        }
    }

    /// The conversation as held in workflow state.
    #[query]
    pub fn transcript(&self, _ctx: &WorkflowContextView) -> ConversationState {
        self.state.clone()
    }
}

/// Asks the agent for the reply to `turn_id`, sends it, carries out the actions and records
/// the turn. Nothing here fails the workflow: a failed model call gets the fallback reply, a
/// refused send is recorded.
async fn agent_turn(
    ctx: &mut WorkflowContext<ConversationWorkflow>,
    profile: &AgentProfile,
    turn_id: &str,
) {
    let (request, conversation_id, ours, theirs, channel) = ctx.state(|s| {
        let st = &s.state;
        (
            AgentRequest {
                profile: profile.clone(),
                channel: st.agent_channel(),
                history: st.turns(),
                contact: BTreeMap::new(),
                memory: st.memory.clone(),
                earlier_person_turns: st.earlier_person_turns(),
            },
            st.conversation_id(),
            st.ours.clone(),
            st.theirs.clone(),
            st.channel.unwrap_or(Channel::Sms),
        )
    });
    let mut records: Vec<(String, Option<String>)> = Vec::new();
    let input = AgentTurnInput {
        conversation_id: conversation_id.clone(),
        theirs: theirs.clone(),
        request,
    };
    let (reply, agent) = match ctx
        .execute_activity(
            AgentActivities::agent_reply,
            input,
            agent_options(profile, ctx.task_queue()),
        )
        .await
    {
        Ok(out) => (out.reply, out.agent),
        Err(e) => {
            records.push(("fallback".to_owned(), Some(e.to_string())));
            (
                AgentReply {
                    text: profile.fallback_reply.clone(),
                    ..AgentReply::default()
                },
                "fallback".to_owned(),
            )
        }
    };

    if !reply.text.trim().is_empty() {
        let message_id =
            MessageId::from_idempotency_key(&format!("{conversation_id}/reply/{turn_id}"))
                .to_string();
        let send = SendMessageInput {
            message_id: message_id.clone(),
            channel,
            to: theirs.clone(),
            from: Some(ours.clone()),
            messaging_service_sid: None,
            body: reply.text.clone(),
            conversation_id: Some(conversation_id.clone()),
        };
        match ctx
            .execute_activity(
                MessagingActivities::send_message,
                send,
                reply_send_options(),
            )
            .await
        {
            Ok(_) => {
                let at = rfc3339(ctx);
                ctx.state_mut(|s| {
                    s.state.push_reply(
                        Some(turn_id),
                        ConversationMessage {
                            id: message_id,
                            direction: "outbound".to_owned(),
                            body: reply.text.clone(),
                            at,
                            keyword: None,
                            interrupted: false,
                        },
                    );
                });
            }
            Err(e) => records.push(("reply_failed".to_owned(), Some(e.to_string()))),
        }
    }

    for action in &reply.actions {
        match action {
            AgentAction::OptOut => {
                let input = OptOutInput {
                    phone: theirs.clone(),
                    channel: channel.as_str().to_owned(),
                };
                let detail = ctx
                    .execute_activity(AgentActivities::opt_out, input, quick_options())
                    .await
                    .err()
                    .map(|e| format!("failed: {e}"));
                ctx.state_mut(|s| s.state.mode = AgentMode::Ended);
                records.push(("opt_out".to_owned(), detail));
            }
            AgentAction::Transfer { reason } => {
                ctx.state_mut(|s| s.state.mode = AgentMode::Handoff);
                records.push(("transfer".to_owned(), reason.clone()));
            }
            AgentAction::EndConversation { reason } => {
                ctx.state_mut(|s| {
                    if s.state.mode == AgentMode::Open {
                        s.state.mode = AgentMode::Ended;
                    }
                });
                records.push(("end_conversation".to_owned(), reason.clone()));
            }
            AgentAction::ScheduleCallback {
                delay_seconds,
                note,
            } => {
                let input = FollowUpInput {
                    conversation_id: conversation_id.clone(),
                    channel,
                    ours: ours.clone(),
                    theirs: theirs.clone(),
                    delay_seconds: *delay_seconds,
                    message: profile.callback_message.clone(),
                    note: note.clone(),
                    call: false,
                };
                // The id derives from the turn, so a replayed or retried turn schedules once.
                let options = ChildWorkflowOptions::builder()
                    .workflow_id(format!(
                        "followup-{}-{turn_id}",
                        &conversation_id["conversation-".len()..]
                    ))
                    .parent_close_policy(ParentClosePolicy::Abandon)
                    .build();
                let started = ctx
                    .start_child_workflow(FollowUpWorkflow::run, input, options)
                    .await;
                let detail = match started {
                    Ok(_) => format!(
                        "in {delay_seconds} s{}",
                        note.as_ref().map(|n| format!(": {n}")).unwrap_or_default()
                    ),
                    Err(e) => format!("could not schedule: {e:?}"),
                };
                records.push(("schedule_callback".to_owned(), Some(detail)));
            }
        }
    }

    let record = ctx.state_mut(|s| {
        let st = &mut s.state;
        st.memory.extend(reply.remember.clone());
        st.usage.add(reply.usage);
        if reply.disposition.is_some() {
            st.disposition = reply.disposition;
        }
        st.needs_summary = true;
        st.turns_this_run += 1;
        st.turns += 1;
        AgentTurnRecord {
            profile: profile.name.clone(),
            profile_version: profile.version,
            agent,
            turn_id: turn_id.to_owned(),
            actions: records,
            prompt_tokens: reply.usage.prompt_tokens,
            completion_tokens: reply.usage.completion_tokens,
            ..st.turn_record(channel.as_str())
        }
    });
    // The record is for people reading the conversation; losing it must not stop the reply
    // loop, and the activity retries on its own.
    record_turn(ctx, record).await;
}

/// `record_agent_turn`, retried by the activity on its own (once per turn id in MongoDB).
async fn record_turn(ctx: &mut WorkflowContext<ConversationWorkflow>, record: AgentTurnRecord) {
    let _ = ctx
        .execute_activity(
            AgentActivities::record_agent_turn,
            record,
            store_options(Duration::from_secs(10)),
        )
        .await;
}

/// Sends a person's reply through the same exactly-once path as the agent's (its message id
/// derives from the request id), or hands the conversation back: the agent answers again from
/// the next message (what came in during the hand-over was the person's to answer).
async fn person_action(
    ctx: &mut WorkflowContext<ConversationWorkflow>,
    profile: Option<&AgentProfile>,
    action: PersonAction,
) {
    let (conversation_id, ours, theirs, channel) = ctx.state(|s| {
        (
            s.state.conversation_id(),
            s.state.ours.clone(),
            s.state.theirs.clone(),
            s.state.channel.unwrap_or(Channel::Sms),
        )
    });
    let turn_id = format!("person/{}", action.request_id);
    let mut records: Vec<(String, Option<String>)> = Vec::new();
    let web = ctx.state(|s| s.state.is_web());
    match &action.reply {
        // A browser chat has no number to text; its person has left or will reconnect.
        Some(_) if web => records.push((
            "person_reply_failed".to_owned(),
            Some(format!("{}: not available in a browser chat", action.by)),
        )),
        Some(text) => {
            let message_id = MessageId::from_idempotency_key(&format!(
                "{conversation_id}/person/{}",
                action.request_id
            ))
            .to_string();
            let send = SendMessageInput {
                message_id: message_id.clone(),
                channel,
                to: theirs.clone(),
                from: Some(ours.clone()),
                messaging_service_sid: None,
                body: text.clone(),
                conversation_id: Some(conversation_id.clone()),
            };
            match ctx
                .execute_activity(
                    MessagingActivities::send_message,
                    send,
                    reply_send_options(),
                )
                .await
            {
                Ok(_) => {
                    let at = rfc3339(ctx);
                    ctx.state_mut(|s| {
                        // It answers what the conversation held when the person sent it.
                        s.state.push_reply(
                            action.after.as_deref(),
                            ConversationMessage {
                                id: message_id,
                                direction: "outbound".to_owned(),
                                body: text.clone(),
                                at,
                                keyword: None,
                                interrupted: false,
                            },
                        );
                    });
                    records.push(("person_reply".to_owned(), Some(action.by.clone())));
                }
                Err(e) => records.push((
                    "person_reply_failed".to_owned(),
                    Some(format!("{}: {e}", action.by)),
                )),
            }
        }
        None => records.push(("hand_back".to_owned(), Some(action.by.clone()))),
    }
    let record = ctx.state_mut(|s| {
        let st = &mut s.state;
        // Remembered like a message id, so a repeat in a later run is dropped too.
        st.remember_id(turn_id.clone());
        AgentTurnRecord {
            profile: profile.map(|p| p.name.clone()).unwrap_or_default(),
            profile_version: profile.and_then(|p| p.version),
            agent: "person".to_owned(),
            turn_id: turn_id.clone(),
            actions: records,
            ..st.turn_record(channel.as_str())
        }
    });
    record_turn(ctx, record).await;
}

/// Records a live turn in MongoDB (its transcript lines and actions, once per turn id) and
/// carries out its actions. The turn is already in state and history: the api does not wait
/// for this. Actions that need a phone number (opt-out, a callback) are recorded as not
/// available on the web; the mode changes were made when the turn arrived.
async fn live_turn(
    ctx: &mut WorkflowContext<ConversationWorkflow>,
    profile: Option<&AgentProfile>,
    turn: LiveTurn,
) {
    let mut records: Vec<(String, Option<String>)> = Vec::new();
    if turn.agent_name == "fallback" {
        records.push(("fallback".to_owned(), None));
    }
    if turn.interrupted {
        records.push((
            "interrupted".to_owned(),
            Some(format!("heard {} characters", turn.agent.chars().count())),
        ));
    }
    for action in &turn.actions {
        let detail = match action {
            AgentAction::OptOut | AgentAction::ScheduleCallback { .. } => {
                Some("not available in a browser chat".to_owned())
            }
            AgentAction::Transfer { reason } | AgentAction::EndConversation { reason } => {
                reason.clone()
            }
        };
        records.push((action.kind().to_owned(), detail));
    }
    let mut transcript = vec![TranscriptLine {
        turn_id: turn.turn_id.clone(),
        speaker: "person".to_owned(),
        text: turn.person.clone(),
        interrupted: false,
        at: turn.at.clone(),
    }];
    if !turn.agent.is_empty() {
        transcript.push(TranscriptLine {
            turn_id: turn.turn_id.clone(),
            speaker: "agent".to_owned(),
            text: turn.agent.clone(),
            interrupted: turn.interrupted,
            at: turn.at.clone(),
        });
    }
    let record = ctx.state_mut(|s| {
        let st = &mut s.state;
        st.usage.add(turn.usage);
        if turn.disposition.is_some() {
            st.disposition = turn.disposition;
        }
        st.needs_summary = true;
        st.turns_this_run += 1;
        st.turns += 1;
        AgentTurnRecord {
            profile: profile
                .map(|p| p.name.clone())
                .or_else(|| st.profile_name.clone())
                .unwrap_or_default(),
            profile_version: profile.and_then(|p| p.version),
            agent: turn.agent_name.clone(),
            turn_id: format!("live/{}", turn.turn_id),
            actions: records,
            prompt_tokens: turn.usage.prompt_tokens,
            completion_tokens: turn.usage.completion_tokens,
            transcript,
            ..st.turn_record(st.channel_name())
        }
    });
    // Unlike an SMS turn's record, this is the transcript's only copy outside Temporal: the
    // activity retries until MongoDB takes it (once per turn id).
    record_turn(ctx, record).await;
}

/// Summarises the conversation and stores the summary on it; a failure leaves the previous
/// summary in place.
async fn summarise(ctx: &mut WorkflowContext<ConversationWorkflow>) {
    let Some(profile) = ctx.state(|s| s.profile.clone()) else {
        return;
    };
    let input = ctx.state(|s| SummaryInput {
        conversation_id: s.state.conversation_id(),
        request: AgentRequest {
            profile: profile.clone(),
            channel: s.state.agent_channel(),
            history: s.state.turns(),
            contact: BTreeMap::new(),
            memory: s.state.memory.clone(),
            earlier_person_turns: s.state.earlier_person_turns(),
        },
    });
    let result = ctx
        .execute_activity(
            AgentActivities::agent_summary,
            input,
            summary_options(&profile, ctx.task_queue()),
        )
        .await;
    ctx.state_mut(|s| {
        s.state.needs_summary = false;
        if let Ok(summary) = result {
            s.state.usage.add(summary.usage);
            s.state.disposition = Some(summary.disposition);
            s.state.summary = Some(summary.summary);
        }
    });
}

fn rfc3339(ctx: &WorkflowContext<ConversationWorkflow>) -> String {
    ctx.workflow_time()
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
        .unwrap_or_default()
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
            keyword: None,
            interrupted: false,
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
        assert_eq!(s.pending_turn.as_deref(), Some("SM2"));
    }

    #[test]
    fn a_reply_goes_after_the_message_it_answers_not_after_later_ones() {
        let out = |id: &str| ConversationMessage {
            direction: "outbound".to_owned(),
            ..msg(id)
        };
        let mut s = ConversationState::default();
        s.push(msg("SM1"));
        // SM2 arrived while the reply to SM1 was being sent.
        s.push(msg("SM2"));
        assert!(s.push_reply(Some("SM1"), out("r1")));
        assert!(!s.push_reply(Some("SM1"), out("r1")));
        // A second reply to SM1 (a person's) follows the first; one to SM2 goes last.
        s.push_reply(Some("SM1"), out("p1"));
        s.push_reply(Some("SM2"), out("r2"));
        // An anchor no longer held (or none) appends.
        s.push_reply(Some("gone"), out("r3"));
        s.push_reply(None, out("r4"));
        let order: Vec<&str> = s.recent.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(order, ["SM1", "r1", "p1", "SM2", "r2", "r3", "r4"]);
        assert_eq!(s.inbound_count, 2);
    }

    #[test]
    fn keywords_are_not_turns_for_the_agent() {
        let mut s = ConversationState::default();
        s.push(msg("SM1"));
        s.pending_turn = None;
        s.push(ConversationMessage {
            keyword: Some("stop".to_owned()),
            ..msg("SM2")
        });
        assert_eq!(s.pending_turn, None);
        assert_eq!(s.turns(), vec![Turn::person("hi")]);
    }

    #[test]
    fn a_new_run_takes_back_memory_hand_over_and_seen_ids() {
        let mut s = ConversationState::default();
        s.push(msg("SM1"));
        s.memory.insert("topic".to_owned(), "billing".to_owned());
        let carry = ConversationCarry {
            memory: BTreeMap::from([
                ("name".to_owned(), "Grace".to_owned()),
                ("topic".to_owned(), "old".to_owned()),
            ]),
            status: conversation_status::HANDOFF.to_owned(),
            seen_ids: vec!["SM0".to_owned()],
            ..ConversationCarry::default()
        };
        s.restore(carry);
        assert_eq!(s.mode, AgentMode::Handoff);
        assert_eq!(s.memory["name"], "Grace");
        assert_eq!(s.memory["topic"], "billing", "this run's memory wins");
        assert_eq!(s.seen_ids, ["SM0", "SM1"]);
        assert!(
            !s.push(msg("SM0")),
            "an id of the previous run is a duplicate"
        );
    }

    #[test]
    fn a_redelivered_message_that_started_a_run_is_dropped_once_the_old_ids_are_known() {
        let mut s = ConversationState::default();
        s.push(msg("SM1"));
        s.restore(ConversationCarry {
            status: conversation_status::OPEN.to_owned(),
            seen_ids: vec!["SM1".to_owned()],
            ..ConversationCarry::default()
        });
        assert!(s.recent.is_empty());
        assert_eq!(s.inbound_count, 0);
        assert_eq!(s.pending_turn, None);
        assert_eq!(s.seen_ids, ["SM1"]);
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

    #[test]
    fn conversation_ids_match_the_api() {
        let s = ConversationState {
            ours: "+15005550006".to_owned(),
            theirs: "+14155552671".to_owned(),
            ..ConversationState::default()
        };
        let ours = voice_agent_domain::PhoneNumber::parse_e164(&s.ours).unwrap();
        let theirs = voice_agent_domain::PhoneNumber::parse_e164(&s.theirs).unwrap();
        assert_eq!(
            s.conversation_id(),
            voice_agent_domain::conversation_workflow_id(&ours, &theirs)
        );
    }
}
