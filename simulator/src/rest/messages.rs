//! `…/Messages.json` and `…/Messages/{Sid}.json`.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use serde::Serialize;
use url::form_urlencoded;

use super::ApiError;
use crate::segments;
use crate::state::{AppState, Direction, ListFilter, Message, MessageStatus};
use crate::util::{self, bare_number, is_sid, is_valid_address, mask, rfc2822};
use crate::webhook;

const API_VERSION: &str = "2010-04-01";
const MAX_BODY_CHARS: usize = 1600;
const MAX_MEDIA: usize = 10;
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

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
    fn new(message: &Message, account_sid: &str) -> Self {
        let base = format!(
            "/{API_VERSION}/Accounts/{account_sid}/Messages/{}",
            message.sid
        );
        Self {
            account_sid: account_sid.to_owned(),
            api_version: API_VERSION,
            body: message.body.clone(),
            date_created: rfc2822(message.date_created),
            date_sent: message.date_sent.map(rfc2822),
            date_updated: rfc2822(message.date_updated),
            direction: message.direction,
            error_code: message.error_code,
            error_message: message.error_code.and_then(error_message),
            from: message.from.clone(),
            num_media: message.media_urls.len().to_string(),
            // A Messaging Service has not split the body yet while the message is `accepted`.
            num_segments: if message.status == MessageStatus::Accepted {
                "0".to_owned()
            } else {
                message.num_segments.to_string()
            },
            price: None,
            price_unit: None,
            messaging_service_sid: message.messaging_service_sid.clone(),
            sid: message.sid.clone(),
            status: message.status,
            subresource_uris: SubresourceUris {
                media: format!("{base}/Media.json"),
            },
            to: message.to.clone(),
            uri: format!("{base}.json"),
        }
    }
}

/// Twilio's wording for the asynchronous error codes the simulator can script.
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
    if let Some(variables) = non_empty("ContentVariables")
        && !serde_json::from_str::<serde_json::Value>(variables).is_ok_and(|v| v.is_object())
    {
        return Err(ApiError::bad_request(
            21656,
            "The ContentVariables Parameter is invalid.",
        ));
    }
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

/// `POST …/Messages.json`.
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
    let sender = new.sender().to_owned();
    let now = Utc::now();
    let sid = util::new_sid(if new.media_urls.is_empty() {
        "SM"
    } else {
        "MM"
    });
    let message = Message {
        sid: sid.clone(),
        direction: Direction::OutboundApi,
        num_segments: segments::count(&new.body),
        status: if new.messaging_service_sid.is_some() {
            MessageStatus::Accepted
        } else {
            MessageStatus::Queued
        },
        error_code: None,
        date_created: now,
        date_updated: now,
        date_sent: None,
        inbound: None,
        deleted: false,
        from: new.from,
        to: new.to,
        body: new.body,
        messaging_service_sid: new.messaging_service_sid,
        media_urls: new.media_urls,
        status_callback: new.status_callback,
    };
    let (resource, outcome) = {
        let mut store = state.store();
        if !store.admit(&sender, Instant::now()) {
            drop(store);
            tracing::info!(sender = %mask(&sender), "rate limit exceeded");
            return ApiError::too_many_requests().into_response();
        }
        let outcome = store
            .number(&message.to)
            .map(|config| config.outcome)
            .unwrap_or_default();
        let resource = MessageResource::new(&message, &state.account_sid);
        store.insert(message);
        (resource, outcome)
    };
    tracing::info!(
        sid = %sid,
        to = %mask(&resource.to),
        status = resource.status.as_str(),
        "message accepted"
    );
    webhook::spawn_progression(&state, sid, outcome);
    let accept_delay = state.store().faults.accept_delay_ms;
    if accept_delay > 0 {
        tokio::time::sleep(Duration::from_millis(accept_delay)).await;
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
        Some(message) => Json(MessageResource::new(message, &state.account_sid)).into_response(),
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
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let first = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let page_size = match first("PageSize") {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|size| (1..=MAX_PAGE_SIZE).contains(size))
            .ok_or_else(|| {
                ApiError::bad_request(
                    20007,
                    format!("PageSize must be between 1 and {MAX_PAGE_SIZE}, got {raw}."),
                )
            })?,
    };
    let page = match first("Page") {
        None => 0,
        Some(raw) => raw
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(20001, format!("Invalid Page: {raw}")))?,
    };
    let date = |name: &'static str| -> Result<Option<NaiveDate>, ApiError> {
        first(name)
            .map(|raw| {
                raw.get(..10)
                    .and_then(|day| NaiveDate::parse_from_str(day, "%Y-%m-%d").ok())
                    .ok_or_else(|| ApiError::bad_request(20001, format!("Invalid {name}: {raw}")))
            })
            .transpose()
    };
    let filter = ListFilter {
        to: first("To").map(str::to_owned),
        from: first("From").map(str::to_owned),
        date_sent: date("DateSent")?,
        date_sent_before: date("DateSent<")?,
        date_sent_after: date("DateSent>")?,
    };
    let page_token = first("PageToken");

    // Filters echoed into every paging URI, in Twilio's order.
    let filters: Vec<(&str, &str)> = ["To", "From", "DateSent", "DateSent<", "DateSent>"]
        .into_iter()
        .filter_map(|name| first(name).map(|value| (name, value)))
        .collect();
    let page_uri = |page: usize, token: Option<&str>| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &filters {
            query.append_pair(name, value);
        }
        query.append_pair("PageSize", &page_size.to_string());
        query.append_pair("Page", &page.to_string());
        if let Some(token) = token {
            query.append_pair("PageToken", token);
        }
        format!("{path}?{}", query.finish())
    };

    let store = state.store();
    let matching: Vec<&Message> = store.list(&filter).collect();
    // The token names the last message of the previous page, so paging stays stable while new
    // messages arrive at the front of the list.
    let offset = page_token
        .and_then(|token| token.strip_prefix("PA"))
        .and_then(|sid| matching.iter().position(|m| m.sid == sid))
        .map_or(page * page_size, |last| last + 1);
    let items: Vec<&Message> = matching
        .iter()
        .skip(offset)
        .take(page_size)
        .copied()
        .collect();
    let has_more = offset + items.len() < matching.len();
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
            .map(|m| MessageResource::new(m, &state.account_sid))
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
