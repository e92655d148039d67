//! `…/Messages.json` and `…/Messages/{Sid}.json`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;

use super::ApiError;
use super::paging::ListQuery;
use crate::segments;
use crate::state::{AppState, Direction, MessageStatus};
use crate::store::{ListFilter, Message, NewRecord, Store};
use crate::util::{bare_number, is_sid, is_valid_address, mask, pool_number, rfc2822};
use crate::webhook;
use crate::whatsapp;

const API_VERSION: &str = "2010-04-01";
const MAX_BODY_CHARS: usize = 1600;
const MAX_MEDIA: usize = 10;

/// The Message resource in Twilio's field order.
#[derive(Serialize)]
pub(crate) struct MessageResource {
    account_sid: String,
    api_version: &'static str,
    body: String,
    date_created: String,
    date_sent: Option<String>,
    date_updated: String,
    direction: Direction,
    error_code: Option<u32>,
    error_message: Option<&'static str>,
    from: Option<String>,
    num_media: String,
    num_segments: String,
    price: Option<String>,
    price_unit: Option<String>,
    messaging_service_sid: Option<String>,
    sid: String,
    status: MessageStatus,
    subresource_uris: SubresourceUris,
    to: String,
    uri: String,
}

#[derive(Serialize)]
struct SubresourceUris {
    media: String,
}

impl MessageResource {
    fn new(message: &Message, store: &Store, account_sid: &str) -> Self {
        let sid = message.sid.to_string();
        let base = format!("/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}");
        Self {
            account_sid: account_sid.to_owned(),
            api_version: API_VERSION,
            body: store.str(message.body).to_owned(),
            date_created: rfc2822(message.date_created),
            date_sent: message.date_sent.map(rfc2822),
            date_updated: rfc2822(message.date_updated),
            direction: message.direction,
            error_code: message.error_code,
            error_message: message.error_code.and_then(error_message),
            from: store.opt_str(message.from).map(str::to_owned),
            num_media: message
                .extra
                .as_ref()
                .map_or(0, |extra| extra.media_urls.len())
                .to_string(),
            // A Messaging Service has not split the body yet while the message is `accepted`.
            num_segments: if message.status == MessageStatus::Accepted {
                "0".to_owned()
            } else {
                message.num_segments.to_string()
            },
            price: None,
            price_unit: None,
            messaging_service_sid: store
                .opt_str(message.messaging_service_sid)
                .map(str::to_owned),
            sid,
            status: message.status,
            subresource_uris: SubresourceUris {
                media: format!("{base}/Media.json"),
            },
            to: store.str(message.to).to_owned(),
            uri: format!("{base}.json"),
        }
    }
}

/// Twilio's wording for the asynchronous error codes the simulator can report.
fn error_message(code: u32) -> Option<&'static str> {
    Some(match code {
        30001 => "Queue overflow",
        30002 => "Account suspended",
        30003 => "Unreachable destination handset",
        30004 => "Message blocked",
        30005 => "Unknown destination handset",
        30006 => "Landline or unreachable carrier",
        30007 => "Message filtered",
        30008 => "Unknown error",
        21610 => "Attempt to send to unsubscribed recipient",
        63016 => {
            "Failed to send freeform message because you are outside the allowed window. If you are using WhatsApp, please use a Message Template."
        }
        _ => return None,
    })
}

/// A create request that passed validation.
#[derive(Debug, PartialEq)]
pub(crate) struct NewMessage {
    pub(crate) to: String,
    pub(crate) from: Option<String>,
    pub(crate) messaging_service_sid: Option<String>,
    pub(crate) body: String,
    pub(crate) media_urls: Vec<String>,
    pub(crate) status_callback: Option<String>,
    pub(crate) content_sid: Option<String>,
    /// `ContentVariables` as sent, and parsed.
    pub(crate) content_variables: Option<(String, BTreeMap<String, String>)>,
}

impl NewMessage {
    /// Key of the per-sender rate limit.
    fn sender(&self) -> &str {
        self.from
            .as_deref()
            .or(self.messaging_service_sid.as_deref())
            .unwrap_or_default()
    }
}
/// Validates create parameters in Twilio's order, including the magic test numbers.
pub(crate) fn validate(params: &[(String, String)]) -> Result<NewMessage, ApiError> {
    let first = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let non_empty = |name: &str| first(name).filter(|value| !value.is_empty());
    let media_urls: Vec<String> = params
        .iter()
        .filter(|(key, _)| key == "MediaUrl" || key == "MediaUrl[]")
        .map(|(_, value)| value.clone())
        .collect();

    let to = non_empty("To")
        .ok_or_else(|| ApiError::bad_request(21604, "A 'To' phone number is required."))?;
    let from = non_empty("From");
    let service = non_empty("MessagingServiceSid");
    if from.is_none() && service.is_none() {
        return Err(ApiError::bad_request(
            21603,
            "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
        ));
    }
    if let Some(service) = service
        && !is_sid(service, "MG")
    {
        return Err(ApiError::bad_request(
            21701,
            format!("The Messaging Service Sid {service} is invalid."),
        ));
    }
    if let Some(from) = from {
        match bare_number(from) {
            "+15005550001" => {
                return Err(ApiError::bad_request(
                    21212,
                    format!(
                        "The 'From' number {from} is not a valid phone number, shortcode, or alphanumeric sender ID."
                    ),
                ));
            }
            "+15005550007" => {
                return Err(ApiError::bad_request(
                    21606,
                    format!(
                        "The From phone number {from} is not a valid, SMS-capable inbound phone number or short code for your account."
                    ),
                ));
            }
            "+15005550008" => {
                return Err(ApiError::bad_request(
                    21611,
                    "This 'From' number has exceeded the maximum number of queued messages.",
                ));
            }
            _ => {}
        }
    }
    let invalid_to = || {
        ApiError::bad_request(
            21211,
            format!("The 'To' number {to} is not a valid phone number."),
        )
    };
    if !is_valid_address(to) {
        return Err(invalid_to());
    }
    if let Some(from) = from
        && to.starts_with("whatsapp:") != from.starts_with("whatsapp:")
    {
        return Err(ApiError::bad_request(
            21910,
            "Invalid From and To pair. From and To should be of the same channel.",
        ));
    }
    match bare_number(to) {
        "+15005550001" => return Err(invalid_to()),
        "+15005550002" => {
            return Err(ApiError::bad_request(
                21612,
                format!(
                    "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: {} via SMS.",
                    from.unwrap_or_default()
                ),
            ));
        }
        "+15005550003" => {
            return Err(ApiError::bad_request(
                21408,
                format!(
                    "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."
                ),
            ));
        }
        "+15005550004" => {
            return Err(ApiError::bad_request(
                21610,
                "Attempt to send to unsubscribed recipient",
            ));
        }
        "+15005550009" => {
            return Err(ApiError::bad_request(
                21614,
                format!("'To' number {to} is not a valid mobile number"),
            ));
        }
        _ => {}
    }

    let body = first("Body");
    let content_sid = non_empty("ContentSid");
    if body.is_none_or(str::is_empty) && media_urls.is_empty() && content_sid.is_none() {
        return Err(match body {
            Some(_) => ApiError::bad_request(21602, "Message body is required."),
            None => ApiError::bad_request(
                21619,
                "A text message body or media urls must be specified.",
            ),
        });
    }
    let body = body.unwrap_or_default();
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(ApiError::bad_request(
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        ));
    }
    if media_urls.len() > MAX_MEDIA {
        return Err(ApiError::bad_request(
            21623,
            "Too many media urls. The maximum is 10.",
        ));
    }
    if !media_urls.iter().all(|url| is_http_url(url)) {
        return Err(ApiError::bad_request(21620, "Invalid media URL(s)."));
    }
    if let Some(content_sid) = content_sid
        && !is_sid(content_sid, "HX")
    {
        return Err(ApiError::bad_request(21655, "The ContentSid is Invalid."));
    }
    let content_variables = match non_empty("ContentVariables") {
        None => None,
        Some(raw) => match whatsapp::parse_variables(raw) {
            Some(parsed) => Some((raw.to_owned(), parsed)),
            None => {
                return Err(ApiError::bad_request(
                    21656,
                    "The ContentVariables Parameter is invalid.",
                ));
            }
        },
    };
    let status_callback = non_empty("StatusCallback");
    if let Some(callback) = status_callback
        && !is_http_url(callback)
    {
        return Err(ApiError::bad_request(
            21609,
            format!("The StatusCallback URL {callback} is not a valid URL."),
        ));
    }

    Ok(NewMessage {
        to: to.to_owned(),
        from: from.map(str::to_owned),
        messaging_service_sid: service.map(str::to_owned),
        body: body.to_owned(),
        media_urls,
        status_callback: status_callback.map(str::to_owned),
        content_sid: content_sid.map(str::to_owned),
        // Variables only mean something to a template.
        content_variables: content_variables.filter(|_| content_sid.is_some()),
    })
}

fn is_http_url(value: &str) -> bool {
    url::Url::parse(value)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
}

fn parse_form(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|_| ApiError::bad_request(20001, "Unable to parse the request body."))
}

fn unsubscribed() -> ApiError {
    ApiError::bad_request(21610, "Attempt to send to unsubscribed recipient")
}

/// `POST …/Messages.json`.
///
/// Everything after validation happens under one short store lock: opt-out, rate limit,
/// session window, template rendering and the insert, with no I/O or await inside.
pub(crate) async fn create(State(state): State<AppState>, body: Bytes) -> Response {
    let params = match parse_form(&body) {
        Ok(params) => params,
        Err(error) => return error.into_response(),
    };
    let new = match validate(&params) {
        Ok(new) => new,
        Err(error) => {
            tracing::info!(code = error.code(), "rejected message create");
            return error.into_response();
        }
    };
    let faults = state.faults();
    let whatsapp = whatsapp::is_whatsapp(&new.to);
    // The address the message leaves from: its From, else the number its service will pick.
    let sender = match (&new.from, &new.messaging_service_sid) {
        (Some(from), _) => from.clone(),
        (None, service) => pool_number(service.as_deref().unwrap_or_default(), whatsapp),
    };
    let no_variables = BTreeMap::new();
    let accepted = {
        let mut store = state.store();
        if faults.twilio_opt_out && !whatsapp && store.is_opted_out(&sender, &new.to) {
            store.count_opt_out_refusal();
            Err(unsubscribed())
        } else if !store.admit(new.sender(), faults.rate_limit_mps, Instant::now()) {
            Err(ApiError::too_many_requests())
        } else {
            let outside_window = whatsapp
                && new.content_sid.is_none()
                && !whatsapp::window_open(store.last_inbound(&sender, &new.to), store.now());
            let plan = store
                .number_for(&new.to)
                .map(|config| config.outcome)
                .unwrap_or_default()
                .plan(whatsapp, outside_window);
            let variables = new
                .content_variables
                .as_ref()
                .map_or(&no_variables, |v| &v.1);
            let rendered = new
                .content_sid
                .as_deref()
                .and_then(|sid| store.template(sid))
                .map(|template| template.render(variables));
            let body = rendered.as_deref().unwrap_or(&new.body);
            let sid = store.new_sid(!new.media_urls.is_empty());
            let index = store.insert(
                sid,
                NewRecord {
                    direction: Direction::OutboundApi,
                    status: if new.messaging_service_sid.is_some() {
                        MessageStatus::Accepted
                    } else {
                        MessageStatus::Queued
                    },
                    to: &new.to,
                    from: new.from.as_deref(),
                    body,
                    messaging_service_sid: new.messaging_service_sid.as_deref(),
                    content: new.content_sid.as_deref().map(|content_sid| {
                        (
                            content_sid,
                            new.content_variables.as_ref().map(|v| v.0.as_str()),
                        )
                    }),
                    // WhatsApp does not split messages into SMS segments.
                    num_segments: if whatsapp { 1 } else { segments::count(body) },
                    status_callback: new.status_callback.as_deref(),
                    media_urls: new.media_urls.clone(),
                    inbound: None,
                    now: Utc::now(),
                    date_sent: None,
                },
            );
            let resource =
                MessageResource::new(store.message_at(index), &store, &state.account_sid);
            Ok((sid, resource, plan))
        }
    };
    let (sid, resource, plan) = match accepted {
        Ok(accepted) => accepted,
        Err(error) => {
            tracing::info!(code = error.code(), to = %mask(&new.to), "refused message create");
            return error.into_response();
        }
    };
    // Per-message logs are debug: at campaign rates they would cost more than the work.
    tracing::debug!(
        sid = %sid,
        to = %mask(&resource.to),
        status = resource.status.as_str(),
        outside_whatsapp_window = plan.error_code == Some(crate::state::OUTSIDE_WHATSAPP_WINDOW),
        "message accepted"
    );
    webhook::spawn_progression(&state, sid, plan);
    if faults.accept_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.accept_delay_ms)).await;
    }
    (StatusCode::CREATED, Json(resource)).into_response()
}

/// `GET …/Messages/{Sid}.json`.
pub(crate) async fn fetch(
    State(state): State<AppState>,
    Path((_, file)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let store = state.store();
    match file
        .strip_suffix(".json")
        .and_then(|sid| store.get_visible(sid))
    {
        Some(message) => {
            Json(MessageResource::new(message, &store, &state.account_sid)).into_response()
        }
        None => ApiError::not_found(uri.path()).into_response(),
    }
}

/// `DELETE …/Messages/{Sid}.json`: removes the message from the REST view (the ledger keeps it).
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path((_, file)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let deleted = file
        .strip_suffix(".json")
        .is_some_and(|sid| state.store().hide(sid));
    if deleted {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::not_found(uri.path()).into_response()
    }
}

/// A list page in Twilio's shape.
#[derive(Serialize)]
struct MessagePage {
    end: usize,
    first_page_uri: String,
    next_page_uri: Option<String>,
    page: usize,
    page_size: usize,
    previous_page_uri: Option<String>,
    start: usize,
    uri: String,
    messages: Vec<MessageResource>,
}

/// `GET …/Messages.json` with Twilio's filters and paging.
pub(crate) async fn list(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    RawQuery(query): RawQuery,
) -> Response {
    match list_page(&state, uri.path(), query.as_deref().unwrap_or_default()) {
        Ok(page) => Json(page).into_response(),
        Err(error) => error.into_response(),
    }
}

fn list_page(state: &AppState, path: &str, query: &str) -> Result<MessagePage, ApiError> {
    let q = ListQuery::parse(path, query)?;
    let first = |name: &str| q.first(name);
    let (page, page_size) = (q.page, q.page_size);
    let filter = ListFilter {
        to: first("To").map(str::to_owned),
        from: first("From").map(str::to_owned),
        date_sent: q.date("DateSent")?,
        date_sent_before: q.date("DateSent<")?,
        date_sent_after: q.date("DateSent>")?,
    };
    let page_token = q.token();
    // Filters echoed into every paging URI, in Twilio's order.
    let page_uri = |page: usize, token: Option<&str>| {
        q.page_uri(
            &["To", "From", "DateSent", "DateSent<", "DateSent>"],
            page,
            token,
        )
    };

    let store = state.store();
    // The token names the last message of the previous page, so paging stays stable while new
    // messages arrive at the front of the list; without one, Page counts from the front.
    let cursor = page_token
        .and_then(|token| token.strip_prefix("PA"))
        .and_then(|sid| store.index_of(sid));
    let skip = if cursor.is_some() {
        0
    } else {
        page * page_size
    };
    // One extra item tells whether there is a next page without counting all matches.
    let mut items: Vec<&Message> = store
        .list(&filter, cursor)
        .skip(skip)
        .take(page_size + 1)
        .collect();
    let has_more = items.len() > page_size;
    items.truncate(page_size);
    let next_page_uri = items
        .last()
        .filter(|_| has_more)
        .map(|last| page_uri(page + 1, Some(&format!("PA{}", last.sid))));
    let start = page * page_size;
    Ok(MessagePage {
        end: start + items.len().saturating_sub(1),
        first_page_uri: page_uri(0, None),
        next_page_uri,
        page,
        page_size,
        previous_page_uri: (page > 0).then(|| page_uri(page - 1, None)),
        start,
        uri: page_uri(page, page_token),
        messages: items
            .into_iter()
            .map(|m| MessageResource::new(m, &store, &state.account_sid))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn code(pairs: &[(&str, &str)]) -> u32 {
        validate(&params(pairs)).unwrap_err().code()
    }

    #[test]
    fn a_plain_sms_is_valid() {
        let new = validate(&params(&[
            ("To", "+15558675310"),
            ("From", "+15005550006"),
            ("Body", "hi"),
        ]))
        .unwrap();
        assert_eq!(new.to, "+15558675310");
        assert_eq!(new.sender(), "+15005550006");
    }

    #[test]
    fn missing_fields_give_twilio_codes() {
        assert_eq!(code(&[("From", "+15005550006"), ("Body", "x")]), 21604);
        assert_eq!(code(&[("To", "+15558675310"), ("Body", "x")]), 21603);
        assert_eq!(
            code(&[("To", "+15558675310"), ("From", "+15005550006")]),
            21619
        );
        assert_eq!(
            code(&[
                ("To", "+15558675310"),
                ("From", "+15005550006"),
                ("Body", "")
            ]),
            21602
        );
    }

    #[test]
    fn bad_values_give_twilio_codes() {
        let long = "a".repeat(1601);
        assert_eq!(
            code(&[("To", "+15558675310"), ("From", "+1500"), ("Body", &long)]),
            21617
        );
        assert_eq!(
            code(&[("To", "+1asd"), ("From", "+15005550006"), ("Body", "x")]),
            21211
        );
        assert_eq!(
            code(&[
                ("To", "+15558675310"),
                ("MessagingServiceSid", "MG1"),
                ("Body", "x")
            ]),
            21701
        );
        assert_eq!(
            code(&[
                ("To", "whatsapp:+15558675310"),
                ("From", "+15005550006"),
                ("Body", "x")
            ]),
            21910
        );
    }

    #[test]
    fn magic_numbers_give_their_codes() {
        for (from, expected) in [
            ("+15005550001", 21212),
            ("+15005550007", 21606),
            ("+15005550008", 21611),
        ] {
            assert_eq!(
                code(&[("To", "+15558675310"), ("From", from), ("Body", "x")]),
                expected
            );
        }
        for (to, expected) in [
            ("+15005550001", 21211),
            ("+15005550002", 21612),
            ("+15005550003", 21408),
            ("+15005550004", 21610),
            ("+15005550009", 21614),
        ] {
            assert_eq!(
                code(&[("To", to), ("From", "+15005550006"), ("Body", "x")]),
                expected
            );
        }
    }

    #[test]
    fn media_and_content_alone_are_enough() {
        validate(&params(&[
            ("To", "+15558675310"),
            ("From", "+15005550006"),
            ("MediaUrl", "https://example.com/a.png"),
        ]))
        .unwrap();
        validate(&params(&[
            ("To", "whatsapp:+15558675310"),
            ("From", "whatsapp:+15005550006"),
            ("ContentSid", "HXaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("ContentVariables", r#"{"1":"12/1"}"#),
        ]))
        .unwrap();
    }
}
