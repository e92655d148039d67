//! Twilio ConversationRelay's WebSocket messages: JSON text frames, Twilio's in
//! ([`Inbound`]: `setup`, `prompt`, `dtmf`, `interrupt`, `error`) and ours out ([`Outbound`]:
//! `text`, `play`, `sendDigits`, `language`, `end`).
//!
//! Field names are Twilio's (camelCase). Twilio adds fields over time, so unknown fields of a
//! known message are ignored; an unknown `type` or a missing required field is an error. Two
//! of Twilio's own examples disagree on the type of `durationUntilInterruptMs` (a number in
//! one, a string in the other), so both are read.
//!
//! ```
//! use voice_agent_twilio::relay::{Inbound, Outbound, parse_inbound};
//!
//! let msg = parse_inbound(r#"{"type":"prompt","voicePrompt":"Hi there","lang":"en-US","last":true}"#)
//!     .unwrap();
//! assert!(matches!(msg, Inbound::Prompt(p) if p.voice_prompt == "Hi there" && p.last));
//! let out = Outbound::text("Hello", true).to_json();
//! assert_eq!(out, r#"{"type":"text","token":"Hello","last":true}"#);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Largest frame read from Twilio; larger ones are refused unread (a prompt is one utterance).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// A frame that is not a ConversationRelay message we know.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayParseError {
    /// Over [`MAX_FRAME_BYTES`]: dropped without parsing.
    #[error("the frame is {0} bytes, over the limit of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    /// Not JSON, an unknown `type`, or a missing or mistyped field.
    #[error("not a ConversationRelay message: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// A message from Twilio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Inbound {
    /// The session started: who is calling, and our `<Parameter>`s.
    Setup(Box<Setup>),
    /// The caller said something (`last: false` for a partial result).
    Prompt(Prompt),
    /// The caller pressed a key (with `dtmfDetection`).
    Dtmf(Dtmf),
    /// The caller spoke over our text-to-speech: what had been spoken until then.
    Interrupt(Interrupt),
    /// Twilio could not use something we sent, or the session failed.
    Error(ErrorMessage),
}

/// The first message of a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Setup {
    /// `VX…`.
    pub session_id: String,
    /// `AC…`.
    #[serde(default)]
    pub account_sid: String,
    /// The call, `CA…`.
    pub call_sid: String,
    /// The parent call of a `<Dial>`ed leg, else empty.
    #[serde(default)]
    pub parent_call_sid: String,
    /// The caller (E.164, `client:…` or `sip:…`).
    #[serde(default)]
    pub from: String,
    /// The called number.
    #[serde(default)]
    pub to: String,
    /// Who forwarded the call, when known.
    #[serde(default)]
    pub forwarded_from: String,
    /// `PSTN`, `SIP`, `CLIENT`.
    #[serde(default)]
    pub call_type: String,
    /// Caller name lookup, when enabled.
    #[serde(default)]
    pub caller_name: String,
    /// `inbound` or `outbound-api`.
    #[serde(default)]
    pub direction: String,
    /// The call's status at setup (Twilio upper-cases it).
    #[serde(default)]
    pub call_status: String,
    /// The `<Parameter name value>`s of the `<ConversationRelay>`.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
}

/// What the caller said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prompt {
    /// The transcription.
    pub voice_prompt: String,
    /// Its language.
    #[serde(default)]
    pub lang: String,
    /// The utterance is complete (false: a partial result, more follows).
    #[serde(default = "yes")]
    pub last: bool,
}

fn yes() -> bool {
    true
}

/// A key press.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dtmf {
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: String,
}

/// The caller cut in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interrupt {
    /// The text spoken up to the interruption (of the reply being spoken).
    #[serde(default)]
    pub utterance_until_interrupt: String,
    /// How long the reply had been spoken, in milliseconds.
    #[serde(default, deserialize_with = "number_or_string")]
    pub duration_until_interrupt_ms: Option<u64>,
}

/// A failure Twilio reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// Twilio's words.
    #[serde(default)]
    pub description: String,
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Float(f64),
        Text(String),
    }
    Ok(match Option::<Either>::deserialize(d)? {
        None => None,
        Some(Either::Number(n)) => Some(n),
        // Saturating: a duration of any size is not worth refusing the message for.
        Some(Either::Float(f)) if f.is_finite() && f >= 0.0 => Some(f as u64),
        Some(Either::Float(_)) => None,
        Some(Either::Text(t)) => t.trim().parse().ok(),
    })
}

/// Reads one frame from Twilio.
pub fn parse_inbound(frame: &str) -> Result<Inbound, RelayParseError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(RelayParseError::TooLarge(frame.len()));
    }
    Ok(serde_json::from_str(frame)?)
}

/// A message to Twilio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Outbound {
    /// A piece of the reply to speak; `last` ends the reply.
    Text(Text),
    /// An audio file to play.
    Play(Play),
    /// Keys to press on the call (an IVR on the other end).
    SendDigits(SendDigits),
    /// Switch the text-to-speech and transcription languages.
    Language(Language),
    /// End the session; Twilio then requests the `<Connect action>` URL with the handoff data.
    End(End),
}

/// `text`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Text {
    /// The piece of text.
    pub token: String,
    /// The reply is complete.
    pub last: bool,
    /// Language of this piece, when not the session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Whether the caller may interrupt this piece (the session's setting otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruptible: Option<bool>,
    /// Whether a later message may cut this piece off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptible: Option<bool>,
}

/// `play`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Play {
    /// The audio's URL.
    pub source: String,
    /// Times to play it (0: until something else happens).
    #[serde(default, rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_count: Option<u32>,
    /// Whether the caller may interrupt it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruptible: Option<bool>,
    /// Whether a later message may cut it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptible: Option<bool>,
}

/// `sendDigits`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendDigits {
    /// `0-9`, `*`, `#`, `w` (a half-second pause).
    pub digits: String,
}

/// `language`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Language {
    /// Text-to-speech language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts_language: Option<String>,
    /// Transcription language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription_language: Option<String>,
}

/// `end`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct End {
    /// Passed to the `<Connect action>` request as `HandoffData` (Twilio wants a string; we
    /// send JSON in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_data: Option<String>,
}

impl Outbound {
    /// A `text` message without per-piece settings.
    pub fn text(token: impl Into<String>, last: bool) -> Self {
        Self::Text(Text {
            token: token.into(),
            last,
            ..Text::default()
        })
    }

    /// An `end` message with handoff data.
    pub fn end(handoff_data: Option<String>) -> Self {
        Self::End(End { handoff_data })
    }

    /// The frame to send.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("relay messages always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilios_documented_messages_parse() {
        let setup = parse_inbound(
            r#"{"type":"setup","sessionId":"VX00000000000000000000000000000000",
            "accountSid":"ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","parentCallSid":"",
            "callSid":"CA00000000000000000000000000000000","from":"+18005550100",
            "to":"+18005550101","forwardedFrom":"+18005550102","callType":"PSTN",
            "callerName":"","direction":"inbound","callStatus":"RINGING",
            "customParameters":{"callReference":"bar"}}"#,
        )
        .unwrap();
        let Inbound::Setup(s) = setup else {
            panic!("not a setup: {setup:?}")
        };
        assert_eq!(s.call_sid, "CA00000000000000000000000000000000");
        assert_eq!(s.direction, "inbound");
        assert_eq!(s.custom_parameters["callReference"], "bar");

        let p = parse_inbound(
            r#"{"type":"prompt","voicePrompt":"Hi! Can you tell me about life?","lang":"en-US","last":true}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            Inbound::Prompt(Prompt {
                voice_prompt: "Hi! Can you tell me about life?".into(),
                lang: "en-US".into(),
                last: true
            })
        );
        assert_eq!(
            parse_inbound(r#"{"type":"dtmf","digit":"1"}"#).unwrap(),
            Inbound::Dtmf(Dtmf { digit: "1".into() })
        );
        // Both of Twilio's spellings of the duration.
        for frame in [
            r#"{"type":"interrupt","utteranceUntilInterrupt":"Life is a complex set of","durationUntilInterruptMs":"460"}"#,
            r#"{"type":"interrupt","utteranceUntilInterrupt":"Life is a complex set of","durationUntilInterruptMs":460}"#,
        ] {
            assert_eq!(
                parse_inbound(frame).unwrap(),
                Inbound::Interrupt(Interrupt {
                    utterance_until_interrupt: "Life is a complex set of".into(),
                    duration_until_interrupt_ms: Some(460),
                })
            );
        }
        let e = parse_inbound(
            r#"{"type":"error","description":"Invalid message received: { \"foo\" : \"bar\" }"}"#,
        )
        .unwrap();
        assert!(matches!(e, Inbound::Error(m) if m.description.starts_with("Invalid message")));
    }

    #[test]
    fn unknown_types_missing_fields_and_huge_frames_are_refused() {
        assert!(parse_inbound(r#"{"type":"shout"}"#).is_err());
        assert!(parse_inbound(r#"{"type":"prompt"}"#).is_err());
        assert!(parse_inbound(r#"{"type":"setup","sessionId":"VX1"}"#).is_err());
        assert!(parse_inbound(r#"{"voicePrompt":"hi"}"#).is_err());
        assert!(parse_inbound("not json").is_err());
        let huge = format!(
            r#"{{"type":"prompt","voicePrompt":"{}"}}"#,
            "a".repeat(MAX_FRAME_BYTES)
        );
        assert!(matches!(
            parse_inbound(&huge),
            Err(RelayParseError::TooLarge(_))
        ));
        // Fields Twilio adds later do not break a known message.
        assert!(parse_inbound(r#"{"type":"dtmf","digit":"5","track":"inbound"}"#).is_ok());
    }

    #[test]
    fn our_messages_have_twilios_shapes() {
        assert_eq!(
            Outbound::text("Hello", false).to_json(),
            r#"{"type":"text","token":"Hello","last":false}"#
        );
        let t = Outbound::Text(Text {
            token: "Hi".into(),
            last: true,
            lang: Some("en-US".into()),
            interruptible: Some(true),
            preemptible: Some(false),
        });
        assert_eq!(
            t.to_json(),
            r#"{"type":"text","token":"Hi","last":true,"lang":"en-US","interruptible":true,"preemptible":false}"#
        );
        assert_eq!(
            Outbound::Play(Play {
                source: "https://x/a.mp3".into(),
                loop_count: Some(2),
                ..Play::default()
            })
            .to_json(),
            r#"{"type":"play","source":"https://x/a.mp3","loop":2}"#
        );
        assert_eq!(
            Outbound::SendDigits(SendDigits {
                digits: "12#".into()
            })
            .to_json(),
            r#"{"type":"sendDigits","digits":"12#"}"#
        );
        assert_eq!(
            Outbound::Language(Language {
                tts_language: Some("es-ES".into()),
                transcription_language: Some("es-ES".into()),
            })
            .to_json(),
            r#"{"type":"language","ttsLanguage":"es-ES","transcriptionLanguage":"es-ES"}"#
        );
        let end = Outbound::end(Some(r#"{"reason":"transfer"}"#.into())).to_json();
        assert_eq!(
            end,
            r#"{"type":"end","handoffData":"{\"reason\":\"transfer\"}"}"#
        );
        assert_eq!(
            serde_json::from_str::<Outbound>(&end).unwrap(),
            Outbound::end(Some(r#"{"reason":"transfer"}"#.into()))
        );
    }
}
