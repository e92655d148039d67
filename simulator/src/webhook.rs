//! Signed webhook delivery: message status callbacks and inbound SMS / WhatsApp.

use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use chrono::{DateTime, Utc};
use voice_agent_twilio::signature::compute_signature;

use crate::calls::Method;
use crate::state::{AppState, MessageStatus, Plan, Shared};
use crate::store::{Advanced, MessageSid};
use crate::util::{bare_number, redact_url};
use crate::whatsapp;

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
    request_signed(
        state,
        Method::Post,
        url,
        params,
        idempotency_token,
        forge,
        false,
    )
    .await
}

/// Sends `params` to `url` with Twilio's headers and signature: form-encoded in a POST body, or
/// appended to the query of a GET (signed over the full URL with nothing appended).
///
/// `voice` adds the `; charset=UTF-8` Twilio's voice webhooks carry on their content type.
pub(crate) async fn request_signed(
    state: &Shared,
    method: Method,
    url: &str,
    params: &[(String, String)],
    idempotency_token: &str,
    forge: bool,
    voice: bool,
) -> Result<WebhookResponse, reqwest::Error> {
    let key = if forge {
        format!("{}-forged", state.auth_token.expose())
    } else {
        state.auth_token.expose().to_owned()
    };
    let request = match method {
        Method::Post => {
            let content_type = if voice {
                "application/x-www-form-urlencoded; charset=UTF-8"
            } else {
                "application/x-www-form-urlencoded"
            };
            let body = serde_urlencoded::to_string(params).unwrap_or_default();
            state
                .http
                .post(url)
                .header(header::CONTENT_TYPE, content_type)
                .header("X-Twilio-Signature", compute_signature(&key, url, params))
                .body(body)
        }
        Method::Get => {
            let full = match url::Url::parse(url) {
                Ok(mut parsed) => {
                    parsed
                        .query_pairs_mut()
                        .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                    parsed.to_string()
                }
                // reqwest reports the unusable URL when sending.
                Err(_) => url.to_owned(),
            };
            let signature = compute_signature(&key, &full, &[]);
            state.http.get(full).header("X-Twilio-Signature", signature)
        }
    };
    let response = request
        .header(header::ACCEPT, "*/*")
        .header(header::USER_AGENT, "TwilioProxy/1.1")
        .header("I-Twilio-Idempotency-Token", idempotency_token)
        .header("X-Home-Region", "us1")
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
pub(crate) fn spawn_progression(state: &AppState, sid: MessageSid, plan: Plan) {
    let cancel = state.generation();
    let state = Arc::clone(state);
    state.clone().tasks.spawn(async move {
        tokio::select! {
            () = cancel.cancelled() => {}
            () = progress(&state, sid, plan) => {}
        }
    });
}

async fn progress(state: &Shared, sid: MessageSid, plan: Plan) {
    for (step, &status) in plan.steps.iter().enumerate() {
        // A zero delay skips the timer entirely: a campaign run without delays should not pay
        // a timer-wheel round trip per status.
        if !state.callback_delay.is_zero() {
            tokio::time::sleep(state.callback_delay).await;
        }
        let last = step + 1 == plan.steps.len();
        let now = Utc::now();
        let Some(advanced) = state
            .store()
            .advance(sid, status, plan.error_code, now, last)
        else {
            // Reset meanwhile: nothing left to report on.
            return;
        };
        let Some(url) = &advanced.status_callback else {
            continue;
        };
        let loss_rate = state.faults().callback_loss_rate;
        if loss_rate > 0.0 && rand::random::<f64>() < loss_rate {
            tracing::info!(sid = %sid, status = status.as_str(), "status callback dropped (fault)");
            continue;
        }
        let params = status_params(&state.account_sid, sid, status, &advanced, now);
        deliver_callback(state, sid, url, &params).await;
    }
}

/// Status-callback parameters (note section 2), WhatsApp's extra ones included.
fn status_params(
    account_sid: &str,
    sid: MessageSid,
    status: MessageStatus,
    message: &Advanced,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let sid = sid.to_string();
    let mut params = vec![
        ("AccountSid".to_owned(), account_sid.to_owned()),
        ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
        ("From".to_owned(), message.from.clone()),
        ("MessageSid".to_owned(), sid.clone()),
        ("MessageStatus".to_owned(), status.as_str().to_owned()),
        ("SmsSid".to_owned(), sid),
        ("SmsStatus".to_owned(), status.as_str().to_owned()),
        ("To".to_owned(), message.to.clone()),
    ];
    if let Some(service) = &message.messaging_service_sid {
        params.push(("MessagingServiceSid".to_owned(), service.clone()));
    }
    if let Some(code) = message.error_code {
        params.push(("ErrorCode".to_owned(), code.to_string()));
    }
    if whatsapp::is_whatsapp(&message.to) {
        params.push((
            "ChannelInstallSid".to_owned(),
            whatsapp::channel_install_sid(&message.from),
        ));
        params.push(("ChannelPrefix".to_owned(), "whatsapp".to_owned()));
        params.push((
            "ChannelToAddress".to_owned(),
            bare_number(&message.to).to_owned(),
        ));
        let event = match status {
            MessageStatus::Sent => {
                params.push(("StructuredMessage".to_owned(), "false".to_owned()));
                None
            }
            MessageStatus::Delivered => Some("DELIVERED"),
            MessageStatus::Read => Some("READ"),
            MessageStatus::Undelivered => Some("UNDELIVERED"),
            _ => None,
        };
        if let Some(event) = event {
            params.push(("EventType".to_owned(), event.to_owned()));
        }
    } else if matches!(
        status,
        MessageStatus::Delivered | MessageStatus::Undelivered
    ) {
        params.push((
            "RawDlrDoneDate".to_owned(),
            now.format("%y%m%d%H%M").to_string(),
        ));
    }
    params
}

async fn deliver_callback(state: &Shared, sid: MessageSid, url: &str, params: &[(String, String)]) {
    deliver_status_callback(state, &sid, Method::Post, url, params).await;
}

/// Delivers one status callback, retrying connection failures with backoff as Twilio does.
pub(crate) async fn deliver_status_callback(
    state: &Shared,
    sid: &(dyn std::fmt::Display + Sync),
    method: Method,
    url: &str,
    params: &[(String, String)],
) {
    // Retries reuse the token so receivers can recognise them as the same delivery.
    let token = uuid::Uuid::new_v4().to_string();
    let mut delay = FIRST_RETRY_DELAY;
    for attempt in 1..=CALLBACK_ATTEMPTS {
        let result = {
            // Held per attempt, not across the retry back-off, so waiting costs no slot.
            let Ok(_permit) = state.callback_permits.acquire().await else {
                return;
            };
            request_signed(state, method, url, params, &token, false, false).await
        };
        match result {
            Ok(response) => {
                if !(200..300).contains(&response.status) {
                    tracing::warn!(
                        sid = %sid,
                        url = %redact_url(url),
                        status = response.status,
                        "status callback answered with an error status"
                    );
                }
                return;
            }
            Err(error) if attempt < CALLBACK_ATTEMPTS => {
                tracing::debug!(sid = %sid, url = %redact_url(url), attempt, error = %error, "status callback failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(error) => {
                tracing::warn!(sid = %sid, url = %redact_url(url), attempts = attempt, error = %error, "status callback undeliverable");
            }
        }
    }
}

/// Webhook parameters of an inbound message (note section 2), in Twilio's alphabetical order:
/// SMS/MMS with geographic fields; WhatsApp without them but with `ProfileName`, `WaId`,
/// `MessageType` and `ChannelMetadata`, as captured from real WhatsApp webhooks.
pub(crate) fn inbound_params(
    account_sid: &str,
    sid: &str,
    from: &str,
    to: &str,
    body: &str,
    media_urls: &[String],
    profile_name: Option<&str>,
) -> Vec<(String, String)> {
    let whatsapp = whatsapp::is_whatsapp(from);
    let segments = if whatsapp {
        1
    } else {
        crate::segments::count(body)
    };
    let mut params: Vec<(String, String)> = vec![
        ("AccountSid".into(), account_sid.into()),
        ("ApiVersion".into(), "2010-04-01".into()),
        ("Body".into(), body.into()),
        ("From".into(), from.into()),
        ("MessageSid".into(), sid.into()),
        ("NumMedia".into(), media_urls.len().to_string()),
        ("NumSegments".into(), segments.to_string()),
        ("ReferralNumMedia".into(), "0".into()),
        ("SmsMessageSid".into(), sid.into()),
        ("SmsSid".into(), sid.into()),
        ("SmsStatus".into(), "received".into()),
        ("To".into(), to.into()),
    ];
    if whatsapp {
        let wa_id = bare_number(from).trim_start_matches('+');
        let profile_name = profile_name.unwrap_or_default();
        let metadata = serde_json::json!({
            "type": "whatsapp",
            "data": {"context": {"ProfileName": profile_name, "WaId": wa_id}},
        });
        params.push(("ChannelMetadata".into(), metadata.to_string()));
        params.push((
            "MessageType".into(),
            whatsapp::message_type(media_urls.first().map(|url| guess_content_type(url))).into(),
        ));
        params.push(("ProfileName".into(), profile_name.into()));
        params.push(("WaId".into(), wa_id.into()));
    } else {
        let country = |number: &str| crate::util::country_of(number).to_owned();
        params.extend([
            ("FromCity".into(), String::new()),
            ("FromCountry".into(), country(from)),
            ("FromState".into(), String::new()),
            ("FromZip".into(), String::new()),
            ("ToCity".into(), String::new()),
            ("ToCountry".into(), country(to)),
            ("ToState".into(), String::new()),
            ("ToZip".into(), String::new()),
        ]);
    }
    for (i, url) in media_urls.iter().enumerate() {
        params.push((
            format!("MediaContentType{i}"),
            guess_content_type(url).into(),
        ));
        params.push((format!("MediaUrl{i}"), url.clone()));
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
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
    fn whatsapp_inbound_params_carry_whatsapp_fields_and_no_geography() {
        let params = inbound_params(
            "AC1",
            "SM1",
            "whatsapp:+15558675310",
            "whatsapp:+15005550006",
            "hi",
            &[],
            Some("Ana"),
        );
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("WaId"), Some("15558675310"));
        assert_eq!(get("ProfileName"), Some("Ana"));
        assert_eq!(get("MessageType"), Some("text"));
        assert_eq!(get("SmsStatus"), Some("received"));
        assert_eq!(get("FromCountry"), None);
        let metadata: serde_json::Value =
            serde_json::from_str(get("ChannelMetadata").unwrap()).unwrap();
        assert_eq!(metadata["data"]["context"]["WaId"], "15558675310");
        let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        let sorted = {
            let mut s = names.clone();
            s.sort_unstable();
            s
        };
        names.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn whatsapp_status_params_carry_channel_fields() {
        let message = Advanced {
            from: "whatsapp:+15005550006".to_owned(),
            to: "whatsapp:+15558675310".to_owned(),
            messaging_service_sid: None,
            error_code: None,
            status_callback: None,
        };
        let sid = MessageSid::parse("SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        let params = status_params("AC1", sid, MessageStatus::Read, &message, Utc::now());
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("ChannelPrefix"), Some("whatsapp"));
        assert_eq!(get("ChannelToAddress"), Some("+15558675310"));
        assert_eq!(get("EventType"), Some("READ"));
        assert!(get("ChannelInstallSid").is_some_and(|s| s.starts_with("XE")));
        assert_eq!(get("RawDlrDoneDate"), None);
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
