//! The AI agent that talks on calls, SMS, WhatsApp and in the browser.
//!
//! One interface, [`Agent`]: given the conversation so far, the channel and the agent's
//! [`AgentProfile`], produce the next reply and any [`AgentAction`]s (end, opt out, transfer,
//! schedule a callback). Two implementations:
//!
//! - [`ScriptedAgent`], the default when no model is configured: deterministic replies from a
//!   rules file (keywords or regular expressions to replies and actions, with `{{slots}}` filled
//!   from the contact's variables and from what the person said earlier). It works offline and
//!   is what the tests use.
//! - [`ChatCompletionsAgent`]: any OpenAI-compatible Chat Completions endpoint (OpenAI, Azure
//!   OpenAI, Groq, vLLM, Ollama, llama.cpp's server) over `reqwest`, with tool calling for the
//!   actions, streaming (server-sent events), and retries with backoff on 429 and 5xx.
//!
//! [`respond`] wraps either with the profile's limits (time, turns, reply length). The agent
//! does no durable work itself: workflows call it from an activity, keep the history in their
//! state, and carry out the actions.
//!
//! Which numbers have which profile comes from an agents file, [`AgentDirectory`].
#![warn(missing_docs)]

mod directory;
mod error;
mod openai;
mod respond;
mod scripted;
mod types;

pub use directory::{
    AgentDirectory, AgentProfile, DirectoryError, MAX_VOICE_TURN_SECS, ModelSettings,
    RELAY_INTERRUPTIBLE, RelaySettings, VoiceMode,
};
pub use error::AgentError;
pub use openai::ChatCompletionsAgent;
pub use respond::{respond, respond_streaming, truncate_reply};
pub use scripted::{RulesError, ScriptedAgent, ScriptedRules};
pub use types::{
    AgentAction, AgentChannel, AgentReply, AgentRequest, Disposition, Speaker, Summary, Turn, Usage,
};

use futures::future::BoxFuture;

/// Produces an agent's turns. Implementations are cheap to share (`Arc<dyn Agent>`).
pub trait Agent: Send + Sync + 'static {
    /// A short name for logs and records (`scripted`, `model:<name>`).
    fn name(&self) -> String;

    /// The next reply to the conversation in `request`.
    fn reply<'a>(
        &'a self,
        request: &'a AgentRequest,
    ) -> BoxFuture<'a, Result<AgentReply, AgentError>>;

    /// The next reply, calling `on_delta` with each piece of its text as it is produced, so a
    /// browser or a speech synthesiser can start before the whole reply exists. The pieces
    /// joined are the reply's text. By default the whole text comes in one piece.
    fn reply_streaming<'a>(
        &'a self,
        request: &'a AgentRequest,
        on_delta: &'a mut (dyn FnMut(&str) + Send),
    ) -> BoxFuture<'a, Result<AgentReply, AgentError>> {
        Box::pin(async move {
            let reply = self.reply(request).await?;
            on_delta(&reply.text);
            Ok(reply)
        })
    }

    /// A summary and disposition of a finished or idle conversation.
    fn summarize<'a>(
        &'a self,
        request: &'a AgentRequest,
    ) -> BoxFuture<'a, Result<Summary, AgentError>>;
}
