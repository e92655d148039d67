//! Twilio's webhooks. Each request's `X-Twilio-Signature` is checked against
//! `PUBLIC_BASE_URL` + the request path and query before anything is read or stored; a forged
//! or unsigned request gets 403 and changes nothing. None of them waits for Temporal: inbound
//! messages go through the durable inbox ([`crate::inbox`]), status callbacks to MongoDB.
//!
//! | route | what Twilio posts |
//! |---|---|
//! | `POST /twilio/sms` | an inbound SMS or WhatsApp message |
//! | `POST /twilio/status?mid=<message id>` | a status callback of an outbound message |

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tracing::{info, warn};
use voice_agent_domain::{
    Channel, MessageStatus, PhoneNumber, conversation_workflow_id, mask_phone,
};
use voice_agent_store::{InboundMessage, ItemCallback};
use voice_agent_twilio::signature;
use voice_agent_twilio::twiml::MessagingResponse;
use voice_agent_workflows::{ConversationMessage, ConversationState};

use crate::AppState;
use crate::inbox::{KIND_MESSAGE, MessageHandoff};

/// Webhook routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/twilio/sms", post(inbound_message))
        .route("/twilio/status", post(status_callback))
}

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Missing or wrong `X-Twilio-Signature`: not from Twilio, or `PUBLIC_BASE_URL` differs from
    /// the URL Twilio calls.
    #[error("invalid Twilio signature")]
    Forbidden,
    /// The request is signed but unusable (missing field, bad number, not form-encoded).
    #[error("bad webhook request: {0}")]
    BadRequest(String),
    /// A dependency (MongoDB, Temporal) failed; Twilio retries on 5xx, and every step is
    /// idempotent, so the retry completes the work.
    #[error("temporarily unavailable: {0:#}")]
    Unavailable(anyhow::Error),
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let (status, outcome) = match &self {
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        metrics::counter!("voice_agent_webhook_rejections_total", "reason" => outcome).increment(1);
        match &self {
            Self::Unavailable(e) => warn!(error = %format!("{e:#}"), "webhook failed"),
            other => warn!(error = %other, "webhook refused"),
        }
        // Twilio shows the body in its debugger; keep internals out of it.
        (status, self.public_message()).into_response()
    }
}

impl WebhookError {
    fn public_message(&self) -> String {
        match self {
            Self::Unavailable(_) => "temporarily unavailable".to_owned(),
            other => other.to_string(),
        }
    }
}

/// The form parameters of a webhook whose signature checked out.
pub(crate) struct SignedForm(Vec<(String, String)>);

impl SignedForm {
    pub(crate) fn verify(
        state: &AppState,
        uri: &OriginalUri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Self, WebhookError> {
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let signature = headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or(WebhookError::Forbidden)?;
        let params: Vec<(String, String)> = if is_form {
            serde_urlencoded::from_bytes(body).map_err(|_| WebhookError::Forbidden)?
        } else {
            Vec::new()
        };
        let mut url = state.settings.common.public_base_url.clone();
        url.set_path(uri.path());
        url.set_query(uri.query());
        let token = state.settings.common.twilio.webhook_token();
        let valid = if is_form {
            signature::validate(token, url.as_str(), &params, signature)
        } else {
            signature::validate_json_body(token, url.as_str(), body, signature)
        };
        if !valid {
            return Err(WebhookError::Forbidden);
        }
        if !is_form {
            return Err(WebhookError::BadRequest(
                "expected an application/x-www-form-urlencoded body".to_owned(),
            ));
        }
        Ok(Self(params))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn require(&self, name: &str) -> Result<&str, WebhookError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| WebhookError::BadRequest(format!("missing {name}")))
    }
}

pub(crate) fn twilio_address(
    raw: &str,
    field: &str,
) -> Result<(Channel, PhoneNumber), WebhookError> {
    let (channel, number) = Channel::from_address(raw);
    let number = PhoneNumber::parse_e164(number)
        .map_err(|_| WebhookError::BadRequest(format!("{field} is not an E.164 number")))?;
    Ok((channel, number))
}

/// Stores an inbound message once (keyed on `MessageSid`), applies its opt-out keyword, and
/// puts it in the inbox for its conversation; answers as soon as that is stored. The drainer
/// (see [`crate::inbox`]) hands it to the conversation workflow behind the answer, so a burst
/// is answered at MongoDB's pace, not Temporal's workflow-start rate.
async fn inbound_message(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let form = SignedForm::verify(&state, &uri, &headers, &body)?;
    let message_sid = form.require("MessageSid")?.to_owned();
    if !is_twilio_sid(&message_sid, &["SM", "MM"]) {
        return Err(WebhookError::BadRequest(
            "MessageSid is malformed".to_owned(),
        ));
    }
    let (channel, theirs) = twilio_address(form.require("From")?, "From")?;
    let (_, ours) = twilio_address(form.require("To")?, "To")?;
    let text = form.get("Body").unwrap_or_default().to_owned();
    let conversation_id = conversation_workflow_id(&ours, &theirs);
    let unavailable = |e: voice_agent_store::StoreError| WebhookError::Unavailable(e.into());

    let stored = state
        .store
        .insert_inbound(&InboundMessage {
            message_sid: message_sid.clone(),
            channel,
            from: theirs.as_str().to_owned(),
            to: ours.as_str().to_owned(),
            body: text.clone(),
            conversation_id: conversation_id.clone(),
        })
        .await
        .map_err(unavailable)?;

    if channel == Channel::Whatsapp {
        state
            .store
            .touch_whatsapp_session(ours.as_str(), theirs.as_str())
            .await
            .map_err(unavailable)?;
    }

    // Opt-out keywords act at once and on every channel, before anything else happens. They
    // take effect at the message's first arrival, so a STOP that Twilio delivers again after a
    // later START changes nothing.
    let keyword = OptKeyword::parse(&text);
    match keyword {
        Some(OptKeyword::Stop(word)) => {
            let applied = state
                .store
                .suppress(theirs.as_str(), word, channel.as_str(), stored.received_at)
                .await
                .map_err(unavailable)?;
            info!(from = %mask_phone(theirs.as_str()), keyword = word, applied, "opted out");
        }
        Some(OptKeyword::Start) => {
            let applied = state
                .store
                .unsuppress(theirs.as_str(), stored.received_at)
                .await
                .map_err(unavailable)?;
            info!(from = %mask_phone(theirs.as_str()), applied, "opted back in");
        }
        Some(OptKeyword::Help) | None => {}
    }

    if !stored.handed_over {
        let handoff = MessageHandoff {
            state: ConversationState {
                ours: ours.as_str().to_owned(),
                theirs: theirs.as_str().to_owned(),
                channel: Some(channel),
                ..Default::default()
            },
            message: ConversationMessage {
                id: message_sid.clone(),
                direction: "inbound".to_owned(),
                body: text,
                at: chrono::DateTime::<chrono::Utc>::from(stored.received_at.to_system_time())
                    .to_rfc3339(),
                keyword: keyword.map(|k| k.name().to_owned()),
                interrupted: false,
            },
        };
        state
            .inbox
            .put(&message_sid, KIND_MESSAGE, &conversation_id, &handoff)
            .await
            .map_err(unavailable)?;
    }

    metrics::counter!("voice_agent_inbound_messages_total", "duplicate" => if stored.new { "false" } else { "true" })
        .increment(1);
    info!(
        message_sid = %message_sid,
        from = %mask_phone(theirs.as_str()),
        duplicate = !stored.new,
        "inbound message"
    );
    let reply = match keyword {
        Some(OptKeyword::Help) => {
            MessagingResponse::new().message(state.settings.help_reply.as_str())
        }
        _ => MessagingResponse::new(),
    };
    Ok(twiml(reply.to_xml()))
}

/// The carrier-standard keywords, matched on the whole message, trimmed, in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptKeyword {
    /// STOP and its synonyms: suppress on every channel.
    Stop(&'static str),
    /// START, UNSTOP: lift the suppression.
    Start,
    /// HELP: answer with the configured help text.
    Help,
}

impl OptKeyword {
    fn name(self) -> &'static str {
        match self {
            Self::Stop(_) => "stop",
            Self::Start => "start",
            Self::Help => "help",
        }
    }

    fn parse(body: &str) -> Option<Self> {
        const STOP: [&str; 6] = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];
        let word = body
            .trim()
            .trim_end_matches(['.', '!'])
            .to_ascii_uppercase();
        if let Some(w) = STOP.iter().find(|w| **w == word) {
            return Some(Self::Stop(w));
        }
        match word.as_str() {
            "START" | "UNSTOP" => Some(Self::Start),
            "HELP" => Some(Self::Help),
            _ => None,
        }
    }
}

/// Applies a delivery status to the message, moving it only forward.
async fn status_callback(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, WebhookError> {
    let form = SignedForm::verify(&state, &uri, &headers, &body)?;
    let sid = form.require("MessageSid")?;
    if !is_twilio_sid(sid, &["SM", "MM"]) {
        return Err(WebhookError::BadRequest(
            "MessageSid is malformed".to_owned(),
        ));
    }
    let raw_status = form
        .get("MessageStatus")
        .or_else(|| form.get("SmsStatus"))
        .ok_or_else(|| WebhookError::BadRequest("missing MessageStatus".to_owned()))?;
    let Ok(status) = raw_status.parse::<MessageStatus>() else {
        // Twilio adds statuses over time; acknowledging keeps it from retrying forever.
        warn!(status = raw_status, "ignoring unknown message status");
        return Ok(StatusCode::NO_CONTENT);
    };
    let error_code = form.get("ErrorCode").and_then(|c| c.parse::<i64>().ok());
    let query: Vec<(String, String)> = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match param("item") {
        // A campaign item's message: the item holds its status. Campaigns bring thousands of
        // these a second, so they are written in groups; the answer waits for its group.
        Some(item) => {
            state
                .item_callbacks
                .apply(ItemCallback {
                    item_id: item.to_owned(),
                    sid: sid.to_owned(),
                    status: status.as_str().to_owned(),
                    error_code,
                })
                .await?;
            info!(message_sid = sid, status = %status, error_code, "campaign status callback");
        }
        None => {
            let changed = state
                .store
                .apply_status_callback(param("mid"), sid, status, error_code)
                .await
                .map_err(|e| WebhookError::Unavailable(e.into()))?;
            info!(message_sid = sid, status = %status, error_code, changed, "status callback");
        }
    }
    metrics::counter!("voice_agent_status_callbacks_total", "status" => status.as_str())
        .increment(1);
    Ok(StatusCode::NO_CONTENT)
}

/// Largest group of campaign status callbacks written at once.
const CALLBACK_GROUP: usize = 500;

type CallbackWaiter = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Writes campaign items' status callbacks in groups, one multi-statement update each (about
/// half the database's cost of one update per callback). A group is whatever arrived while the
/// previous one was being written, so nothing waits for a timer, and each request is answered
/// only once its group is stored: an error gets Twilio's retry, as before.
#[derive(Clone, Debug)]
pub struct ItemCallbackWriter {
    queue: tokio::sync::mpsc::Sender<(ItemCallback, CallbackWaiter)>,
}

impl ItemCallbackWriter {
    /// Starts the writer task; it ends when the last handle is dropped.
    pub fn start(store: voice_agent_store::MongoStore) -> Self {
        let (queue, mut rx) =
            tokio::sync::mpsc::channel::<(ItemCallback, CallbackWaiter)>(CALLBACK_GROUP * 4);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(CALLBACK_GROUP);
            while rx.recv_many(&mut group, CALLBACK_GROUP).await > 0 {
                let (callbacks, waiters): (Vec<ItemCallback>, Vec<CallbackWaiter>) =
                    group.drain(..).unzip();
                let result = store
                    .apply_item_callbacks(&callbacks)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                for waiter in waiters {
                    // The request may have gone (client timeout); its write still stands.
                    let _ = waiter.send(result.clone());
                }
            }
        });
        Self { queue }
    }

    async fn apply(&self, callback: ItemCallback) -> Result<(), WebhookError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stopped = || WebhookError::Unavailable(anyhow::anyhow!("the callback writer stopped"));
        self.queue
            .send((callback, tx))
            .await
            .map_err(|_| stopped())?;
        rx.await
            .map_err(|_| stopped())?
            .map_err(|e| WebhookError::Unavailable(anyhow::anyhow!(e)))
    }
}

pub(crate) fn is_twilio_sid(sid: &str, prefixes: &[&str]) -> bool {
    sid.len() == 34
        && prefixes.iter().any(|p| sid.starts_with(p))
        && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn twiml(xml: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_keywords_match_whole_messages_in_any_case() {
        assert_eq!(OptKeyword::parse(" stop "), Some(OptKeyword::Stop("STOP")));
        assert_eq!(
            OptKeyword::parse("Unsubscribe."),
            Some(OptKeyword::Stop("UNSUBSCRIBE"))
        );
        assert_eq!(OptKeyword::parse("quit"), Some(OptKeyword::Stop("QUIT")));
        assert_eq!(
            OptKeyword::parse("StopAll"),
            Some(OptKeyword::Stop("STOPALL"))
        );
        assert_eq!(OptKeyword::parse("unstop"), Some(OptKeyword::Start));
        assert_eq!(OptKeyword::parse("HELP"), Some(OptKeyword::Help));
        assert_eq!(OptKeyword::parse("please stop calling"), None);
        assert_eq!(OptKeyword::parse("the end"), None);
    }

    #[test]
    fn sids_must_have_the_right_prefix_and_length() {
        assert!(is_twilio_sid("SM0123456789abcdef0123456789abcdef", &["SM"]));
        assert!(!is_twilio_sid("SM0123", &["SM"]));
        assert!(!is_twilio_sid(
            "CA0123456789abcdef0123456789abcdef",
            &["SM"]
        ));
        assert!(!is_twilio_sid(
            "SM0123456789abcdef0123456789abcdeZ",
            &["SM"]
        ));
    }
}
