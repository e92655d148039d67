//! Agent profiles and which numbers they answer, from the agents file (`AGENTS_FILE`).
//!
//! ```toml
//! [profiles.support]
//! instructions = "You are the friendly assistant of Acme Dental. Be brief."
//! greeting = "Hi, this is Acme Dental. How can I help?"
//! facts = ["We are open 9 to 5, Monday to Friday."]
//! transfer_number = "+15005550010"
//! rules = "support-rules.toml"   # scripted agent only; relative to this file
//!
//! [numbers]
//! "+15005550006" = "support"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use voice_agent_domain::PhoneNumber;

use crate::types::AgentChannel;

/// An agents file could not be used. The message names the file and the entry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The file could not be read.
    #[error("cannot read the agents file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("the agents file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An entry is inconsistent.
    #[error("the agents file {path} is invalid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Persona, instructions, facts and limits of one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentProfile {
    /// The profile's name (its key in the file).
    pub name: String,
    /// System prompt: who the agent is and how it behaves.
    pub instructions: String,
    /// First words on an answered call, or the opening message.
    pub greeting: Option<String>,
    /// BCP 47 language (`<Say language>`, `<Gather language>`).
    pub language: String,
    /// `<Say voice>` (for example `Polly.Joanna`); Twilio's default when unset.
    pub voice: Option<String>,
    /// Facts the agent may use; nothing else is to be claimed.
    pub facts: Vec<String>,
    /// Person turns after which the agent closes the conversation with [`Self::closing`].
    pub max_turns: u32,
    /// Longest reply in characters; longer replies are cut at a word boundary.
    pub max_reply_chars: usize,
    /// Longest wait for one reply, in seconds, retries included.
    pub timeout_secs: u64,
    /// Sent when the agent fails or times out: never silence, never an error.
    pub fallback_reply: String,
    /// Said when [`Self::max_turns`] is reached.
    pub closing: String,
    /// Where a transfer to a human dials (voice).
    pub transfer_number: Option<String>,
    /// Said before a transfer on a call, or sent when a messaging conversation is flagged.
    pub transfer_message: String,
    /// Re-prompt after silence on a call.
    pub reprompt: String,
    /// Silences in a row after which a call ends politely.
    pub max_silences: u32,
    /// Sent (or said) when a scheduled callback comes due.
    pub callback_message: String,
    /// Idle time after which a conversation is summarised, in seconds.
    pub summary_after_idle_secs: u64,
    /// Continue-as-new after this many turns in one run (keeps history small).
    pub turns_per_run: u32,
    /// Silence, in seconds, after which a conversation's run completes; the next message
    /// starts a new run, which keeps the memory, a hand-over and the seen message ids.
    pub idle_close_secs: u64,
    /// Scripted rules file for this profile; the built-in rules when unset.
    pub rules: Option<PathBuf>,
    /// The scripted rules themselves (a rules file's text), for profiles kept in the store:
    /// editable without access to the worker's files. Takes precedence over [`Self::rules`].
    pub rules_toml: Option<String>,
    /// The stored version this profile is (see `agent_profiles`); `None` for a profile read
    /// straight from the agents file or the default profile.
    pub version: Option<u32>,
    /// How calls speak: turn by turn with `<Gather>` and `<Say>`, or streamed through Twilio
    /// ConversationRelay.
    pub voice_mode: VoiceMode,
    /// ConversationRelay's settings, for [`VoiceMode::Relay`].
    pub relay: RelaySettings,
}

/// How a profile's calls speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoiceMode {
    /// One complete reply per turn: `<Gather>` speech or keys in, `<Say>` out.
    #[default]
    Gather,
    /// Twilio ConversationRelay: the reply streams token by token over a WebSocket, and the
    /// caller can cut it off.
    Relay,
}

/// What `<ConversationRelay>` is told (see `docs/voice.md`); unset values keep Twilio's
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySettings {
    /// `ttsProvider`: `ElevenLabs`, `Google` or `Amazon`.
    pub tts_provider: Option<String>,
    /// `transcriptionProvider`: `Deepgram` or `Google`.
    pub transcription_provider: Option<String>,
    /// `speechModel` of the transcription provider.
    pub speech_model: Option<String>,
    /// `interruptible`: what may cut the agent off (`none`, `dtmf`, `speech`, `any`).
    pub interruptible: String,
    /// `welcomeGreetingInterruptible`, likewise for the greeting.
    pub welcome_greeting_interruptible: String,
    /// `dtmfDetection`: key presses reach the agent (as `(pressed 1)`).
    pub dtmf_detection: bool,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            tts_provider: None,
            transcription_provider: None,
            speech_model: None,
            interruptible: "any".to_owned(),
            welcome_greeting_interruptible: "any".to_owned(),
            dtmf_detection: true,
        }
    }
}

/// The values `interruptible` and `welcomeGreetingInterruptible` take.
pub const RELAY_INTERRUPTIBLE: [&str; 4] = ["none", "dtmf", "speech", "any"];

impl Default for AgentProfile {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            instructions: "You are a helpful, polite assistant. Keep replies short.".to_owned(),
            greeting: None,
            language: "en-US".to_owned(),
            voice: None,
            facts: Vec::new(),
            max_turns: 30,
            max_reply_chars: 600,
            timeout_secs: 20,
            fallback_reply:
                "Sorry, I can't answer right now. Someone from our team will get back to you."
                    .to_owned(),
            closing: "Thank you for your time. Goodbye!".to_owned(),
            transfer_number: None,
            transfer_message: "Let me connect you with a member of our team.".to_owned(),
            reprompt: "Sorry, I didn't catch that. Could you say it again?".to_owned(),
            max_silences: 2,
            callback_message: "Hi, following up as promised. Is now a better time?".to_owned(),
            summary_after_idle_secs: 600,
            turns_per_run: 100,
            idle_close_secs: 24 * 3600,
            rules: None,
            rules_toml: None,
            version: None,
            voice_mode: VoiceMode::Gather,
            relay: RelaySettings::default(),
        }
    }
}

/// Longest the agent may take for one turn on a call, in seconds, whatever the profile's
/// `timeout_secs` says: Twilio waits 15 s for the answer to a voice webhook, and the retry,
/// the turn's other steps and the round trip through Temporal must fit in the rest.
pub const MAX_VOICE_TURN_SECS: u64 = 8;

impl AgentProfile {
    /// [`Self::timeout_secs`] as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// The time one turn may take on `channel`: [`Self::timeout`], capped at
    /// [`MAX_VOICE_TURN_SECS`] on a call.
    pub fn turn_timeout(&self, channel: AgentChannel) -> Duration {
        match channel {
            AgentChannel::Voice => self.timeout().min(Duration::from_secs(MAX_VOICE_TURN_SECS)),
            _ => self.timeout(),
        }
    }
}

/// An OpenAI-compatible Chat Completions endpoint.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// Base URL up to and including the version, e.g. `https://api.openai.com/v1`; requests go
    /// to `<base>/chat/completions`.
    pub base_url: url::Url,
    /// Bearer key; `None` for local servers that need none.
    pub api_key: Option<SecretString>,
    /// Model name.
    pub model: String,
    /// Ask for a streamed (server-sent events) answer.
    pub stream: bool,
    /// Retries after 429, 5xx, timeouts and connection failures.
    pub max_retries: u32,
    /// First backoff; doubled per retry, jittered.
    pub initial_backoff: Duration,
    /// Sampling temperature, when the server should not use its default.
    pub temperature: Option<f32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    profiles: BTreeMap<String, AgentProfile>,
    #[serde(default)]
    numbers: BTreeMap<String, String>,
}

/// Profiles by name, and which profile answers which of our numbers.
#[derive(Debug, Clone, Default)]
pub struct AgentDirectory {
    profiles: BTreeMap<String, AgentProfile>,
    numbers: BTreeMap<String, String>,
}

impl AgentDirectory {
    /// A directory that answers no number.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Reads an agents file.
    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DirectoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses an agents file's text; `path` names it in errors and anchors relative `rules`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, DirectoryError> {
        let shape: FileShape = toml::from_str(text).map_err(|e| DirectoryError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| DirectoryError::Invalid {
            path: path.to_owned(),
            message,
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut profiles = BTreeMap::new();
        for (name, mut profile) in shape.profiles {
            profile.name.clone_from(&name);
            if profile.max_reply_chars < 20 {
                return Err(invalid(format!(
                    "profiles.{name}.max_reply_chars must be at least 20"
                )));
            }
            if profile.fallback_reply.trim().is_empty() {
                return Err(invalid(format!(
                    "profiles.{name}.fallback_reply must not be empty: it is what people get when the model fails"
                )));
            }
            if let Some(number) = &profile.transfer_number {
                let e164 = PhoneNumber::parse_e164(number)
                    .map_err(|e| invalid(format!("profiles.{name}.transfer_number: {e}")))?;
                profile.transfer_number = Some(e164.as_str().to_owned());
            }
            if let Some(rules) = &profile.rules
                && rules.is_relative()
            {
                profile.rules = Some(base.join(rules));
            }
            profiles.insert(name, profile);
        }
        let mut numbers = BTreeMap::new();
        for (number, profile) in shape.numbers {
            let e164 = PhoneNumber::parse_e164(number.trim_start_matches("whatsapp:"))
                .map_err(|e| invalid(format!("numbers.\"{number}\": {e}")))?;
            if !profiles.contains_key(&profile) {
                return Err(invalid(format!(
                    "numbers.\"{number}\" names the profile \"{profile}\", which is not defined under [profiles]"
                )));
            }
            numbers.insert(e164.as_str().to_owned(), profile);
        }
        Ok(Self { profiles, numbers })
    }

    /// The profile answering our number (E.164, with or without `whatsapp:`).
    pub fn for_number(&self, number: &str) -> Option<&AgentProfile> {
        let key = number.trim_start_matches("whatsapp:");
        self.numbers.get(key).and_then(|p| self.profiles.get(p))
    }

    /// A profile by name.
    pub fn profile(&self, name: &str) -> Option<&AgentProfile> {
        self.profiles.get(name)
    }

    /// Every profile.
    pub fn profiles(&self) -> impl Iterator<Item = &AgentProfile> {
        self.profiles.values()
    }

    /// How many numbers have an agent.
    pub fn number_count(&self) -> usize {
        self.numbers.len()
    }

    /// Our numbers (E.164) answered by the profile `name`.
    pub fn numbers_of(&self, name: &str) -> Vec<String> {
        self.numbers
            .iter()
            .filter(|(_, p)| *p == name)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_turn_is_capped_to_fit_twilios_webhook_wait() {
        let slow = AgentProfile {
            timeout_secs: 30,
            ..AgentProfile::default()
        };
        let cap = Duration::from_secs(MAX_VOICE_TURN_SECS);
        assert_eq!(slow.turn_timeout(AgentChannel::Voice), cap);
        assert_eq!(
            slow.turn_timeout(AgentChannel::Sms),
            Duration::from_secs(30)
        );
        let quick = AgentProfile {
            timeout_secs: 3,
            ..AgentProfile::default()
        };
        assert_eq!(
            quick.turn_timeout(AgentChannel::Voice),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn numbers_map_to_profiles_with_defaults_filled_in() {
        let dir = AgentDirectory::parse(
            r#"
            [profiles.support]
            instructions = "Be brief."
            transfer_number = "+1 415 555 2671"
            rules = "rules.toml"
            [numbers]
            "+15005550006" = "support"
            "#,
            Path::new("/etc/va/agents.toml"),
        )
        .unwrap();
        let p = dir.for_number("whatsapp:+15005550006").unwrap();
        assert_eq!(p.name, "support");
        assert_eq!(p.instructions, "Be brief.");
        assert_eq!(p.max_turns, AgentProfile::default().max_turns);
        assert_eq!(p.transfer_number.as_deref(), Some("+14155552671"));
        assert_eq!(p.rules.as_deref(), Some(Path::new("/etc/va/rules.toml")));
        assert!(dir.for_number("+15005550007").is_none());
    }

    #[test]
    fn bad_files_name_the_problem() {
        let path = Path::new("agents.toml");
        let unknown = AgentDirectory::parse("[numbers]\n\"+15005550006\" = \"nope\"\n", path)
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("\"nope\""), "{unknown}");
        let typo = AgentDirectory::parse("[profiles.a]\ninstructon = \"x\"\n", path)
            .unwrap_err()
            .to_string();
        assert!(typo.contains("instructon"), "{typo}");
        let number = AgentDirectory::parse("[profiles.a]\n[numbers]\n\"12\" = \"a\"\n", path)
            .unwrap_err()
            .to_string();
        assert!(number.contains("\"12\""), "{number}");
    }
}
