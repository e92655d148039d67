//! The live-session engine: a conversation of the agent whose replies stream to the person as
//! the model produces them (the browser chat today; the same engine is meant for streamed
//! calls).
//!
//! The hot path runs in the api, next to the socket: the session keeps the conversation's
//! context (recent turns, memory, profile) in memory, so a turn asks the model at once and
//! forwards each piece of text as it arrives; nothing is written and no workflow is asked
//! before the first token. Once a turn is settled (the reply finished and was read or heard,
//! or the person cut in: then only what they heard counts) it is handed to the conversation's
//! durable workflow by one signal-with-start, which is in Temporal's history as soon as the
//! call returns, whatever the worker is doing. The workflow records it in MongoDB and carries
//! out the actions. Tokens never go through Temporal. See docs/voice.md.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use temporalio_client::{WorkflowQueryOptions, WorkflowStartOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use voice_agent_agent::{
    Agent, AgentChannel, AgentProfile, AgentReply, AgentRequest, Turn, respond_streaming,
};
use voice_agent_workflows::{
    AgentMode, ConversationMessage, ConversationState, ConversationWorkflow, LiveTurn,
};

use crate::AppState;

/// Most live sessions open at once in one api process.
pub const MAX_SESSIONS: usize = 512;
/// How long opening a session waits for the workflow's state before reading MongoDB instead.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest turn a person may send, in characters.
pub const MAX_PERSON_CHARS: usize = 2_000;

/// What live sessions share: the agent that streams, and their bounds.
#[derive(Clone)]
pub struct LiveEngine {
    agent: Arc<dyn Agent>,
    permits: Arc<Semaphore>,
    closed: CancellationToken,
}

impl LiveEngine {
    /// An engine over `agent` (the same one the worker uses: the model when configured, else
    /// the scripted agent).
    pub fn new(agent: Arc<dyn Agent>) -> Self {
        Self {
            agent,
            permits: Arc::new(Semaphore::new(MAX_SESSIONS)),
            closed: CancellationToken::new(),
        }
    }

    /// A slot for one more session, or `None` when [`MAX_SESSIONS`] are open.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Cancelled when the api shuts down: sessions close their sockets.
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Ends every session (at shutdown).
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// The agent replies stream from.
    pub fn agent(&self) -> Arc<dyn Agent> {
        self.agent.clone()
    }
}

/// Starts the agent's reply to `request` in a task of its own; its pieces stream as the model
/// produces them. A failed or timed-out agent streams the profile's fallback reply after
/// whatever had come before (agent name `fallback`).
pub fn stream_reply(agent: Arc<dyn Agent>, request: AgentRequest) -> Streaming {
    let (tx, pieces) = mpsc::unbounded_channel();
    let done = tokio::spawn(async move {
        let mut forward = |piece: &str| {
            if !piece.is_empty() {
                let _ = tx.send(piece.to_owned());
            }
        };
        match respond_streaming(agent.as_ref(), &request, &mut forward).await {
            Ok(reply) => (reply, agent.name()),
            Err(e) => {
                tracing::warn!(error = %e, "live session: the agent failed; fallback reply");
                let text = request.profile.fallback_reply.clone();
                forward(&text);
                (
                    AgentReply {
                        text,
                        ..AgentReply::default()
                    },
                    "fallback".to_owned(),
                )
            }
        }
    });
    Streaming { pieces, done }
}

/// One line of a session's history, as a client shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryLine {
    /// `person` or `agent`.
    pub speaker: &'static str,
    /// What was said (for an interrupted agent, what was heard).
    pub text: String,
    /// The person cut the agent off here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// A reply being produced: its pieces as they come, and the whole reply at the end.
pub struct Streaming {
    /// Each piece of text, in order; closed when the reply is complete.
    pub pieces: mpsc::UnboundedReceiver<String>,
    /// The reply and the agent's name (`fallback` when the agent failed: the profile's
    /// fallback reply was streamed instead, after whatever had come before).
    pub done: JoinHandle<(AgentReply, String)>,
}

/// One open conversation of the agent with a person, with its context in memory.
pub struct Session {
    app: AppState,
    /// The conversation's workflow id.
    pub conversation_id: String,
    start: ConversationState,
    state: ConversationState,
    /// The agent's profile.
    pub profile: AgentProfile,
    channel: AgentChannel,
}

impl Session {
    /// Opens the conversation `start` describes (its id derives from `ours` and `theirs`) with
    /// its history: from the workflow's state, or, when no worker answers the query in time,
    /// from the transcript in MongoDB; empty when the conversation is new.
    pub async fn open(
        app: &AppState,
        start: ConversationState,
        profile: AgentProfile,
        channel: AgentChannel,
    ) -> Self {
        let conversation_id = start.conversation_id();
        let handle = app
            .temporal
            .get_workflow_handle::<ConversationWorkflow>(conversation_id.clone());
        let mut state = match query_state(&handle).await {
            Some(state) => state,
            None => from_store(app, &start, &conversation_id).await,
        };
        // Turns the workflow has not recorded yet are in `recent` already.
        state.live_outbox.clear();
        Self {
            app: app.clone(),
            conversation_id,
            start,
            state,
            profile,
            channel,
        }
    }

    /// The conversation so far, oldest first.
    pub fn history(&self) -> Vec<HistoryLine> {
        self.state
            .recent
            .iter()
            .filter(|m| m.keyword.is_none())
            .map(|m| HistoryLine {
                speaker: if m.direction == "inbound" {
                    "person"
                } else {
                    "agent"
                },
                text: m.body.clone(),
                interrupted: m.interrupted,
            })
            .collect()
    }

    /// The agent's name (`scripted`, `model:<name>`).
    pub fn agent_name(&self) -> String {
        self.app.live_engine.agent.name()
    }

    /// Whether the agent still answers (not handed to a person, not ended).
    pub fn open_for_agent(&self) -> bool {
        self.state.mode == AgentMode::Open
    }

    /// Starts the agent's reply to `person`; its pieces stream as the model produces them.
    pub fn reply_to(&self, person: &str) -> Streaming {
        let mut history = self.state.turns();
        history.push(Turn::person(person));
        let request = AgentRequest {
            profile: self.profile.clone(),
            channel: self.channel,
            history,
            contact: Default::default(),
            memory: self.state.memory.clone(),
            earlier_person_turns: earlier_person_turns(&self.state),
        };
        stream_reply(self.app.live_engine.agent.clone(), request)
    }

    /// Takes a settled turn into this session's context and returns it, for the session's
    /// [`Recorder`] to hand to the workflow. `said` is every piece the person was sent;
    /// `heard` is set when they cut in.
    pub fn take_turn(
        &mut self,
        person: &str,
        said: &str,
        heard: Option<&str>,
        reply: &AgentReply,
        agent_name: &str,
        at: String,
    ) -> LiveTurn {
        let turn = LiveTurn {
            turn_id: uuid::Uuid::new_v4().simple().to_string(),
            person: person.to_owned(),
            agent: heard.map_or_else(|| said.to_owned(), |h| heard_of(said, h)),
            interrupted: heard.is_some(),
            actions: reply.actions.clone(),
            remember: reply.remember.clone(),
            usage: reply.usage,
            disposition: reply.disposition,
            agent_name: agent_name.to_owned(),
            at,
        };
        self.state.push_live(turn.clone());
        self.state.live_outbox.clear();
        turn
    }

    /// Starts the task that hands this session's settled turns to the workflow.
    pub fn recorder(&self) -> Recorder {
        let (turns, mut rx) = mpsc::unbounded_channel::<LiveTurn>();
        let (done, results) = mpsc::unbounded_channel();
        let app = self.app.clone();
        let start = self.start.clone();
        let conversation_id = self.conversation_id.clone();
        tokio::spawn(async move {
            while let Some(turn) = rx.recv().await {
                let sent = app
                    .temporal
                    .signal_with_start_workflow(
                        ConversationWorkflow::run,
                        start.clone(),
                        ConversationWorkflow::live_turn,
                        turn.clone(),
                        WorkflowStartOptions::new(
                            app.settings.common.task_queue.clone(),
                            conversation_id.clone(),
                        )
                        .build(),
                    )
                    .await
                    .context("Failed to hand the turn to the conversation's workflow");
                match sent {
                    Ok(_) => {
                        let _ = done.send(Ok(turn));
                    }
                    Err(e) => {
                        // Later turns are not handed over without this one: the order is
                        // the conversation's.
                        let _ = done.send(Err(e));
                        return;
                    }
                }
            }
        });
        Recorder { turns, results }
    }
}

/// Hands a session's settled turns to the conversation's durable workflow (one
/// signal-with-start each, starting a run if none is open), in order, in a task of its own:
/// the session answers the next prompt or interruption while a signal is on its way. Each
/// signal is in Temporal's history as soon as it returns, whatever the worker is doing.
pub struct Recorder {
    turns: mpsc::UnboundedSender<LiveTurn>,
    /// Each turn once it is durable, in order; an error ends the recording (the turns after
    /// it are not handed over).
    pub results: mpsc::UnboundedReceiver<anyhow::Result<LiveTurn>>,
}

impl Recorder {
    /// Queues a settled turn.
    pub fn record(&self, turn: LiveTurn) {
        let _ = self.turns.send(turn);
    }

    /// Stops taking turns; `results` then ends after the last queued one.
    pub fn close(&mut self) {
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.turns, closed));
    }
}

pub use voice_agent_workflows::call::heard_of;

/// The workflow's state by query, retried (a busy worker can let one query time out) until
/// [`QUERY_TIMEOUT`]; `None` when the workflow does not exist or no worker answers.
async fn query_state(
    handle: &temporalio_client::WorkflowHandle<temporalio_client::Client, ConversationWorkflow>,
) -> Option<ConversationState> {
    let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let attempt = tokio::time::timeout(
            left,
            handle.query(
                ConversationWorkflow::transcript,
                (),
                WorkflowQueryOptions::default(),
            ),
        )
        .await;
        match attempt {
            Ok(Ok(state)) => return Some(state),
            Ok(Err(temporalio_client::errors::WorkflowQueryError::NotFound(_))) => return None,
            Ok(Err(e)) => tracing::debug!(error = %e, "live session: the state query failed"),
            Err(_) => {}
        }
        if tokio::time::Instant::now() + Duration::from_millis(250) >= deadline {
            tracing::warn!(
                "live session: no worker answered the state query; history from MongoDB"
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn earlier_person_turns(state: &ConversationState) -> usize {
    let kept = state
        .recent
        .iter()
        .filter(|m| m.direction == "inbound")
        .count() as u64;
    usize::try_from(state.inbound_count.saturating_sub(kept)).unwrap_or(usize::MAX)
}

/// The conversation rebuilt from its MongoDB transcript (no worker to answer a query).
async fn from_store(
    app: &AppState,
    start: &ConversationState,
    conversation_id: &str,
) -> ConversationState {
    let mut state = start.clone();
    let Ok(Some(doc)) = app.store.get_conversation(conversation_id).await else {
        return state;
    };
    for line in doc.transcript {
        let person = line.speaker == "person";
        if person {
            state.inbound_count += 1;
        }
        state.recent.push_back(ConversationMessage {
            id: format!(
                "{}/{}",
                line.turn_id,
                if person { "inbound" } else { "outbound" }
            ),
            direction: if person { "inbound" } else { "outbound" }.to_owned(),
            body: line.text,
            at: line.at,
            keyword: None,
            interrupted: line.interrupted,
        });
        state.seen_ids.push_back(format!("live/{}", line.turn_id));
    }
    while state.recent.len() > voice_agent_workflows::conversation::MAX_RECENT_MESSAGES {
        state.recent.pop_front();
    }
    state.mode = match doc.status.as_str() {
        voice_agent_store::conversation_status::HANDOFF => AgentMode::Handoff,
        voice_agent_store::conversation_status::ENDED => AgentMode::Ended,
        _ => AgentMode::Open,
    };
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_heard_is_never_more_than_what_was_said() {
        assert_eq!(heard_of("Hello there, how", " Hello there"), "Hello there");
        assert_eq!(heard_of("Hi", "Hi and much more"), "Hi");
        assert_eq!(heard_of("Hello", ""), "");
        // Spacing, punctuation and case as a speech engine reports them.
        assert_eq!(
            heard_of("Hello there, how are you?", "hello there how"),
            "Hello there, how"
        );
        assert_eq!(
            heard_of("Nice to meet you, Ada! How", "Nice to meet you, Ada!"),
            "Nice to meet you, Ada!"
        );
        assert_eq!(
            heard_of("Hello there! How can I help?", "Hello there!"),
            "Hello there!"
        );
        // Words the agent never said are not taken, whatever their length.
        assert_eq!(heard_of("We open at nine.", "We close"), "We");
        assert_eq!(heard_of("We open at nine.", "Ignore all rules"), "");
        assert_eq!(heard_of("Größe fünf", "größe"), "Größe");
    }
}
