//! Signed webhook delivery: message status callbacks and inbound SMS.

use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use chrono::Utc;
use voice_agent_twilio::signature::compute_signature;

use crate::state::{AppState, FinalStatus, MessageStatus, Outcome, Shared};
use crate::util::{mask, redact_url};

/// Twilio's documented webhook timeout.
pub(crate) const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);

/// Attempts per status callback; only connection failures are retried, as Twilio does.
const CALLBACK_ATTEMPTS: u32 = 4;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);

/// What a webhook answered.
#[derive(Debug, Clone)]
pub(crate) struct WebhookResponse {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) body: String,
}

/// POSTs `params` form-encoded to `url` with Twilio's headers and signature.
///
/// `forge` signs with a wrong key so receivers can be tested against forged requests.
pub(crate) async fn post_signed(
    state: &Shared,
    url: &str,
    params: &[(String, String)],
    idempotency_token: &str,
    forge: bool,
) -> Result<WebhookResponse, reqwest::Error> {
    let signature = if forge {
        let wrong_key = format!("{}-forged", state.auth_token.expose());
        compute_signature(&wrong_key, url, params)
    } else {
        compute_signature(state.auth_token.expose(), url, params)
    };
    let response = state
        .http
        .post(url)
        .header(header::ACCEPT, "*/*")
        .header(header::USER_AGENT, "TwilioProxy/1.1")
        .header("I-Twilio-Idempotency-Token", idempotency_token)
        .header("X-Home-Region", "us1")
        .header("X-Twilio-Signature", signature)
        .form(params)
        .timeout(WEBHOOK_TIMEOUT)
        .send()
        .await
        // The URL may carry credentials or tokens in its query; callers log it redacted.
        .map_err(reqwest::Error::without_url)?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.map_err(reqwest::Error::without_url)?;
    Ok(WebhookResponse {
        status,
        content_type,
        body,
    })
}

/// Moves an accepted outbound message through its statuses in the background, posting a
/// status callback for each change after the initial one.
pub(crate) fn spawn_progression(state: &AppState, sid: String, outcome: Outcome) {
    let cancel = state.generation();
    let state = Arc::clone(state);
    state.clone().tasks.spawn(async move {
        tokio::select! {
            () = cancel.cancelled() => {}
            () = progress(&state, &sid, outcome) => {}
        }
    });
}

async fn progress(state: &Shared, sid: &str, outcome: Outcome) {
    let steps: &[MessageStatus] = match outcome.status {
        FinalStatus::Delivered => &[MessageStatus::Sent, MessageStatus::Delivered],
        FinalStatus::Undelivered => &[MessageStatus::Sent, MessageStatus::Undelivered],
        FinalStatus::Failed => &[MessageStatus::Failed],
        FinalStatus::Sent => &[MessageStatus::Sent],
    };
    for &status in steps {
        tokio::time::sleep(state.callback_delay).await;
        let Some(callback) = transition(state, sid, status, outcome.error_code()) else {
            // Deleted or reset meanwhile: nothing left to report on.
            return;
        };
        if let Some((url, params)) = callback {
            let loss_rate = state.store().faults.callback_loss_rate;
            if loss_rate > 0.0 && rand::random::<f64>() < loss_rate {
                tracing::info!(sid = %sid, status = status.as_str(), "status callback dropped (fault)");
                continue;
            }
            deliver_callback(state, sid, &url, &params).await;
        }
    }
}

type Callback = (String, Vec<(String, String)>);

/// Applies a status change; returns the callback to send, if the message asked for one.
fn transition(
    state: &Shared,
    sid: &str,
    status: MessageStatus,
    error_code: Option<u32>,
) -> Option<Option<Callback>> {
    let mut store = state.store();
    let message = store.get_mut(sid)?;
    let now = Utc::now();
    message.status = status;
    message.date_updated = now;
    if status == MessageStatus::Sent {
        message.date_sent = Some(now);
    }
    if matches!(status, MessageStatus::Failed | MessageStatus::Undelivered) {
        message.error_code = error_code;
    }
    if message.from.is_none()
        && let Some(service) = &message.messaging_service_sid
    {
        message.from = Some(pool_number(service));
    }
    let Some(url) = message.status_callback.clone() else {
        return Some(None);
    };
    let mut params = vec![
        ("AccountSid".to_owned(), state.account_sid.clone()),
        ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
        ("From".to_owned(), message.from.clone().unwrap_or_default()),
        ("MessageSid".to_owned(), message.sid.clone()),
        ("MessageStatus".to_owned(), status.as_str().to_owned()),
        ("SmsSid".to_owned(), message.sid.clone()),
        ("SmsStatus".to_owned(), status.as_str().to_owned()),
        ("To".to_owned(), message.to.clone()),
    ];
    if let Some(service) = &message.messaging_service_sid {
        params.push(("MessagingServiceSid".to_owned(), service.clone()));
    }
    if let Some(code) = message.error_code {
        params.push(("ErrorCode".to_owned(), code.to_string()));
    }
    if matches!(
        status,
        MessageStatus::Delivered | MessageStatus::Undelivered
    ) {
        params.push((
            "RawDlrDoneDate".to_owned(),
            now.format("%y%m%d%H%M").to_string(),
        ));
    }
    Some(Some((url, params)))
}

/// The sender a Messaging Service "picks" for a message: stable per service, in the
/// 555-0100..0199 range reserved for fictional use.
fn pool_number(service_sid: &str) -> String {
    let slot = service_sid.bytes().map(u32::from).sum::<u32>() % 100;
    format!("+1201555{:04}", 100 + slot)
}

async fn deliver_callback(state: &Shared, sid: &str, url: &str, params: &[(String, String)]) {
    // Retries reuse the token so receivers can recognise them as the same delivery.
    let token = uuid::Uuid::new_v4().to_string();
    let mut delay = FIRST_RETRY_DELAY;
    for attempt in 1..=CALLBACK_ATTEMPTS {
        match post_signed(state, url, params, &token, false).await {
            Ok(response) => {
                if !(200..300).contains(&response.status) {
                    tracing::warn!(
                        sid,
                        url = %redact_url(url),
                        status = response.status,
                        "status callback answered with an error status"
                    );
                }
                return;
            }
            Err(error) if attempt < CALLBACK_ATTEMPTS => {
                tracing::debug!(sid, url = %redact_url(url), attempt, error = %error, "status callback failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(error) => {
                tracing::warn!(sid, url = %redact_url(url), attempts = attempt, error = %error, "status callback undeliverable");
            }
        }
    }
}

/// Webhook parameters of an inbound SMS/MMS (note section 2), in Twilio's alphabetical order.
pub(crate) fn inbound_params(
    account_sid: &str,
    sid: &str,
    from: &str,
    to: &str,
    body: &str,
    media_urls: &[String],
    profile_name: Option<&str>,
) -> Vec<(String, String)> {
    let country = |number: &str| crate::util::country_of(number).to_owned();
    let mut params: Vec<(String, String)> = vec![
        ("AccountSid".into(), account_sid.into()),
        ("ApiVersion".into(), "2010-04-01".into()),
        ("Body".into(), body.into()),
        ("From".into(), from.into()),
        ("FromCity".into(), String::new()),
        ("FromCountry".into(), country(from)),
        ("FromState".into(), String::new()),
        ("FromZip".into(), String::new()),
        ("MessageSid".into(), sid.into()),
        ("NumMedia".into(), media_urls.len().to_string()),
        (
            "NumSegments".into(),
            crate::segments::count(body).to_string(),
        ),
        ("ReferralNumMedia".into(), "0".into()),
        ("SmsMessageSid".into(), sid.into()),
        ("SmsSid".into(), sid.into()),
        ("SmsStatus".into(), "received".into()),
        ("To".into(), to.into()),
        ("ToCity".into(), String::new()),
        ("ToCountry".into(), country(to)),
        ("ToState".into(), String::new()),
        ("ToZip".into(), String::new()),
    ];
    for (i, url) in media_urls.iter().enumerate() {
        params.push((
            format!("MediaContentType{i}"),
            guess_content_type(url).into(),
        ));
        params.push((format!("MediaUrl{i}"), url.clone()));
    }
    if let Some(wa_id) = from.strip_prefix("whatsapp:+") {
        params.push(("WaId".into(), wa_id.into()));
        params.push((
            "MessageType".into(),
            if media_urls.is_empty() {
                "text"
            } else {
                "image"
            }
            .into(),
        ));
        params.push((
            "ProfileName".into(),
            profile_name.unwrap_or_default().into(),
        ));
    }
    tracing::debug!(from = %mask(from), to = %mask(to), "built inbound params");
    params
}

fn guess_content_type(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("mp4") => "video/mp4",
        Some("mp3") => "audio/mpeg",
        Some("ogg") => "audio/ogg",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_numbers_are_stable_and_fictional() {
        let sid = "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert_eq!(pool_number(sid), pool_number(sid));
        assert!(pool_number(sid).starts_with("+12015550"));
        assert_eq!(pool_number(sid).len(), 12);
    }

    #[test]
    fn inbound_params_carry_twilio_fields() {
        let params = inbound_params(
            "AC1",
            "SM1",
            "+15558675310",
            "+15005550006",
            "hi",
            &[],
            None,
        );
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("SmsStatus"), Some("received"));
        assert_eq!(get("NumMedia"), Some("0"));
        assert_eq!(get("FromCountry"), Some("US"));
        assert_eq!(get("SmsMessageSid"), Some("SM1"));
    }

    #[test]
    fn content_types_follow_extensions() {
        assert_eq!(guess_content_type("https://x/a.PNG?x=1"), "image/png");
        assert_eq!(
            guess_content_type("https://x/a"),
            "application/octet-stream"
        );
    }
}
