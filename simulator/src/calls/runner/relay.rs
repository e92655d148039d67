//! `<Connect><ConversationRelay>`: the simulator plays ConversationRelay's part. It opens the
//! application's WebSocket with a signed handshake (the URL as written in the TwiML, no
//! parameters), sends `setup`, speaks the callee's lines as `prompt`s (keys as `dtmf`), and
//! logs every `text` token as heard, with its time. A callee can cut a reply off after some
//! tokens or some time (`interrupt` with what was spoken until then, then its line), hang up in
//! the middle of a reply, press keys or stay silent. Messages it cannot use get Twilio's
//! `error` (64107) and are otherwise ignored; `end` closes the session and the call follows
//! the `<Connect action>` with the handoff data, as Twilio does.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voice_agent_twilio::signature::compute_signature;

use super::{Runner, Stop};
use crate::calls::twiml::Element;
use crate::calls::{CallStatus, EventKind, Line, Method, Source, Speaker};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Simulated seconds the text-to-speech takes per token (for interruptions after a delay).
const RELAY_TOKEN_SECONDS: f64 = 0.25;
/// How long a callee with nothing more to say waits for the application's `end`.
const END_WAIT: Duration = Duration::from_secs(3);
/// Twilio's error code for a message it could not validate.
const INVALID_MESSAGE: u32 = 64107;

/// How a reply ended, as the callee lived it.
enum Reply {
    /// Heard to the end (`last: true`).
    Complete,
    /// The callee cut in; the line to say next.
    CutIn(String),
    /// The application sent `end`.
    End(Option<String>),
    /// The callee hung up mid-reply, or the socket closed.
    Gone,
}

/// A reply's tokens as they came.
#[derive(Default)]
struct Heard {
    tokens: Vec<String>,
    first_at: Option<Instant>,
}

impl Heard {
    fn text(&self, count: usize) -> String {
        self.tokens[..count.min(self.tokens.len())]
            .concat()
            .trim()
            .to_owned()
    }
}

impl Runner {
    /// Plays `<Connect>`; `Some` when its `action` continues the call.
    pub(super) async fn connect(&mut self, verb: &Element) -> Result<Option<Source>, Stop> {
        let Some(relay) = verb.elements().find(|e| e.name == "ConversationRelay") else {
            tracing::warn!(sid = %self.plan.sid, "<Connect> without <ConversationRelay> not simulated; skipped");
            return Ok(None);
        };
        let Some(url) = relay.attr("url").map(str::to_owned) else {
            return Err(Stop::AppError(
                12200,
                "Schema validation warning: <ConversationRelay> needs a url".to_owned(),
            ));
        };
        let started = Instant::now();
        let session_id = format!("VX{}", uuid::Uuid::new_v4().simple());
        let (handoff, status) = match self.relay_session(relay, &url, &session_id).await {
            Ok(handoff) => (handoff, "ended"),
            Err(Stop::AppError(code, message)) => {
                // The session failed; Twilio reports it to the action URL rather than hanging up.
                let mut detail = Map::new();
                detail.insert("error_code".into(), json!(code));
                self.log(EventKind::Error, Speaker::System, message, detail);
                (None, "failed")
            }
            Err(other) => return Err(other),
        };
        let Some(action) = verb.attr("action") else {
            return Ok(None);
        };
        let method = Method::parse(verb.attr("method")).unwrap_or(Method::Post);
        let mut extra = vec![
            ("SessionId".to_owned(), session_id),
            ("SessionStatus".to_owned(), status.to_owned()),
            (
                "SessionDuration".to_owned(),
                started.elapsed().as_secs().to_string(),
            ),
        ];
        if let Some(data) = handoff {
            extra.push(("HandoffData".to_owned(), data));
        }
        Ok(self.target(Some(action), method, extra))
    }

    /// The session itself; `Ok` with the handoff data of the application's `end`.
    async fn relay_session(
        &mut self,
        relay: &Element,
        url: &str,
        session_id: &str,
    ) -> Result<Option<String>, Stop> {
        let key = if self.plan.forge {
            format!("{}-forged", self.state.auth_token.expose())
        } else {
            self.state.auth_token.expose().to_owned()
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| Stop::AppError(64102, format!("ConversationRelay URL unusable: {e}")))?;
        let signature = compute_signature(&key, url, &[]);
        request.headers_mut().insert(
            "X-Twilio-Signature",
            signature
                .parse()
                .map_err(|_| Stop::AppError(64102, "bad signature header".to_owned()))?,
        );
        let connected = self
            .guarded(tokio_tungstenite::connect_async(request))
            .await?;
        let mut socket = match connected {
            Ok((socket, _)) => socket,
            Err(e) => {
                return Err(Stop::AppError(
                    64102,
                    format!("ConversationRelay WebSocket handshake failed: {e}"),
                ));
            }
        };
        let mut detail = Map::new();
        detail.insert("url".into(), json!(url));
        self.log(EventKind::Connect, Speaker::System, "", detail);

        let custom: Map<String, Value> = relay
            .elements()
            .filter(|p| p.name == "Parameter")
            .filter_map(|p| Some((p.attr("name")?.to_owned(), json!(p.attr("value")?))))
            .collect();
        let setup = json!({
            "type": "setup",
            "sessionId": session_id,
            "accountSid": self.state.account_sid,
            "parentCallSid": "",
            "callSid": self.plan.sid,
            "from": self.plan.from,
            "to": self.plan.to,
            "forwardedFrom": "",
            "callType": "PSTN",
            "callerName": "",
            "direction": self.plan.direction.as_str(),
            "callStatus": "IN-PROGRESS",
            "customParameters": custom,
        });
        self.relay_send(&mut socket, &setup).await?;
        if let Some(greeting) = relay.attr("welcomeGreeting").filter(|g| !g.is_empty()) {
            let mut detail = Map::new();
            detail.insert("relay".into(), json!(true));
            self.log(EventKind::Say, Speaker::Agent, greeting, detail);
        }
        let lang = relay.attr("language").unwrap_or("en-US").to_owned();
        let dtmf = relay.attr("dtmfDetection") == Some("true");

        let machine = self.plan.party.behaviour == crate::calls::Behaviour::Machine;
        let mut said_next: Option<String> = None;
        loop {
            let line = match said_next.take() {
                Some(cut_in) => Some(Line::Text(cut_in)),
                None if machine => None,
                None => self.script.pop_front(),
            };
            let Some(line) = line else {
                // Nothing more to say: wait a while for an `end` (the application may first make
                // the turn durable), else hang up.
                let wait = self.state.call_think.max(END_WAIT);
                match self.relay_listen(&mut socket, wait).await? {
                    Some(handoff) => return Ok(handoff),
                    None => return self.relay_hang_up(&mut socket).await,
                }
            };
            let think = self
                .plan
                .party
                .think_ms
                .map_or(self.state.call_think, Duration::from_millis);
            self.wait(think).await?;
            self.turns += 1;
            match line {
                Line::Silence { .. } => {
                    self.log(EventKind::Silence, Speaker::Callee, "", Map::new());
                    continue;
                }
                Line::HangupMidReply { .. } => return self.relay_hang_up(&mut socket).await,
                Line::Digits { digits } => {
                    self.log(EventKind::Digits, Speaker::Callee, &digits, Map::new());
                    if !dtmf {
                        continue;
                    }
                    for digit in digits.chars() {
                        let msg = json!({"type": "dtmf", "digit": digit.to_string()});
                        self.relay_send(&mut socket, &msg).await?;
                    }
                }
                Line::Text(speech)
                | Line::Speech { speech, .. }
                | Line::InterruptAfterTokens { speech, .. }
                | Line::InterruptAfterMs { speech, .. } => {
                    self.log(EventKind::Speech, Speaker::Callee, &speech, Map::new());
                    let msg = json!({"type": "prompt", "voicePrompt": speech, "lang": lang, "last": true});
                    self.relay_send(&mut socket, &msg).await?;
                }
            }
            // The next line decides how the reply is lived: to its end, cut off, or hung up on.
            let next = self.script.front().cloned();
            match self.relay_reply(&mut socket, next.as_ref()).await? {
                Reply::Complete => {}
                Reply::CutIn(line) => {
                    self.script.pop_front();
                    said_next = Some(line);
                }
                Reply::End(handoff) => return Ok(handoff),
                Reply::Gone => {
                    if matches!(next, Some(Line::HangupMidReply { .. })) {
                        self.script.pop_front();
                    }
                    return self.relay_hang_up(&mut socket).await;
                }
            }
        }
    }

    /// The callee hangs up: the socket closes and so does the call.
    async fn relay_hang_up<T>(&mut self, socket: &mut Socket) -> Result<T, Stop> {
        self.log(EventKind::Hangup, Speaker::Callee, "", Map::new());
        let _ = socket.close(None).await;
        Err(Stop::End(CallStatus::Completed, None))
    }

    async fn relay_send(&mut self, socket: &mut Socket, message: &Value) -> Result<(), Stop> {
        let text = message.to_string();
        match self
            .guarded(socket.send(Message::Text(text.into())))
            .await?
        {
            Ok(()) => Ok(()),
            Err(e) => Err(Stop::AppError(
                64101,
                format!("ConversationRelay WebSocket closed: {e}"),
            )),
        }
    }

    /// The next message of the application, checked as Twilio checks it; `None` when the
    /// socket closed. Invalid messages are answered with `error` and skipped.
    async fn relay_next(&mut self, socket: &mut Socket) -> Result<Option<Value>, Stop> {
        loop {
            let frame = self.guarded(socket.next()).await?;
            let text = match frame {
                Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                Some(Ok(Message::Close(_)) | Err(_)) | None => return Ok(None),
                Some(Ok(_)) => continue,
            };
            match validate(&text) {
                Ok(message) => return Ok(Some(message)),
                Err(reason) => {
                    let mut detail = Map::new();
                    detail.insert("error_code".into(), json!(INVALID_MESSAGE));
                    self.log(
                        EventKind::Error,
                        Speaker::System,
                        format!("Invalid message received: {reason}"),
                        detail,
                    );
                    let error = json!({
                        "type": "error",
                        "description": format!("Invalid message received: {text}"),
                    });
                    self.relay_send(socket, &error).await?;
                }
            }
        }
    }

    /// Plays the application's other messages; `Some` with the handoff data on `end`.
    fn relay_other(&mut self, message: &Value) -> Option<Option<String>> {
        let kind = message["type"].as_str().unwrap_or_default();
        match kind {
            "play" => {
                let source = message["source"].as_str().unwrap_or_default();
                self.log(EventKind::Play, Speaker::Agent, source, Map::new());
            }
            "sendDigits" => {
                let digits = message["digits"].as_str().unwrap_or_default();
                self.log(EventKind::Digits, Speaker::Agent, digits, Map::new());
            }
            "language" => {
                let mut detail = Map::new();
                for name in ["ttsLanguage", "transcriptionLanguage"] {
                    if let Some(v) = message[name].as_str() {
                        detail.insert(name.into(), json!(v));
                    }
                }
                self.log(EventKind::Language, Speaker::Agent, "", detail);
            }
            "end" => {
                let handoff = message["handoffData"].as_str().map(str::to_owned);
                self.log(
                    EventKind::End,
                    Speaker::Agent,
                    handoff.clone().unwrap_or_default(),
                    Map::new(),
                );
                return Some(handoff);
            }
            _ => {}
        }
        None
    }

    /// Waits up to `wait` for an `end` (other messages are played); `Some` with its handoff.
    async fn relay_listen(
        &mut self,
        socket: &mut Socket,
        wait: Duration,
    ) -> Result<Option<Option<String>>, Stop> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.relay_next(socket)).await;
            match next {
                Err(_) | Ok(Ok(None)) => return Ok(None),
                Ok(Err(stop)) => return Err(stop),
                Ok(Ok(Some(message))) => {
                    if message["type"] == "text" {
                        // Stray tokens after a reply: heard like any other.
                        let token = message["token"].as_str().unwrap_or_default().to_owned();
                        self.log(EventKind::Token, Speaker::Agent, token, Map::new());
                    } else if let Some(handoff) = self.relay_other(&message) {
                        return Ok(Some(handoff));
                    }
                }
            }
        }
    }

    /// Hears one reply, token by token, until its `last` (or the callee cuts in, hangs up,
    /// or the application ends the session).
    async fn relay_reply(
        &mut self,
        socket: &mut Socket,
        next: Option<&Line>,
    ) -> Result<Reply, Stop> {
        let mut heard = Heard::default();
        let token_time = self.state.call_second.mul_f64(RELAY_TOKEN_SECONDS);
        loop {
            // A cut-in after a delay happens while the reply is spoken, tokens or not.
            let cut_at = match next {
                Some(Line::InterruptAfterMs {
                    interrupt_after_ms, ..
                }) => heard
                    .first_at
                    .map(|t| t + Duration::from_millis(*interrupt_after_ms)),
                _ => None,
            };
            let message = match cut_at {
                Some(at) => {
                    match tokio::time::timeout_at(at.into(), self.relay_next(socket)).await {
                        Ok(m) => m?,
                        Err(_) => {
                            let spoken = spoken_by(heard.first_at, at, token_time);
                            return self.relay_cut_in(socket, &heard, spoken, next, false).await;
                        }
                    }
                }
                None => self.relay_next(socket).await?,
            };
            let Some(message) = message else {
                return Ok(Reply::Gone);
            };
            if message["type"] != "text" {
                if let Some(handoff) = self.relay_other(&message) {
                    self.log_heard(&heard, heard.tokens.len(), false);
                    return Ok(Reply::End(handoff));
                }
                continue;
            }
            let token = message["token"].as_str().unwrap_or_default().to_owned();
            let last = message["last"].as_bool().unwrap_or(false);
            if !token.is_empty() {
                heard.first_at.get_or_insert_with(Instant::now);
                self.log(EventKind::Token, Speaker::Agent, &token, Map::new());
                heard.tokens.push(token);
            }
            match next {
                Some(Line::InterruptAfterTokens {
                    interrupt_after_tokens,
                    ..
                }) if heard.tokens.len() >= *interrupt_after_tokens => {
                    return self
                        .relay_cut_in(socket, &heard, *interrupt_after_tokens, next, last)
                        .await;
                }
                Some(Line::HangupMidReply {
                    hangup_after_tokens,
                }) if heard.tokens.len() >= *hangup_after_tokens => {
                    self.log_heard(&heard, *hangup_after_tokens, true);
                    return Ok(Reply::Gone);
                }
                _ => {}
            }
            if last {
                match next {
                    // The reply's speech goes on after its last token arrived.
                    Some(Line::InterruptAfterMs {
                        interrupt_after_ms, ..
                    }) => {
                        let start = heard.first_at.unwrap_or_else(Instant::now);
                        let at = start + Duration::from_millis(*interrupt_after_ms);
                        let spoken = spoken_by(Some(start), at, token_time);
                        if spoken < heard.tokens.len() {
                            self.wait(at.saturating_duration_since(Instant::now()))
                                .await?;
                            return self.relay_cut_in(socket, &heard, spoken, next, true).await;
                        }
                        self.log_heard(&heard, heard.tokens.len(), false);
                        return Ok(Reply::Complete);
                    }
                    Some(Line::InterruptAfterTokens { .. } | Line::HangupMidReply { .. }) => {
                        // Fewer tokens than the callee waited for: heard whole.
                        self.log_heard(&heard, heard.tokens.len(), false);
                        // The scripted cut-in has nothing to cut: it is said as a plain line.
                        return Ok(Reply::Complete);
                    }
                    _ => {
                        self.log_heard(&heard, heard.tokens.len(), false);
                        return Ok(Reply::Complete);
                    }
                }
            }
        }
    }

    /// The callee speaks over the reply after `spoken` tokens: `interrupt`, then the line.
    async fn relay_cut_in(
        &mut self,
        socket: &mut Socket,
        heard: &Heard,
        spoken: usize,
        next: Option<&Line>,
        finished: bool,
    ) -> Result<Reply, Stop> {
        let utterance = heard.text(spoken);
        let duration_ms = heard.first_at.map_or(0, |t| {
            u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
        });
        self.log(
            EventKind::Interrupt,
            Speaker::Callee,
            &utterance,
            Map::new(),
        );
        self.log_heard(heard, spoken, true);
        let msg = json!({
            "type": "interrupt",
            "utteranceUntilInterrupt": utterance,
            "durationUntilInterruptMs": duration_ms,
        });
        self.relay_send(socket, &msg).await?;
        // What the application had sent of the cut reply is never spoken: dropped up to the
        // reply's `last` (sent on its own once the application stopped the reply).
        let mut dropped = finished;
        while !dropped {
            let Some(message) = self.relay_next(socket).await? else {
                return Ok(Reply::Gone);
            };
            if message["type"] == "text" {
                dropped = message["last"] == json!(true);
            } else if let Some(handoff) = self.relay_other(&message) {
                return Ok(Reply::End(handoff));
            }
        }
        let line = match next {
            Some(
                Line::InterruptAfterTokens { speech, .. } | Line::InterruptAfterMs { speech, .. },
            ) => speech.clone(),
            _ => String::new(),
        };
        Ok(Reply::CutIn(line))
    }

    /// The reply as heard, as one `say` event (what the callee heard of it).
    fn log_heard(&self, heard: &Heard, count: usize, interrupted: bool) {
        let text = heard.text(count);
        if text.is_empty() {
            return;
        }
        let mut detail = Map::new();
        detail.insert("relay".into(), json!(true));
        if interrupted {
            detail.insert("interrupted".into(), json!(true));
        }
        self.log(EventKind::Say, Speaker::Agent, text, detail);
    }
}

/// Tokens whose speech had started by `at`, at `per_token` each from `first`.
fn spoken_by(first: Option<Instant>, at: Instant, per_token: Duration) -> usize {
    let Some(first) = first else { return 0 };
    let elapsed = at.saturating_duration_since(first);
    if per_token.is_zero() {
        return usize::MAX;
    }
    usize::try_from(elapsed.as_nanos() / per_token.as_nanos()).unwrap_or(usize::MAX) + 1
}

/// Checks a message from the application as ConversationRelay does: a JSON object with a
/// known `type` and its required fields of the right types.
fn validate(text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(kind) = value.get("type").and_then(Value::as_str) else {
        return Err("no type".to_owned());
    };
    let string = |name: &str| value.get(name).is_some_and(Value::is_string);
    let optional = |name: &str, check: fn(&Value) -> bool| value.get(name).is_none_or(check);
    let ok = match kind {
        "text" => {
            string("token")
                && value.get("last").is_some_and(Value::is_boolean)
                && optional("lang", Value::is_string)
                && optional("interruptible", Value::is_boolean)
                && optional("preemptible", Value::is_boolean)
        }
        "play" => string("source") && optional("loop", Value::is_u64),
        "sendDigits" => string("digits"),
        "language" => {
            optional("ttsLanguage", Value::is_string)
                && optional("transcriptionLanguage", Value::is_string)
        }
        "end" => optional("handoffData", Value::is_string),
        other => return Err(format!("unknown type {other:?}")),
    };
    if ok {
        Ok(value)
    } else {
        Err(format!("{kind}: missing or mistyped fields"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_checked_like_twilio_checks_them() {
        assert!(validate(r#"{"type":"text","token":"Hi","last":false}"#).is_ok());
        assert!(validate(r#"{"type":"text","token":"Hi"}"#).is_err());
        assert!(validate(r#"{"type":"text","token":1,"last":true}"#).is_err());
        assert!(validate(r#"{"type":"end","handoffData":"{\"a\":1}"}"#).is_ok());
        assert!(validate(r#"{"type":"end","handoffData":{"a":1}}"#).is_err());
        assert!(validate(r#"{"type":"shout"}"#).is_err());
        assert!(validate("nope").is_err());
        assert!(validate(r#"{"type":"sendDigits","digits":"12"}"#).is_ok());
    }

    #[test]
    fn speech_after_a_delay_reaches_the_tokens_started_by_then() {
        let t0 = Instant::now();
        let per = Duration::from_millis(100);
        assert_eq!(spoken_by(Some(t0), t0, per), 1);
        assert_eq!(spoken_by(Some(t0), t0 + Duration::from_millis(250), per), 3);
        assert_eq!(spoken_by(None, t0, per), 0);
    }
}
