//! The profile's limits around any agent.

use crate::types::{AgentAction, AgentReply, AgentRequest};
use crate::{Agent, AgentError};

/// The agent's next turn within the profile's limits: past `max_turns` the conversation is
/// closed with the profile's closing line (no model call); the call is bounded by
/// `timeout_secs` (on a phone call, at most [`crate::MAX_VOICE_TURN_SECS`]); the reply is cut to
/// `max_reply_chars`.
pub async fn respond(agent: &dyn Agent, request: &AgentRequest) -> Result<AgentReply, AgentError> {
    let profile = &request.profile;
    if request.person_turns() > profile.max_turns as usize {
        return Ok(AgentReply {
            text: profile.closing.clone(),
            actions: vec![AgentAction::EndConversation {
                reason: Some("turn limit reached".to_owned()),
            }],
            ..AgentReply::default()
        });
    }
    let timeout = profile.turn_timeout(request.channel);
    let mut reply = tokio::time::timeout(timeout, agent.reply(request))
        .await
        .map_err(|_| AgentError::Timeout(timeout))??;
    reply.text = truncate_reply(reply.text.trim(), profile.max_reply_chars);
    Ok(reply)
}

/// [`respond`], with the reply's text passed to `on_delta` piece by piece as the agent
/// produces it (the closing line at the turn limit comes in one piece). Pieces stop at
/// `max_reply_chars`, so what was sent is always a prefix of the reply's text; the reply's
/// text is then that prefix with an ellipsis, as [`truncate_reply`] cuts at a word only when
/// it has the whole text.
pub async fn respond_streaming(
    agent: &dyn Agent,
    request: &AgentRequest,
    on_delta: &mut (dyn FnMut(&str) + Send),
) -> Result<AgentReply, AgentError> {
    let profile = &request.profile;
    if request.person_turns() > profile.max_turns as usize {
        on_delta(&profile.closing);
        return Ok(AgentReply {
            text: profile.closing.clone(),
            actions: vec![AgentAction::EndConversation {
                reason: Some("turn limit reached".to_owned()),
            }],
            ..AgentReply::default()
        });
    }
    let max = profile.max_reply_chars;
    let mut sent_chars = 0usize;
    let mut sent = String::new();
    let mut bounded = |piece: &str| {
        if sent_chars >= max {
            return;
        }
        let room = max - sent_chars;
        let piece: String = piece.chars().take(room).collect();
        sent_chars += piece.chars().count();
        sent.push_str(&piece);
        on_delta(&piece);
    };
    let timeout = profile.turn_timeout(request.channel);
    let mut reply = tokio::time::timeout(timeout, agent.reply_streaming(request, &mut bounded))
        .await
        .map_err(|_| AgentError::Timeout(timeout))??;
    if reply.text.chars().count() > max {
        reply.text = sent;
    }
    Ok(reply)
}

/// `text` cut to at most `max_chars` characters, at a word boundary when there is one, with
/// an ellipsis.
pub fn truncate_reply(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let keep: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    let cut = match keep.rfind(char::is_whitespace) {
        Some(i) if i > keep.len() / 2 => keep[..i].trim_end(),
        _ => keep.as_str(),
    };
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScriptedAgent;
    use crate::directory::AgentProfile;
    use crate::types::{AgentChannel, Turn};

    #[test]
    fn long_replies_are_cut_at_a_word() {
        assert_eq!(truncate_reply("short", 10), "short");
        assert_eq!(truncate_reply("one two three four", 12), "one two…");
        assert_eq!(truncate_reply("abcdefghijklmnop", 6), "abcde…");
        assert!(truncate_reply(&"é".repeat(50), 20).chars().count() <= 20);
    }

    #[tokio::test]
    async fn a_streamed_reply_stops_at_the_length_limit_and_matches_what_was_sent() {
        let profile = AgentProfile {
            max_reply_chars: 10,
            ..AgentProfile::default()
        };
        let request = AgentRequest {
            profile,
            channel: AgentChannel::Web,
            history: vec![Turn::person("my name is Grace")],
            contact: Default::default(),
            memory: Default::default(),
            earlier_person_turns: 0,
        };
        let mut sent = String::new();
        let reply = respond_streaming(&ScriptedAgent::default(), &request, &mut |p| {
            sent.push_str(p)
        })
        .await
        .unwrap();
        assert_eq!(sent.chars().count(), 10);
        assert_eq!(reply.text, sent);
    }

    #[tokio::test]
    async fn the_turn_limit_closes_without_asking_the_agent() {
        let profile = AgentProfile {
            max_turns: 1,
            ..AgentProfile::default()
        };
        let request = AgentRequest {
            profile: profile.clone(),
            channel: AgentChannel::Sms,
            history: vec![
                Turn::person("hi"),
                Turn::agent("hello"),
                Turn::person("hi again"),
            ],
            contact: Default::default(),
            memory: Default::default(),
            earlier_person_turns: 0,
        };
        let reply = respond(&ScriptedAgent::default(), &request).await.unwrap();
        assert_eq!(reply.text, profile.closing);
        assert_eq!(reply.actions[0].kind(), "end_conversation");
    }
}
