//! The web app's AI chat: a browser WebSocket onto the live-session engine ([`crate::session`]),
//! channel `web`. Each chat is the durable conversation `conversation-web-<chat id>`, listed
//! with the others; a browser that reconnects with its chat id gets the history back.
//!
//! `GET /api/live/chat?profile=<name>[&chat=<id>]` upgrades to a WebSocket of JSON text frames:
//!
//! | from | `type` | fields | meaning |
//! |---|---|---|---|
//! | server | `ready` | `chat`, `conversation_id`, `profile`, `history`, `open` | the conversation so far; `open`: the agent answers |
//! | client | `prompt` | `text`, `speaking`, `seq` | the person's turn; `speaking`: the client speaks the reply aloud and says when it is done; `seq` (optional, 0 when absent): the client's number for the turn, echoed on its `token` and `reply` frames |
//! | server | `token` | `seq`, `text` | the next piece of the reply, as the model produces it |
//! | server | `reply` | `seq`, `text`, `actions`, `open` | the reply is complete (all its tokens were sent) |
//! | client | `spoken` | | the reply was spoken to the end |
//! | client | `interrupt` | `heard` | the person cut in: the reply stops, and only what `heard` repeats of it (its longest start whose words `heard` gives in order) counts as said |
//! | server | `settled` | `turn_id`, `person`, `agent`, `interrupted` | the turn is durable (in the workflow's history); sent when the signal returns, which may be after the next turn's first tokens: turns settle in the order they were prompted |
//! | server | `error` | `message` | a bad frame, or the turn could not be saved (then the socket closes) |
//!
//! Frames the api sent before it read an `interrupt` or the next `prompt` still arrive after
//! them; `seq` lets the client tell the cut reply's last tokens from the next one's.
//!
//! A turn is settled when its reply is complete and, for a client that speaks it, spoken or
//! interrupted; a new prompt or a closed socket settles the one before as said. A reply still
//! streaming when the socket closes was never complete and is not recorded.

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use voice_agent_agent::{AgentChannel, AgentProfile, AgentReply};
use voice_agent_domain::mask_workflow_id;
use voice_agent_workflows::{ConversationState, WEB_OURS};

use crate::AppState;
use crate::auth::Principal;
use crate::session::{HistoryLine, MAX_PERSON_CHARS, Recorder, Session, Streaming};

/// Largest frame a browser may send.
const MAX_FRAME_BYTES: usize = 16 * 1024;

/// HTTP routes of the chat.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/live/chat", get(upgrade))
        .route("/api/live/profiles", get(profiles))
}

/// An agent profile one can chat with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatProfile {
    /// Its name.
    name: String,
    /// Its opening line, if it has one.
    greeting: Option<String>,
}

/// The profiles stored in MongoDB (seeded from the agents file, edited in Settings), each at
/// its latest version, so a chat started after an edit uses it; `default` when there are none.
async fn chat_profiles(state: &AppState) -> anyhow::Result<Vec<AgentProfile>> {
    let mut all = Vec::new();
    for stored in state.store.list_profiles().await? {
        all.push(voice_agent_activities::profiles::from_stored(&stored)?);
    }
    if all.is_empty() {
        all.push(AgentProfile::default());
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

#[utoipa::path(
    get,
    path = "/api/live/profiles",
    tag = "live",
    responses(
        (status = 200, description = "The agent profiles one can chat with", body = Vec<ChatProfile>),
        (status = 503, description = "The profiles cannot be read now", body = crate::openapi::ErrorBody)
    )
)]
async fn profiles(State(state): State<AppState>) -> Response {
    match chat_profiles(&state).await {
        Ok(all) => Json(
            all.into_iter()
                .map(|p| ChatProfile {
                    name: p.name,
                    greeting: p.greeting,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => {
            warn!(error = %e, "could not read the agent profiles");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent profiles cannot be read now",
            )
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ChatQuery {
    /// The agent profile to chat with.
    profile: String,
    /// The chat to continue (from an earlier `ready`); a new chat when absent.
    chat: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/live/chat",
    tag = "live",
    params(ChatQuery),
    responses(
        (status = 101, description = "A WebSocket of JSON frames (see the crate docs of `chat`): `prompt`, `spoken`, `interrupt` in; `ready`, `token`, `reply`, `settled`, `error` out"),
        (status = 400, description = "Unknown profile, bad chat id, or not a WebSocket handshake", body = crate::openapi::ErrorBody),
        (status = 403, description = "The Origin is not one of the api's hosts", body = crate::openapi::ErrorBody),
        (status = 503, description = "Too many live sessions open", body = crate::openapi::ErrorBody)
    )
)]
async fn upgrade(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Query(q): Query<ChatQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let refuse = error_response;
    if !crate::auth::websocket_origin_allowed(
        &headers,
        principal.as_deref(),
        &state.auth.settings.allowed_hosts,
    ) {
        return refuse(
            StatusCode::FORBIDDEN,
            "the Origin of this WebSocket is not one of the api's hosts",
        );
    }
    let all = match chat_profiles(&state).await {
        Ok(all) => all,
        Err(e) => {
            warn!(error = %e, "could not read the agent profiles");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent profiles cannot be read now",
            );
        }
    };
    let Some(profile) = all.into_iter().find(|p| p.name == q.profile.trim()) else {
        return refuse(StatusCode::BAD_REQUEST, "no agent profile by that name");
    };
    let chat = match q.chat.as_deref().map(str::trim) {
        None | Some("") => uuid::Uuid::new_v4().simple().to_string(),
        Some(id) if valid_chat_id(id) => id.to_owned(),
        Some(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "chat: 8-40 lower-case letters, digits or dashes",
            );
        }
    };
    let Some(permit) = state.live_engine.admit() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many live sessions");
    };
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            run(state, socket, chat, profile).await;
            drop(permit);
        })
}

fn valid_chat_id(id: &str) -> bool {
    (8..=40).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Prompt {
        text: String,
        #[serde(default)]
        speaking: bool,
        #[serde(default)]
        seq: u64,
    },
    Spoken,
    Interrupt {
        #[serde(default)]
        heard: String,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerFrame<'a> {
    Ready {
        chat: &'a str,
        conversation_id: &'a str,
        profile: &'a str,
        history: Vec<HistoryLine>,
        open: bool,
    },
    Token {
        seq: u64,
        text: &'a str,
    },
    Reply {
        seq: u64,
        text: &'a str,
        actions: Vec<&'static str>,
        open: bool,
    },
    Settled {
        turn_id: &'a str,
        person: &'a str,
        agent: &'a str,
        interrupted: bool,
    },
    Error {
        message: &'a str,
    },
}

/// The turn in progress.
enum Pending {
    None,
    Streaming {
        person: String,
        at: String,
        said: String,
        speaking: bool,
        seq: u64,
        stream: Streaming,
    },
    /// Complete, waiting to be spoken or cut off.
    Unsettled {
        person: String,
        at: String,
        said: String,
        reply: AgentReply,
        agent_name: String,
    },
}

async fn send(socket: &mut WebSocket, frame: &ServerFrame<'_>) -> bool {
    let text = serde_json::to_string(frame).expect("frames serialise");
    socket
        .send(Message::Text(Utf8Bytes::from(text)))
        .await
        .is_ok()
}

async fn run(state: AppState, mut socket: WebSocket, chat: String, profile: AgentProfile) {
    let start = ConversationState {
        ours: WEB_OURS.to_owned(),
        theirs: chat.clone(),
        profile_name: Some(profile.name.clone()),
        ..ConversationState::default()
    };
    let mut session = Session::open(&state, start, profile, AgentChannel::Web).await;
    let masked = mask_workflow_id(&session.conversation_id);
    info!(conversation = %masked, "chat opened");
    let ready = ServerFrame::Ready {
        chat: &chat,
        conversation_id: &session.conversation_id,
        profile: &session.profile.name.clone(),
        history: session.history(),
        open: session.open_for_agent(),
    };
    if !send(&mut socket, &ready).await {
        return;
    }
    let closed = state.live_engine.closed();
    let mut recorder = session.recorder();
    let mut pending = Pending::None;
    loop {
        let piece = async {
            match &mut pending {
                Pending::Streaming { stream, .. } => stream.pieces.recv().await,
                _ => std::future::pending::<Option<String>>().await,
            }
        };
        tokio::select! {
            _ = closed.cancelled() => break,
            result = recorder.results.recv() => match result {
                Some(Ok(turn)) => {
                    let frame = ServerFrame::Settled {
                        turn_id: &turn.turn_id,
                        person: &turn.person,
                        agent: &turn.agent,
                        interrupted: turn.interrupted,
                    };
                    if !send(&mut socket, &frame).await {
                        break;
                    }
                }
                Some(Err(e)) => {
                    warn!(error = ?e, "chat: a turn could not be saved");
                    let _ = send(
                        &mut socket,
                        &ServerFrame::Error {
                            message: "the turn could not be saved; reconnect to continue",
                        },
                    )
                    .await;
                    break;
                }
                None => break,
            },
            piece = piece => match piece {
                Some(p) => {
                    let mut seq = 0;
                    if let Pending::Streaming { said, seq: s, .. } = &mut pending {
                        said.push_str(&p);
                        seq = *s;
                    }
                    if !send(&mut socket, &ServerFrame::Token { seq, text: &p }).await {
                        break;
                    }
                }
                None => {
                    // Every piece is out: the reply is complete.
                    let Pending::Streaming { person, at, said, speaking, seq, stream } =
                        std::mem::replace(&mut pending, Pending::None)
                    else {
                        unreachable!("pieces come only while streaming")
                    };
                    let (reply, agent_name) = match stream.done.await {
                        Ok(done) => done,
                        Err(e) => {
                            warn!(error = %e, "chat: the reply task failed");
                            break;
                        }
                    };
                    let ends = reply
                        .actions
                        .iter()
                        .any(|a| !matches!(a, voice_agent_agent::AgentAction::ScheduleCallback { .. }));
                    let frame = ServerFrame::Reply {
                        seq,
                        text: &said,
                        actions: reply.actions.iter().map(|a| a.kind()).collect(),
                        open: session.open_for_agent() && !ends,
                    };
                    if !send(&mut socket, &frame).await {
                        // They saw it stream; it counts as said.
                        recorder.record(session.take_turn(&person, &said, None, &reply, &agent_name, at));
                        break;
                    }
                    pending = Pending::Unsettled { person, at, said, reply, agent_name };
                    if !speaking {
                        settle(&mut session, &recorder, &mut pending, None);
                    }
                }
            },
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let frame = match serde_json::from_str::<ClientFrame>(&text) {
                    Ok(f) => f,
                    Err(e) => {
                        let message = format!("expected a prompt, spoken or interrupt frame: {e}");
                        if !send(&mut socket, &ServerFrame::Error { message: &message }).await {
                            break;
                        }
                        continue;
                    }
                };
                match frame {
                    ClientFrame::Prompt { text, speaking, seq } => {
                        let text = text.trim().to_owned();
                        if text.is_empty() || text.chars().count() > MAX_PERSON_CHARS {
                            let message = format!("a prompt is 1-{MAX_PERSON_CHARS} characters");
                            if !send(&mut socket, &ServerFrame::Error { message: &message }).await {
                                break;
                            }
                            continue;
                        }
                        // A new prompt over a reply: the person cut in without saying what they
                        // heard; a complete one counts as said, a streaming one as cut.
                        if matches!(pending, Pending::Streaming { .. }) {
                            let heard = match &pending {
                                Pending::Streaming { said, .. } => said.clone(),
                                _ => String::new(),
                            };
                            interrupt(&mut session, &recorder, &mut pending, heard);
                        }
                        settle(&mut session, &recorder, &mut pending, None);
                        if !session.open_for_agent() {
                            let message = "the agent has ended this chat or handed it to a person";
                            if !send(&mut socket, &ServerFrame::Error { message }).await {
                                break;
                            }
                            continue;
                        }
                        let stream = session.reply_to(&text);
                        pending = Pending::Streaming {
                            person: text,
                            at: chrono::Utc::now().to_rfc3339(),
                            said: String::new(),
                            speaking,
                            seq,
                            stream,
                        };
                    }
                    ClientFrame::Spoken => settle(&mut session, &recorder, &mut pending, None),
                    ClientFrame::Interrupt { heard } => {
                        interrupt(&mut session, &recorder, &mut pending, heard);
                    }
                }
            }
        }
    }
    // A complete reply the person saw counts as said; one still streaming was never complete.
    settle(&mut session, &recorder, &mut pending, None);
    // The turns still on their way to the workflow are handed over before the session ends.
    recorder.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(result) = recorder.results.recv().await {
            if let Ok(turn) = result {
                let frame = ServerFrame::Settled {
                    turn_id: &turn.turn_id,
                    person: &turn.person,
                    agent: &turn.agent,
                    interrupted: turn.interrupted,
                };
                let _ = send(&mut socket, &frame).await;
            }
        }
    })
    .await;
    let _ = socket.send(Message::Close(None)).await;
    info!(conversation = %masked, "chat closed");
}

/// Stops the reply in progress (streaming or being spoken) and settles it as `heard`.
fn interrupt(session: &mut Session, recorder: &Recorder, pending: &mut Pending, heard: String) {
    match std::mem::replace(pending, Pending::None) {
        Pending::None => {}
        Pending::Streaming {
            person,
            at,
            said,
            stream,
            ..
        } => {
            // The model is stopped; its tokens so far are what could have been heard.
            stream.done.abort();
            *pending = Pending::Unsettled {
                person,
                at,
                said,
                reply: AgentReply::default(),
                agent_name: session.agent_name(),
            };
            settle(session, recorder, pending, Some(heard));
        }
        unsettled @ Pending::Unsettled { .. } => {
            *pending = unsettled;
            settle(session, recorder, pending, Some(heard));
        }
    }
}

/// Settles the complete reply, if there is one: takes it into the context at once and queues
/// it for the workflow; the client hears `settled` once it is durable (or `error`, and the
/// socket closes: it reconnects and sees what was kept).
fn settle(
    session: &mut Session,
    recorder: &Recorder,
    pending: &mut Pending,
    heard: Option<String>,
) {
    let Pending::Unsettled {
        person,
        at,
        said,
        reply,
        agent_name,
    } = std::mem::replace(pending, Pending::None)
    else {
        return;
    };
    recorder.record(session.take_turn(&person, &said, heard.as_deref(), &reply, &agent_name, at));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_ids_are_short_and_plain() {
        assert!(valid_chat_id("0123456789abcdef0123456789abcdef"));
        assert!(valid_chat_id("my-chat-1"));
        assert!(!valid_chat_id("short"));
        assert!(!valid_chat_id("UPPER-case-id"));
        assert!(!valid_chat_id("../../etc/passwd"));
        assert!(!valid_chat_id(&"a".repeat(41)));
    }

    #[test]
    fn client_frames_parse_and_unknown_ones_are_refused() {
        let f: ClientFrame = serde_json::from_str(r#"{"type":"prompt","text":"hi"}"#).unwrap();
        assert!(matches!(
            f,
            ClientFrame::Prompt {
                speaking: false,
                ..
            }
        ));
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"interrupt","heard":"Hello"}"#).unwrap();
        assert!(matches!(f, ClientFrame::Interrupt { heard } if heard == "Hello"));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"shout"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"prompt"}"#).is_err());
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"prompt","text":"hi","seq":7}"#).unwrap();
        assert!(matches!(f, ClientFrame::Prompt { seq: 7, .. }));
        for bad in [r#"-1"#, r#"1.5"#, r#""7""#, r#"18446744073709551616"#] {
            let frame = format!(r#"{{"type":"prompt","text":"hi","seq":{bad}}}"#);
            assert!(
                serde_json::from_str::<ClientFrame>(&frame).is_err(),
                "{bad}"
            );
        }
    }
}
