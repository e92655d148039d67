//! Calls resource: `/2010-04-01/Accounts/{AccountSid}/Calls`.

use serde::{Deserialize, Serialize};

use super::{Form, Result, TwilioClient, push_opt};
use crate::HttpMethod;
use crate::mask::mask_phone;

/// `MachineDetection` (answering-machine detection) mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineDetection {
    /// `Enable`: report `AnsweredBy` as soon as Twilio has decided.
    Enable,
    /// `DetectMessageEnd`: for machines, wait for the greeting to end (to leave a voicemail).
    DetectMessageEnd,
}

impl MachineDetection {
    fn as_str(self) -> &'static str {
        match self {
            Self::Enable => "Enable",
            Self::DetectMessageEnd => "DetectMessageEnd",
        }
    }
}

/// Parameters of `POST …/Calls.json`.
///
/// Twilio requires `To`, `From` and one of `Url` / `Twiml`; `Twiml` is ignored when `Url` is also sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateCall {
    /// `To`: E.164 number, `client:name` or `sip:…`.
    pub to: String,
    /// `From`: one of the account's numbers.
    pub from: String,
    /// `Url`: TwiML fetched when the call is answered.
    pub url: Option<String>,
    /// `Method` for `Url` (Twilio's default POST).
    pub method: Option<HttpMethod>,
    /// `Twiml`: inline TwiML (≤ 4000 chars), instead of `Url`.
    pub twiml: Option<String>,
    /// `StatusCallback`: URL receiving call progress events.
    pub status_callback: Option<String>,
    /// `StatusCallbackMethod` (Twilio's default POST).
    pub status_callback_method: Option<HttpMethod>,
    /// `StatusCallbackEvent`: any of `initiated`, `ringing`, `answered`, `completed` (sent as a repeated
    /// field); none means `completed` only.
    pub status_callback_event: Vec<String>,
    /// `MachineDetection`.
    pub machine_detection: Option<MachineDetection>,
    /// `AsyncAmd`: connect at once and post `AnsweredBy` to `async_amd_status_callback` later.
    pub async_amd: Option<bool>,
    /// `AsyncAmdStatusCallback`.
    pub async_amd_status_callback: Option<String>,
    /// `Timeout`: seconds to let it ring (Twilio's default 60, max 600).
    pub timeout: Option<u32>,
    /// `TimeLimit`: maximum call length in seconds.
    pub time_limit: Option<u32>,
    /// `Record`: record the whole call.
    pub record: Option<bool>,
}

impl CreateCall {
    fn form(&self) -> Form {
        let mut form = vec![("To", self.to.clone()), ("From", self.from.clone())];
        push_opt(&mut form, "Url", self.url.as_ref());
        push_opt(&mut form, "Method", self.method.map(HttpMethod::as_str));
        push_opt(&mut form, "Twiml", self.twiml.as_ref());
        push_opt(&mut form, "StatusCallback", self.status_callback.as_ref());
        push_opt(
            &mut form,
            "StatusCallbackMethod",
            self.status_callback_method.map(HttpMethod::as_str),
        );
        form.extend(
            self.status_callback_event
                .iter()
                .map(|event| ("StatusCallbackEvent", event.clone())),
        );
        push_opt(
            &mut form,
            "MachineDetection",
            self.machine_detection.map(MachineDetection::as_str),
        );
        push_opt(&mut form, "AsyncAmd", self.async_amd);
        push_opt(
            &mut form,
            "AsyncAmdStatusCallback",
            self.async_amd_status_callback.as_ref(),
        );
        push_opt(&mut form, "Timeout", self.timeout);
        push_opt(&mut form, "TimeLimit", self.time_limit);
        push_opt(&mut form, "Record", self.record);
        form
    }
}

/// `Status` values accepted by `POST …/Calls/{sid}.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateCallStatus {
    /// `canceled`: hang up a call that is queued or ringing.
    Canceled,
    /// `completed`: hang up a call in progress.
    Completed,
}

impl UpdateCallStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Canceled => "canceled",
            Self::Completed => "completed",
        }
    }
}

/// Parameters of `POST …/Calls/{sid}.json`: end a call or redirect it to new TwiML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateCall {
    /// `Status`: end the call.
    pub status: Option<UpdateCallStatus>,
    /// `Url`: continue the call with the TwiML at this URL.
    pub url: Option<String>,
    /// `Method` for `Url`.
    pub method: Option<HttpMethod>,
    /// `Twiml`: continue the call with this TwiML.
    pub twiml: Option<String>,
}

impl UpdateCall {
    fn form(&self) -> Form {
        let mut form = Form::new();
        push_opt(
            &mut form,
            "Status",
            self.status.map(UpdateCallStatus::as_str),
        );
        push_opt(&mut form, "Url", self.url.as_ref());
        push_opt(&mut form, "Method", self.method.map(HttpMethod::as_str));
        push_opt(&mut form, "Twiml", self.twiml.as_ref());
        form
    }
}

/// Call status as Twilio reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CallStatus {
    /// `queued`: created, waiting for outbound capacity (1 call per second per account).
    Queued,
    /// `initiated` (status callbacks only).
    Initiated,
    /// `ringing`.
    Ringing,
    /// `in-progress`: answered.
    InProgress,
    /// `completed`: answered and ended normally.
    Completed,
    /// `busy`.
    Busy,
    /// `failed`: could not be placed (e.g. invalid number).
    Failed,
    /// `no-answer`.
    NoAnswer,
    /// `canceled`: ended while queued or ringing.
    Canceled,
    /// A status this crate does not know yet; treat as non-final.
    #[serde(other)]
    Unknown,
}

/// A Call resource as Twilio returns it. Numeric-looking fields are strings on the wire and stay strings;
/// dates are RFC 2822. Unknown fields are ignored.
///
/// `Debug` shows phone numbers: do not log it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// `CA…`.
    pub sid: String,
    /// Owning account.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// Parent call, for `<Dial>` legs.
    #[serde(default)]
    pub parent_call_sid: Option<String>,
    /// Callee.
    #[serde(default)]
    pub to: Option<String>,
    /// Callee, formatted for display.
    #[serde(default)]
    pub to_formatted: Option<String>,
    /// Caller.
    #[serde(default)]
    pub from: Option<String>,
    /// Caller, formatted for display.
    #[serde(default)]
    pub from_formatted: Option<String>,
    /// Twilio number involved (`PN…`).
    #[serde(default)]
    pub phone_number_sid: Option<String>,
    /// Current status.
    pub status: CallStatus,
    /// `inbound`, `outbound-api`, `outbound-dial`, `trunking-…`.
    #[serde(default)]
    pub direction: Option<String>,
    /// `human`, `machine_start`, `fax`, `unknown`, … when machine detection ran.
    #[serde(default)]
    pub answered_by: Option<String>,
    /// Answer time (RFC 2822).
    #[serde(default)]
    pub start_time: Option<String>,
    /// End time (RFC 2822).
    #[serde(default)]
    pub end_time: Option<String>,
    /// Length in seconds, as a string.
    #[serde(default)]
    pub duration: Option<String>,
    /// Milliseconds spent queued, as a string.
    #[serde(default)]
    pub queue_time: Option<String>,
    /// Price as a decimal string, null until known.
    #[serde(default)]
    pub price: Option<String>,
    /// Currency of `price`.
    #[serde(default)]
    pub price_unit: Option<String>,
    /// Forwarding number, when the carrier reports one.
    #[serde(default)]
    pub forwarded_from: Option<String>,
    /// Caller name (CNAM), when looked up.
    #[serde(default)]
    pub caller_name: Option<String>,
    /// Group the call belongs to.
    #[serde(default)]
    pub group_sid: Option<String>,
    /// SIP trunk, for trunking calls.
    #[serde(default)]
    pub trunk_sid: Option<String>,
    /// Creation time (RFC 2822).
    #[serde(default)]
    pub date_created: Option<String>,
    /// Last update time (RFC 2822).
    #[serde(default)]
    pub date_updated: Option<String>,
    /// `2010-04-01`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Resource path.
    #[serde(default)]
    pub uri: Option<String>,
}

/// Filters of `GET …/Calls.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCalls {
    /// `To`.
    pub to: Option<String>,
    /// `From`.
    pub from: Option<String>,
    /// `StartTime>`: calls started after this date (`YYYY-MM-DD`, Twilio's day granularity).
    pub started_after: Option<String>,
    /// `PageSize` (Twilio's maximum 1000).
    pub page_size: Option<u32>,
}

impl ListCalls {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(v) = &self.to {
            q.push(("To", v.clone()));
        }
        if let Some(v) = &self.from {
            q.push(("From", v.clone()));
        }
        if let Some(v) = &self.started_after {
            q.push(("StartTime>", v.clone()));
        }
        if let Some(v) = self.page_size {
            q.push(("PageSize", v.to_string()));
        }
        q
    }
}

/// One page of `GET …/Calls.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallPage {
    /// Calls on this page, newest first.
    #[serde(default)]
    pub calls: Vec<Call>,
    /// Path of the next page, `None` on the last one.
    #[serde(default)]
    pub next_page_uri: Option<String>,
}

impl TwilioClient {
    /// The first page of calls matching `filter` (`GET …/Calls.json`): how a retried dial finds
    /// a call an earlier attempt placed.
    pub async fn list_calls(&self, filter: &ListCalls) -> Result<CallPage> {
        let request = self
            .http
            .get(self.account_url(&["Calls.json"]))
            .query(&filter.query());
        self.execute(request).await
    }

    /// Places an outbound call (`POST …/Calls.json`, 201).
    pub async fn create_call(&self, params: &CreateCall) -> Result<Call> {
        tracing::debug!(to = %mask_phone(&params.to), "creating Twilio call");
        let request = self
            .http
            .post(self.account_url(&["Calls.json"]))
            .form(&params.form());
        let call: Call = self.execute(request).await?;
        tracing::debug!(sid = %call.sid, status = ?call.status, "Twilio call created");
        Ok(call)
    }

    /// Fetches one call (`GET …/Calls/{sid}.json`).
    pub async fn fetch_call(&self, sid: &str) -> Result<Call> {
        let path = format!("{sid}.json");
        let request = self.http.get(self.account_url(&["Calls", &path]));
        self.execute(request).await
    }

    /// Ends or redirects a live call (`POST …/Calls/{sid}.json`).
    pub async fn update_call(&self, sid: &str, params: &UpdateCall) -> Result<Call> {
        let path = format!("{sid}.json");
        let request = self
            .http
            .post(self.account_url(&["Calls", &path]))
            .form(&params.form());
        self.execute(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_form_repeats_events_and_spells_booleans_and_enums_like_twilio() {
        let params = CreateCall {
            to: "+15558675310".into(),
            from: "+15005550006".into(),
            url: Some("https://x/voice".into()),
            status_callback: Some("https://x/status".into()),
            status_callback_event: vec!["initiated".into(), "answered".into()],
            machine_detection: Some(MachineDetection::DetectMessageEnd),
            timeout: Some(20),
            record: Some(true),
            ..CreateCall::default()
        };

        let encoded = serde_urlencoded::to_string(params.form()).unwrap();

        assert_eq!(
            encoded,
            "To=%2B15558675310&From=%2B15005550006&Url=https%3A%2F%2Fx%2Fvoice\
             &StatusCallback=https%3A%2F%2Fx%2Fstatus&StatusCallbackEvent=initiated\
             &StatusCallbackEvent=answered&MachineDetection=DetectMessageEnd&Timeout=20&Record=true"
        );
    }

    #[test]
    fn call_json_parses_kebab_case_statuses() {
        let json = r#"{"sid":"CA1","status":"in-progress","direction":"outbound-api","duration":null,
            "queue_time":"0","subresource_uris":{"recordings":"/x"}}"#;

        let call: Call = serde_json::from_str(json).unwrap();
        let no_answer: Call =
            serde_json::from_str(r#"{"sid":"CA2","status":"no-answer"}"#).unwrap();

        assert_eq!(call.status, CallStatus::InProgress);
        assert_eq!(call.queue_time.as_deref(), Some("0"));
        assert_eq!(no_answer.status, CallStatus::NoAnswer);
    }
}
