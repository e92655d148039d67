//! What goes into the agent and what comes out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::directory::AgentProfile;

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    /// The person (caller, texter, browser user).
    Person,
    /// The agent.
    Agent,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Who said it.
    pub speaker: Speaker,
    /// What was said (speech already transcribed).
    pub text: String,
}

impl Turn {
    /// A turn of the person.
    pub fn person(text: impl Into<String>) -> Self {
        Self {
            speaker: Speaker::Person,
            text: text.into(),
        }
    }

    /// A turn of the agent.
    pub fn agent(text: impl Into<String>) -> Self {
        Self {
            speaker: Speaker::Agent,
            text: text.into(),
        }
    }
}

/// Where the conversation happens; shapes reply length and style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentChannel {
    /// A phone call (`<Say>`).
    Voice,
    /// SMS.
    Sms,
    /// WhatsApp.
    Whatsapp,
    /// The browser chat.
    Web,
}

impl AgentChannel {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voice => "voice",
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
            Self::Web => "web",
        }
    }
}

/// Everything the agent may use for one turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRequest {
    /// Persona, instructions, facts and limits.
    pub profile: AgentProfile,
    /// The channel.
    pub channel: AgentChannel,
    /// The conversation so far, oldest first; the last turn is usually the person's.
    pub history: Vec<Turn>,
    /// The contact's variables (name, columns of the uploaded list), for `{{slots}}`.
    #[serde(default)]
    pub contact: BTreeMap<String, String>,
    /// What the agent remembered from earlier turns (kept by the workflow across runs).
    #[serde(default)]
    pub memory: BTreeMap<String, String>,
    /// The person's turns that are no longer in `history` (a long conversation keeps only its
    /// latest messages), so turn limits count the whole conversation.
    #[serde(default)]
    pub earlier_person_turns: usize,
}

impl AgentRequest {
    /// How many turns the person has taken, over the whole conversation.
    pub fn person_turns(&self) -> usize {
        self.earlier_person_turns
            + self
                .history
                .iter()
                .filter(|t| t.speaker == Speaker::Person)
                .count()
    }

    /// The person's latest turn, if the last turn is theirs.
    pub fn last_person_text(&self) -> Option<&str> {
        self.history
            .last()
            .filter(|t| t.speaker == Speaker::Person)
            .map(|t| t.text.as_str())
    }
}

/// Something the agent decided to do besides replying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentAction {
    /// Close the conversation (voice: hang up after the reply).
    EndConversation {
        /// Why, for the record.
        #[serde(default)]
        reason: Option<String>,
    },
    /// The person asked not to be contacted again: suppress them on every channel.
    OptOut,
    /// Hand over to a human: `<Dial>` on a call, a flag for a person on messaging.
    Transfer {
        /// Why, for the person picking it up.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Contact the person again later (a durable timer).
    ScheduleCallback {
        /// How long from now.
        delay_seconds: u64,
        /// What to pick up on, for the record and the follow-up message.
        #[serde(default)]
        note: Option<String>,
    },
}

impl AgentAction {
    /// The action's name as recorded.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EndConversation { .. } => "end_conversation",
            Self::OptOut => "opt_out",
            Self::Transfer { .. } => "transfer",
            Self::ScheduleCallback { .. } => "schedule_callback",
        }
    }
}

/// Tokens a model call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

impl Usage {
    /// Adds another call's usage. The counts come from the model's server, so a sum that
    /// would overflow stays at the maximum instead of panicking the workflow that keeps it.
    pub fn add(&mut self, other: Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
    }
}

/// The agent's turn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReply {
    /// What to say or send; may be empty when an action speaks for itself.
    pub text: String,
    /// What to do.
    #[serde(default)]
    pub actions: Vec<AgentAction>,
    /// Slots to remember from this turn (merged into the conversation's memory).
    #[serde(default)]
    pub remember: BTreeMap<String, String>,
    /// Tokens used (zero for the scripted agent).
    #[serde(default)]
    pub usage: Usage,
    /// A disposition the agent already knows from this turn (scripted rules can set one).
    #[serde(default)]
    pub disposition: Option<Disposition>,
}

/// How a conversation ended up, for campaign managers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Wants the offer or more information.
    Interested,
    /// Declined.
    NotInterested,
    /// Asked to be contacted later.
    Callback,
    /// Not the intended person.
    WrongNumber,
    /// Handed to a human.
    Transferred,
    /// Asked not to be contacted.
    OptedOut,
    /// Never engaged.
    NoResponse,
    /// None of the above.
    Other,
}

impl Disposition {
    /// Every disposition, for prompts and validation.
    pub const ALL: [Disposition; 8] = [
        Self::Interested,
        Self::NotInterested,
        Self::Callback,
        Self::WrongNumber,
        Self::Transferred,
        Self::OptedOut,
        Self::NoResponse,
        Self::Other,
    ];

    /// Snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interested => "interested",
            Self::NotInterested => "not_interested",
            Self::Callback => "callback",
            Self::WrongNumber => "wrong_number",
            Self::Transferred => "transferred",
            Self::OptedOut => "opted_out",
            Self::NoResponse => "no_response",
            Self::Other => "other",
        }
    }

    /// Parses a name, tolerating case, spaces and dashes.
    pub fn parse(raw: &str) -> Option<Self> {
        let norm = raw.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        Self::ALL.into_iter().find(|d| d.as_str() == norm)
    }
}

/// A summary of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// A few sentences.
    pub summary: String,
    /// The outcome.
    pub disposition: Disposition,
    /// Tokens used.
    #[serde(default)]
    pub usage: Usage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_parse_loosely() {
        assert_eq!(
            Disposition::parse("Not Interested"),
            Some(Disposition::NotInterested)
        );
        assert_eq!(
            Disposition::parse("wrong-number"),
            Some(Disposition::WrongNumber)
        );
        assert_eq!(Disposition::parse("maybe"), None);
        for d in Disposition::ALL {
            assert_eq!(Disposition::parse(d.as_str()), Some(d));
        }
    }

    #[test]
    fn actions_serialise_with_a_type_tag() {
        let a = AgentAction::ScheduleCallback {
            delay_seconds: 60,
            note: None,
        };
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["type"], "schedule_callback");
        let back: AgentAction = serde_json::from_value(json).unwrap();
        assert_eq!(back, a);
    }
}
