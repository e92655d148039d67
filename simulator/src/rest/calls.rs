//! `…/Calls.json` and `…/Calls/{Sid}.json`.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::oneshot;

use super::ApiError;
use super::paging::ListQuery;
use crate::calls::runner::{self, Plan};
use crate::calls::{
    Call, CallDirection, CallStatus, CallStore, CallbackEvents, Control, MachineDetection, Method,
    Source,
};
use crate::state::AppState;
use crate::util::{is_e164, mask, rfc2822};

const API_VERSION: &str = "2010-04-01";
const MAX_TWIML_CHARS: usize = 4000;
/// How long an update waits for the call to apply a hang-up before answering anyway.
const UPDATE_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The Call resource in Twilio's field order.
#[derive(Serialize)]
pub(crate) struct CallResource {
    sid: String,
    date_created: String,
    date_updated: String,
    parent_call_sid: Option<String>,
    account_sid: String,
    to: String,
    to_formatted: String,
    from: String,
    from_formatted: String,
    phone_number_sid: Option<String>,
    status: CallStatus,
    start_time: Option<String>,
    end_time: Option<String>,
    duration: Option<String>,
    price: Option<String>,
    price_unit: &'static str,
    direction: CallDirection,
    answered_by: Option<String>,
    api_version: &'static str,
    forwarded_from: Option<String>,
    group_sid: Option<String>,
    caller_name: Option<String>,
    queue_time: String,
    trunk_sid: Option<String>,
    uri: String,
    subresource_uris: serde_json::Map<String, serde_json::Value>,
}

impl CallResource {
    pub(crate) fn new(call: &Call, account_sid: &str) -> Self {
        let base = format!("/{API_VERSION}/Accounts/{account_sid}/Calls/{}", call.sid);
        let subresource_uris = [
            "notifications",
            "recordings",
            "payments",
            "events",
            "siprec",
            "streams",
            "transcriptions",
            "user_defined_message_subscriptions",
            "user_defined_messages",
        ]
        .into_iter()
        .map(|name| {
            let path = name
                .split('_')
                .map(|word| {
                    let mut chars = word.chars();
                    chars.next().map_or_else(String::new, |first| {
                        first.to_ascii_uppercase().to_string() + chars.as_str()
                    })
                })
                .collect::<String>();
            (name.to_owned(), format!("{base}/{path}.json").into())
        })
        .collect();
        Self {
            sid: call.sid.clone(),
            date_created: rfc2822(call.date_created),
            date_updated: rfc2822(call.date_updated),
            parent_call_sid: None,
            account_sid: account_sid.to_owned(),
            to: call.to.clone(),
            to_formatted: formatted(&call.to),
            from: call.from.clone(),
            from_formatted: formatted(&call.from),
            phone_number_sid: None,
            status: call.status,
            start_time: call.dialled_at.map(rfc2822),
            end_time: call.ended_at.map(rfc2822),
            duration: call
                .ended_at
                .map(|_| call.duration.unwrap_or_default().to_string()),
            price: None,
            price_unit: "USD",
            direction: call.direction,
            answered_by: call.answered_by.clone(),
            api_version: API_VERSION,
            forwarded_from: None,
            group_sid: None,
            caller_name: None,
            queue_time: call.queue_time_ms.to_string(),
            trunk_sid: None,
            uri: format!("{base}.json"),
            subresource_uris,
        }
    }
}

/// Twilio's national format for North American numbers; other numbers as given.
fn formatted(number: &str) -> String {
    match number.strip_prefix("+1") {
        Some(digits) if digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            format!("({}) {}-{}", &digits[..3], &digits[3..6], &digits[6..])
        }
        _ => number.to_owned(),
    }
}

/// A create request that passed validation.
#[derive(Debug)]
pub(crate) struct NewCall {
    pub(crate) to: String,
    pub(crate) from: String,
    pub(crate) source: Source,
    pub(crate) status_callback: Option<(String, Method)>,
    pub(crate) callback_events: CallbackEvents,
    pub(crate) machine_detection: Option<MachineDetection>,
    pub(crate) timeout: u64,
    pub(crate) time_limit: u64,
    pub(crate) record: bool,
}

fn invalid(name: &str, value: &str) -> ApiError {
    ApiError::bad_request(20001, format!("Invalid {name}: {value}"))
}

fn is_http_url(value: &str) -> bool {
    url::Url::parse(value)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
}

/// Whether a call address is usable: E.164, or a `client:` / `sip:` address.
fn is_call_address(value: &str) -> bool {
    is_e164(value) || value.starts_with("client:") || value.starts_with("sip:")
}

/// Validates create parameters in Twilio's order, including the magic test numbers.
pub(crate) fn validate(params: &[(String, String)]) -> Result<NewCall, ApiError> {
    let first = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    };
    let to =
        first("To").ok_or_else(|| ApiError::bad_request(21201, "No 'To' number is specified"))?;
    let from = first("From")
        .ok_or_else(|| ApiError::bad_request(21213, "No 'From' number is specified"))?;
    let url = first("Url");
    let twiml = first("Twiml");
    if url.is_none() && twiml.is_none() && first("ApplicationSid").is_none() {
        return Err(ApiError::bad_request(21205, "Url parameter is required."));
    }
    if first("ApplicationSid").is_some() && url.is_none() && twiml.is_none() {
        return Err(ApiError::bad_request(
            21205,
            "ApplicationSid is not simulated; send Url or Twiml.",
        ));
    }
    if !is_call_address(to) || to == "+15005550001" {
        return Err(ApiError::bad_request(
            if to == "+15005550001" { 21217 } else { 21211 },
            format!("Invalid 'To' Phone Number: {to}"),
        ));
    }
    if !is_call_address(from) || from == "+15005550001" {
        return Err(ApiError::bad_request(
            21212,
            format!("Invalid 'From' Phone Number: {from}"),
        ));
    }
    match to {
        "+15005550002" => {
            return Err(ApiError::bad_request(
                21214,
                format!("'To' phone number cannot be reached: {to}"),
            ));
        }
        "+15005550003" => {
            return Err(ApiError::bad_request(
                21215,
                format!(
                    "Account not authorized to call {to}. Perhaps you need to enable some international permissions"
                ),
            ));
        }
        "+15005550004" => {
            return Err(ApiError::bad_request(
                21216,
                format!("Call blocked: {to} is on a block list"),
            ));
        }
        _ => {}
    }
    let method = |name: &str| {
        Method::parse(first(name)).ok_or_else(|| invalid(name, first(name).unwrap_or_default()))
    };
    // Twilio ignores `Twiml` when `Url` is also sent.
    let source = match (url, twiml) {
        (Some(url), _) => {
            if !is_http_url(url) {
                return Err(ApiError::bad_request(
                    21205,
                    format!("Url is not a valid URL: {url}"),
                ));
            }
            Source::Fetch {
                url: url.to_owned(),
                method: method("Method")?,
                extra: Vec::new(),
            }
        }
        (None, Some(twiml)) => {
            if twiml.chars().count() > MAX_TWIML_CHARS {
                return Err(ApiError::bad_request(
                    21232,
                    "Twiml parameter exceeds the 4000 character limit.",
                ));
            }
            Source::Inline(twiml.to_owned())
        }
        (None, None) => unreachable!("checked above"),
    };
    let status_callback = match first("StatusCallback") {
        None => None,
        Some(callback) if is_http_url(callback) => {
            Some((callback.to_owned(), method("StatusCallbackMethod")?))
        }
        Some(callback) => {
            return Err(ApiError::bad_request(
                21609,
                format!("The StatusCallback URL {callback} is not a valid URL."),
            ));
        }
    };
    let mut callback_events = CallbackEvents {
        initiated: false,
        ringing: false,
        answered: false,
        completed: false,
    };
    let mut any_event = false;
    for (_, value) in params
        .iter()
        .filter(|(key, _)| key == "StatusCallbackEvent" || key == "StatusCallbackEvent[]")
    {
        // Clients may also send one space-separated value.
        for event in value.split_whitespace() {
            any_event = true;
            match event {
                "initiated" => callback_events.initiated = true,
                "ringing" => callback_events.ringing = true,
                "answered" => callback_events.answered = true,
                "completed" => callback_events.completed = true,
                other => return Err(invalid("StatusCallbackEvent", other)),
            }
        }
    }
    if !any_event {
        callback_events = CallbackEvents::COMPLETED_ONLY;
    }
    let machine_detection = match first("MachineDetection") {
        None => None,
        Some(value) if value.eq_ignore_ascii_case("Enable") => Some(MachineDetection::Enable),
        Some(value) if value.eq_ignore_ascii_case("DetectMessageEnd") => {
            Some(MachineDetection::DetectMessageEnd)
        }
        Some(other) => return Err(invalid("MachineDetection", other)),
    };
    let number = |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| match first(name)
    {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|value| range.contains(value))
            .ok_or_else(|| invalid(name, raw)),
    };
    let timeout = number("Timeout", 60, 1..=600)?;
    let time_limit = number("TimeLimit", 14_400, 1..=86_400)?;
    let record = match first("Record").map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(invalid("Record", other)),
    };
    Ok(NewCall {
        to: to.to_owned(),
        from: from.to_owned(),
        source,
        status_callback,
        callback_events,
        machine_detection,
        timeout,
        time_limit,
        record,
    })
}

fn parse_form(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|_| ApiError::bad_request(20001, "Unable to parse the request body."))
}

/// `POST …/Calls.json`: queues the call; it is dialled in order under the calls-per-second
/// limit and runs in the background.
pub(crate) async fn create(State(state): State<AppState>, body: Bytes) -> Response {
    let new = match parse_form(&body).and_then(|params| validate(&params)) {
        Ok(new) => new,
        Err(error) => {
            tracing::info!(code = error.code(), "rejected call create");
            return error.into_response();
        }
    };
    let sid = CallStore::new_sid();
    let (dial_at, party) = {
        let mut calls = state.calls();
        let cps = state.faults().calls_per_second;
        (
            calls.reserve_dial_slot(cps, Instant::now()),
            calls.callee(&new.to),
        )
    };
    tracing::debug!(sid = %sid, to = %mask(&new.to), "call queued");
    runner::start(
        &state,
        Plan {
            sid: sid.clone(),
            from: new.from,
            to: new.to,
            direction: CallDirection::OutboundApi,
            source: new.source,
            status_callback: new.status_callback,
            callback_events: new.callback_events,
            machine_detection: new.machine_detection,
            timeout: new.timeout,
            time_limit: new.time_limit,
            record: new.record,
            party,
            dial_at,
            forge: false,
        },
    );
    let calls = state.calls();
    match calls.get(&sid) {
        Some(call) => (
            StatusCode::CREATED,
            Json(CallResource::new(call, &state.account_sid)),
        )
            .into_response(),
        // Reset between the insert and now.
        None => ApiError::internal().into_response(),
    }
}

/// `GET …/Calls/{Sid}.json`.
pub(crate) async fn fetch(
    State(state): State<AppState>,
    Path((_, file)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let calls = state.calls();
    match file.strip_suffix(".json").and_then(|sid| calls.get(sid)) {
        Some(call) => Json(CallResource::new(call, &state.account_sid)).into_response(),
        None => ApiError::not_found(uri.path()).into_response(),
    }
}

/// `POST …/Calls/{Sid}.json`: `Status=completed|canceled` hangs up or cancels; `Url` / `Twiml`
/// redirects a live call.
pub(crate) async fn update(
    State(state): State<AppState>,
    Path((_, file)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let params = match parse_form(&body) {
        Ok(params) => params,
        Err(error) => return error.into_response(),
    };
    let first = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    };
    let Some(sid) = file.strip_suffix(".json").map(str::to_owned) else {
        return ApiError::not_found(uri.path()).into_response();
    };
    let (status, control) = match state.calls().get(&sid) {
        Some(call) => (call.status, call.control.clone()),
        None => return ApiError::not_found(uri.path()).into_response(),
    };
    if let Some(requested) = first("Status") {
        let ending = match requested {
            // `completed` ends a live call and cancels one not yet answered.
            "completed" if status == CallStatus::InProgress => Some(CallStatus::Completed),
            "completed" | "canceled"
                if matches!(status, CallStatus::Queued | CallStatus::Ringing) =>
            {
                Some(CallStatus::Canceled)
            }
            "completed" | "canceled" => None,
            other => return invalid("Status", other).into_response(),
        };
        if let (Some(ending), Some(control)) = (ending, control) {
            let (ack, acked) = oneshot::channel();
            if control.send(Control::End(ending, ack)).is_ok() {
                let _ = tokio::time::timeout(UPDATE_ACK_TIMEOUT, acked).await;
            }
        }
    } else if first("Url").is_some() || first("Twiml").is_some() {
        if status != CallStatus::InProgress {
            return ApiError::bad_request(21220, "Call is not in-progress. Cannot redirect.")
                .into_response();
        }
        let source = match (first("Url"), first("Twiml")) {
            (Some(url), _) if is_http_url(url) => Source::Fetch {
                url: url.to_owned(),
                method: match Method::parse(first("Method")) {
                    Some(method) => method,
                    None => {
                        return invalid("Method", first("Method").unwrap_or_default())
                            .into_response();
                    }
                },
                extra: Vec::new(),
            },
            (Some(url), _) => {
                return ApiError::bad_request(21205, format!("Url is not a valid URL: {url}"))
                    .into_response();
            }
            (None, Some(twiml)) => Source::Inline(twiml.to_owned()),
            (None, None) => unreachable!("checked above"),
        };
        if let Some(control) = control {
            let _ = control.send(Control::Redirect(source));
        }
    }
    let calls = state.calls();
    match calls.get(&sid) {
        Some(call) => Json(CallResource::new(call, &state.account_sid)).into_response(),
        None => ApiError::not_found(uri.path()).into_response(),
    }
}

/// A list page in Twilio's shape.
#[derive(Serialize)]
struct CallPage {
    calls: Vec<CallResource>,
    end: usize,
    first_page_uri: String,
    next_page_uri: Option<String>,
    page: usize,
    page_size: usize,
    previous_page_uri: Option<String>,
    start: usize,
    uri: String,
}

/// `GET …/Calls.json`: newest first, filtered by `To`, `From`, `Status`, `StartTime`,
/// `StartTime>` and `StartTime<` (UTC days), with Twilio's paging.
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

fn list_page(state: &AppState, path: &str, query: &str) -> Result<CallPage, ApiError> {
    let q = ListQuery::parse(path, query)?;
    let first = |name: &str| q.first(name);
    let (page, page_size) = (q.page, q.page_size);
    let date = |name: &'static str| q.date(name);
    let on = date("StartTime")?;
    let after = date("StartTime>")?;
    let before = date("StartTime<")?;
    let status = first("Status")
        .map(|raw| CallStatus::parse(raw).ok_or_else(|| invalid("Status", raw)))
        .transpose()?;
    let (to, from) = (first("To"), first("From"));
    let page_token = q.token();
    let page_uri = |page: usize, token: Option<&str>| {
        q.page_uri(
            &[
                "To",
                "From",
                "Status",
                "StartTime",
                "StartTime>",
                "StartTime<",
            ],
            page,
            token,
        )
    };

    let calls = state.calls();
    let matches = |call: &&Call| {
        let day = call.dialled_at.map(|at| at.date_naive());
        to.is_none_or(|to| call.to == to)
            && from.is_none_or(|from| call.from == from)
            && status.is_none_or(|status| call.status == status)
            && on.is_none_or(|on| day == Some(on))
            && after.is_none_or(|after| day.is_some_and(|day| day >= after))
            && before.is_none_or(|before| day.is_some_and(|day| day <= before))
    };
    // The token names the last call of the previous page, so paging stays stable while new
    // calls arrive at the front; without one, Page counts from the front.
    let all = calls.all();
    let (end, skip) = match page_token
        .and_then(|token| token.strip_prefix("PA"))
        .and_then(|sid| calls.index_of(sid))
    {
        Some(index) => (index, 0),
        None => (all.len(), page * page_size),
    };
    let mut items: Vec<&Call> = all[..end]
        .iter()
        .rev()
        .filter(matches)
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
    Ok(CallPage {
        end: start + items.len().saturating_sub(1),
        first_page_uri: page_uri(0, None),
        next_page_uri,
        page,
        page_size,
        previous_page_uri: (page > 0).then(|| page_uri(page - 1, None)),
        start,
        uri: page_uri(page, page_token),
        calls: items
            .into_iter()
            .map(|call| CallResource::new(call, &state.account_sid))
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
    fn a_call_with_a_url_is_valid_and_defaults_to_completed_callbacks() {
        let new = validate(&params(&[
            ("To", "+15558675310"),
            ("From", "+15005550006"),
            ("Url", "http://127.0.0.1:1/voice"),
        ]))
        .unwrap();
        assert_eq!(new.callback_events, CallbackEvents::COMPLETED_ONLY);
        assert_eq!(new.timeout, 60);
        assert!(matches!(
            new.source,
            Source::Fetch {
                method: Method::Post,
                ..
            }
        ));
    }

    #[test]
    fn bad_creates_give_twilio_codes() {
        let ok = [("To", "+15558675310"), ("From", "+15005550006")];
        assert_eq!(
            code(&[("From", "+15005550006"), ("Twiml", "<Response/>")]),
            21201
        );
        assert_eq!(
            code(&[("To", "+15558675310"), ("Twiml", "<Response/>")]),
            21213
        );
        assert_eq!(code(&ok), 21205);
        assert_eq!(code(&[ok[0], ok[1], ("Url", "not a url")]), 21205);
        assert_eq!(
            code(&[("To", "+1asd"), ok[1], ("Twiml", "<Response/>")]),
            21211
        );
        assert_eq!(
            code(&[ok[0], ("From", "nope"), ("Twiml", "<Response/>")]),
            21212
        );
        assert_eq!(
            code(&[
                ok[0],
                ok[1],
                ("Twiml", "<Response/>"),
                ("MachineDetection", "Maybe")
            ]),
            20001
        );
        for (to, expected) in [
            ("+15005550001", 21217),
            ("+15005550002", 21214),
            ("+15005550003", 21215),
            ("+15005550004", 21216),
        ] {
            assert_eq!(
                code(&[("To", to), ok[1], ("Twiml", "<Response/>")]),
                expected
            );
        }
    }

    #[test]
    fn north_american_numbers_are_formatted() {
        assert_eq!(formatted("+15558675310"), "(555) 867-5310");
        assert_eq!(formatted("+447700900123"), "+447700900123");
    }
}
