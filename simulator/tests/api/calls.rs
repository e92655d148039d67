//! Voice: outbound and inbound calls through a TwiML application, scripted callees, status
//! callbacks, the calls-per-second limit and the call ledger.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use chrono::DateTime;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::helpers::{ACCOUNT_SID, AUTH_TOKEN, Received, TestApp, WAIT, spawn_app_with};

const FROM: &str = "+15005550006";
const TO: &str = "+15558675310";

/// Fast simulated time and no dialling limit unless a test sets one.
async fn spawn_voice_sim() -> TestApp {
    spawn_app_with(|config| {
        config.calls_per_second = 0;
        config.call_ring_ms = 10;
        config.call_second_ms = 1;
    })
    .await
}

type Script = dyn Fn(&str) -> (u16, String) + Send + Sync;

/// "Our" application: answers each path with the TwiML `script` gives and records requests.
struct VoiceApp {
    base_url: String,
    requests: mpsc::UnboundedReceiver<Received>,
    shutdown: CancellationToken,
}

#[derive(Clone)]
struct VoiceState {
    base_url: String,
    sender: mpsc::UnboundedSender<Received>,
    script: Arc<Script>,
}

async fn spawn_voice_app(
    script: impl Fn(&str) -> (u16, String) + Send + Sync + 'static,
) -> VoiceApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let (sender, requests) = mpsc::unbounded_channel();
    let state = VoiceState {
        base_url: base_url.clone(),
        sender,
        script: Arc::new(script),
    };
    let app = Router::new()
        .route("/{*path}", post(answer))
        .with_state(state);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .unwrap();
    });
    VoiceApp {
        base_url,
        requests,
        shutdown,
    }
}

async fn answer(
    State(state): State<VoiceState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
    let _ = state.sender.send(Received {
        url: format!("{}{uri}", state.base_url),
        headers,
        params,
    });
    let (status, twiml) = (state.script)(uri.path());
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "text/xml")],
        twiml,
    )
}

impl VoiceApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn drain(&mut self) -> Vec<Received> {
        let mut received = Vec::new();
        while let Ok(request) = self.requests.try_recv() {
            received.push(request);
        }
        received
    }
}

impl Drop for VoiceApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn twiml(body: &str) -> (u16, String) {
    (
        200,
        format!(r#"<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>"#),
    )
}

impl TestApp {
    fn calls_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json",
            self.base_url
        )
    }

    fn call_url(&self, sid: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json",
            self.base_url
        )
    }

    async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(url)
            .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
            .form(form)
            .send()
            .await
            .unwrap();
        crate::helpers::status_and_json(response).await
    }

    async fn create_call(&self, form: &[(&str, &str)]) -> Value {
        let (status, call) = self.post_form(&self.calls_url(), form).await;
        assert_eq!(status, StatusCode::CREATED, "{call}");
        call
    }

    /// Polls the ledger until the call has ended, or panics after [`WAIT`].
    pub(crate) async fn wait_for_call_end(&self, sid: &str) -> Value {
        self.wait_for_call(sid, |call| !call["ended_at"].is_null())
            .await
    }

    async fn wait_for_call(&self, sid: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let call = self.admin_get(&format!("calls/{sid}")).await;
            if done(&call) {
                return call;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call {sid} never reached the expected state: {call}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn script_callee(&self, number: &str, script: Value) {
        let (status, body) = self
            .admin_send(Method::PUT, &format!("callees/{number}"), script)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

fn events(call: &Value) -> Vec<(String, String, String)> {
    call["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["kind"].as_str().unwrap().to_owned(),
                event["speaker"].as_str().unwrap().to_owned(),
                event["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn event(kind: &str, speaker: &str, text: &str) -> (String, String, String) {
    (kind.to_owned(), speaker.to_owned(), text.to_owned())
}

fn by_path<'a>(requests: &'a [Received], path: &str) -> Vec<&'a Received> {
    requests
        .iter()
        .filter(|request| request.url.split('?').next().unwrap().ends_with(path))
        .collect()
}

/// A three-question survey: each answer moves to the next question.
fn survey(path: &str) -> (u16, String) {
    match path {
        "/voice" => twiml(
            r#"<Gather input="speech" action="/turn/1" timeout="2"><Say voice="Polly.Joanna">Can you talk?</Say></Gather><Say>We did not hear you.</Say>"#,
        ),
        "/turn/1" => twiml(
            r#"<Gather input="speech dtmf" action="/turn/2"><Say>When suits you?</Say></Gather>"#,
        ),
        "/turn/2" => twiml(
            r#"<Gather input="speech" action="/turn/3"><Say>Anything else?</Say></Gather><Say>Goodbye.</Say>"#,
        ),
        "/turn/3" => twiml("<Say>Thanks.</Say><Hangup/>"),
        _ => (404, String::new()),
    }
}

#[tokio::test]
async fn an_outbound_call_to_a_human_runs_the_gather_conversation_with_signed_callbacks_in_twilio_order()
 {
    // Arrange
    let app = spawn_voice_sim().await;
    let mut voice = spawn_voice_app(survey).await;
    app.script_callee(
        TO,
        json!({"behaviour": "human", "lines": ["yes", {"speech": "tomorrow at 3", "confidence": 0.8}]}),
    )
    .await;

    // Act
    let created = app
        .create_call(&[
            ("To", TO),
            ("From", FROM),
            ("Url", &voice.url("/voice")),
            ("StatusCallback", &voice.url("/status")),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
        ])
        .await;
    let sid = created["sid"].as_str().unwrap().to_owned();
    let call = app.wait_for_call_end(&sid).await;
    // The completed callback follows the ledger update.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut requests = Vec::new();
    while by_path(&requests, "/status").len() < 4 {
        requests.extend(voice.drain());
        assert!(tokio::time::Instant::now() < deadline, "callbacks missing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Assert: the REST answer.
    assert!(sid.starts_with("CA") && sid.len() == 34, "{created}");
    assert_eq!(created["status"], "queued");
    assert_eq!(created["direction"], "outbound-api");
    assert_eq!(created["to_formatted"], "(555) 867-5310");
    assert_eq!(created["api_version"], "2010-04-01");
    assert_eq!(
        created["uri"],
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json")
    );
    // The conversation.
    assert_eq!(call["status"], "completed");
    assert_eq!(call["answered_by"], Value::Null);
    assert_eq!(
        events(&call),
        vec![
            event("gather", "system", ""),
            event("say", "agent", "Can you talk?"),
            event("speech", "callee", "yes"),
            event("gather", "system", ""),
            event("say", "agent", "When suits you?"),
            event("speech", "callee", "tomorrow at 3"),
            event("gather", "system", ""),
            event("say", "agent", "Anything else?"),
            event("silence", "callee", ""),
            event("say", "agent", "Goodbye."),
        ]
    );
    assert_eq!(call["events"][1]["voice"], "Polly.Joanna");
    // The webhooks: answer, then one action per answered Gather.
    let webhooks: Vec<&Received> = requests
        .iter()
        .filter(|r| !r.url.ends_with("/status"))
        .collect();
    let paths: Vec<&str> = webhooks
        .iter()
        .map(|r| r.url.trim_start_matches(&voice.base_url))
        .collect();
    assert_eq!(paths, ["/voice", "/turn/1", "/turn/2"]);
    assert_eq!(webhooks[0].param("CallStatus"), Some("in-progress"));
    assert_eq!(webhooks[0].param("Direction"), Some("outbound-api"));
    assert_eq!(webhooks[0].param("CallSid"), Some(sid.as_str()));
    assert_eq!(webhooks[0].param("SpeechResult"), None);
    assert_eq!(webhooks[1].param("SpeechResult"), Some("yes"));
    assert_eq!(webhooks[1].param("Confidence"), Some("0.9"));
    assert_eq!(webhooks[2].param("SpeechResult"), Some("tomorrow at 3"));
    assert_eq!(webhooks[2].param("Confidence"), Some("0.8"));
    // Status callbacks, in order, numbered from 0.
    let callbacks = by_path(&requests, "/status");
    let statuses: Vec<(&str, &str)> = callbacks
        .iter()
        .map(|r| {
            (
                r.param("CallStatus").unwrap(),
                r.param("SequenceNumber").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("initiated", "0"),
            ("ringing", "1"),
            ("in-progress", "2"),
            ("completed", "3")
        ]
    );
    let completed = callbacks[3].params_map();
    assert_eq!(completed["CallbackSource"], "call-progress-events");
    assert!(completed["CallDuration"].parse::<u64>().is_ok());
    assert!(completed.contains_key("Duration"));
    assert!(completed["Timestamp"].ends_with("+0000"));
    assert!(
        requests.iter().all(Received::signature_is_valid),
        "every webhook is signed with the auth token"
    );
    assert!(
        webhooks[0]
            .header("content-type")
            .unwrap()
            .contains("charset=UTF-8")
    );
    // The REST view agrees.
    let (_, fetched) = app.get_json(&app.call_url(&sid)).await;
    assert_eq!(fetched["status"], "completed");
    assert!(fetched["end_time"].as_str().unwrap().ends_with("+0000"));
}

#[tokio::test]
async fn a_machine_with_detect_message_end_is_answered_by_machine_end_beep_and_keeps_the_voicemail()
{
    let app = spawn_voice_sim().await;
    let mut voice = spawn_voice_app(|path| match path {
        "/voice" => twiml(
            r#"<Gather input="speech" action="/reply"><Say>Hi, this is the clinic.</Say></Gather><Say>Please call us back.</Say>"#,
        ),
        _ => (404, String::new()),
    })
    .await;
    app.script_callee(TO, json!({"behaviour": "machine"})).await;

    let created = app
        .create_call(&[
            ("To", TO),
            ("From", FROM),
            ("Url", &voice.url("/voice")),
            ("MachineDetection", "DetectMessageEnd"),
        ])
        .await;
    let call = app
        .wait_for_call_end(created["sid"].as_str().unwrap())
        .await;

    assert_eq!(call["answered_by"], "machine_end_beep");
    assert_eq!(call["status"], "completed");
    assert_eq!(
        call["voicemail"],
        "Hi, this is the clinic. Please call us back."
    );
    let last = events(&call).pop().unwrap();
    assert_eq!(
        last,
        event(
            "voicemail",
            "agent",
            "Hi, this is the clinic. Please call us back."
        )
    );
    let requests = voice.drain();
    assert_eq!(requests.len(), 1, "a machine never answers the Gather");
    assert_eq!(requests[0].param("AnsweredBy"), Some("machine_end_beep"));
}

#[tokio::test]
async fn busy_unanswered_and_failed_callees_never_connect_and_end_with_their_status() {
    let app = spawn_voice_sim().await;
    let mut voice = spawn_voice_app(|_| twiml("<Say>hello</Say>")).await;
    let cases = [
        ("+15558670001", "busy", "busy"),
        ("+15558670002", "no_answer", "no-answer"),
        ("+15558670003", "failed", "failed"),
    ];
    for (number, behaviour, _) in cases {
        app.script_callee(number, json!({ "behaviour": behaviour }))
            .await;
    }

    for (number, _, expected) in cases {
        let created = app
            .create_call(&[
                ("To", number),
                ("From", FROM),
                ("Url", &voice.url("/voice")),
                ("StatusCallback", &voice.url("/status")),
                ("Timeout", "30"),
            ])
            .await;
        let call = app
            .wait_for_call_end(created["sid"].as_str().unwrap())
            .await;
        assert_eq!(call["status"], expected, "{call}");
        assert_eq!(call["answered_at"], Value::Null);
    }

    let deadline = tokio::time::Instant::now() + WAIT;
    let mut requests = Vec::new();
    while requests.len() < 3 {
        requests.extend(voice.drain());
        assert!(tokio::time::Instant::now() < deadline, "callbacks missing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let statuses: Vec<&str> = requests
        .iter()
        .map(|r| {
            assert!(r.url.ends_with("/status"), "no TwiML is fetched");
            r.param("CallStatus").unwrap()
        })
        .collect();
    assert_eq!(statuses, ["busy", "no-answer", "failed"]);
    assert!(
        requests
            .iter()
            .all(|r| r.param("CallDuration") == Some("0"))
    );
}

#[tokio::test]
async fn posting_status_completed_hangs_up_a_call_in_progress() {
    let app = spawn_voice_sim().await;
    let voice = spawn_voice_app(|_| {
        twiml(r#"<Gather input="speech" action="/next"><Say>Take your time.</Say></Gather>"#)
    })
    .await;
    // The callee thinks for a minute, so the call sits in the Gather.
    app.script_callee(TO, json!({"lines": ["hm"], "think_ms": 60_000}))
        .await;
    let created = app
        .create_call(&[("To", TO), ("From", FROM), ("Url", &voice.url("/voice"))])
        .await;
    let sid = created["sid"].as_str().unwrap();
    app.wait_for_call(sid, |call| {
        events(call).iter().any(|(kind, _, _)| kind == "say")
    })
    .await;

    let (status, updated) = app
        .post_form(&app.call_url(sid), &[("Status", "completed")])
        .await;

    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["status"], "completed");
    let call = app.admin_get(&format!("calls/{sid}")).await;
    assert_eq!(call["status"], "completed");
    assert!(!call["answered_at"].is_null());
    // Unknown calls are Twilio's 404.
    let (status, missing) = app
        .post_form(
            &app.call_url("CAffffffffffffffffffffffffffffffff"),
            &[("Status", "completed")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["code"], 20404);
}

#[tokio::test]
async fn queued_calls_are_dialled_in_order_at_the_calls_per_second_limit() {
    let app = spawn_voice_sim().await;
    let voice = spawn_voice_app(|_| twiml("<Hangup/>")).await;
    let (status, faults) = app
        .admin_send(Method::PUT, "faults", json!({"calls_per_second": 2}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(faults["calls_per_second"], 2);

    let mut sids = Vec::new();
    for _ in 0..3 {
        let created = app
            .create_call(&[("To", TO), ("From", FROM), ("Url", &voice.url("/voice"))])
            .await;
        assert_eq!(created["status"], "queued");
        sids.push(created["sid"].as_str().unwrap().to_owned());
    }
    let mut dialled = Vec::new();
    for sid in &sids {
        let call = app.wait_for_call_end(sid).await;
        dialled.push(DateTime::parse_from_rfc3339(call["dialled_at"].as_str().unwrap()).unwrap());
    }

    for pair in dialled.windows(2) {
        let gap = (pair[1] - pair[0]).num_milliseconds();
        // Never faster than the limit; the upper bound only tolerates a loaded machine.
        assert!((450..1500).contains(&gap), "calls dialled {gap} ms apart");
    }
    let ledger = app.admin_get("calls?to=%2B15558675310").await;
    assert_eq!(ledger["total"], 3);
}

#[tokio::test]
async fn an_inbound_call_rings_our_voice_url_and_talks_through_the_caller_script() {
    let app = spawn_voice_sim().await;
    let mut voice = spawn_voice_app(|path| match path {
        "/incoming" => twiml(
            r#"<Gather input="dtmf" numDigits="1" action="/menu"><Say>Press 1 for sales.</Say></Gather>"#,
        ),
        "/menu" => twiml("<Dial><Number>+15558670099</Number></Dial>"),
        _ => (404, String::new()),
    })
    .await;
    let (status, _) = app
        .admin_send(
            Method::PUT,
            &format!("numbers/{FROM}"),
            json!({"voice_url": voice.url("/incoming"), "voice_status_callback": voice.url("/status")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, placed) = app
        .admin_send(
            Method::POST,
            "calls/inbound",
            json!({"from": TO, "to": FROM, "lines": [{"digits": "1"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{placed}");
    let sid = placed["call_sid"].as_str().unwrap();
    let call = app.wait_for_call_end(sid).await;

    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["status"], "completed");
    assert_eq!(call["transfers"], json!(["+15558670099"]));
    assert_eq!(
        events(&call),
        vec![
            event("gather", "system", ""),
            event("say", "agent", "Press 1 for sales."),
            event("digits", "callee", "1"),
            event("dial", "agent", "+15558670099"),
        ]
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut requests = Vec::new();
    while by_path(&requests, "/status").is_empty() {
        requests.extend(voice.drain());
        assert!(
            tokio::time::Instant::now() < deadline,
            "no completed callback"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first: HashMap<&str, &str> = requests[0].params_map();
    assert_eq!(first["CallStatus"], "ringing");
    assert_eq!(first["Direction"], "inbound");
    assert_eq!(first["From"], TO);
    assert_eq!(requests[1].param("Digits"), Some("1"));
    assert_eq!(requests[1].param("CallStatus"), Some("in-progress"));
    assert_eq!(requests[2].param("CallStatus"), Some("completed"));
    assert!(requests.iter().all(Received::signature_is_valid));
}

#[tokio::test]
async fn a_webhook_answering_500_ends_the_call_with_error_11200_and_bad_twiml_with_12100() {
    let app = spawn_voice_sim().await;
    let voice = spawn_voice_app(|path| match path {
        "/broken" => (500, "oops".to_owned()),
        _ => (200, "<Response><Say>unclosed</Response>".to_owned()),
    })
    .await;

    let broken = app
        .create_call(&[("To", TO), ("From", FROM), ("Url", &voice.url("/broken"))])
        .await;
    let garbled = app
        .create_call(&[("To", TO), ("From", FROM), ("Url", &voice.url("/garbled"))])
        .await;
    let broken = app.wait_for_call_end(broken["sid"].as_str().unwrap()).await;
    let garbled = app
        .wait_for_call_end(garbled["sid"].as_str().unwrap())
        .await;

    assert_eq!(broken["error_code"], 11200);
    assert_eq!(broken["status"], "completed");
    let last = broken["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "error");
    assert_eq!(last["error_code"], 11200);
    assert_eq!(garbled["error_code"], 12100);
}

#[tokio::test]
async fn invalid_call_creates_get_twilio_error_codes() {
    let app = spawn_voice_sim().await;
    let url = "http://127.0.0.1:9/voice";
    let cases: [(&[(&str, &str)], u32); 5] = [
        (&[("From", FROM), ("Url", url)], 21201),
        (&[("To", TO), ("Url", url)], 21213),
        (&[("To", TO), ("From", FROM)], 21205),
        (&[("To", "+1asd"), ("From", FROM), ("Url", url)], 21211),
        (&[("To", TO), ("From", "+15005550001"), ("Url", url)], 21212),
    ];
    for (form, code) in cases {
        let (status, body) = app.post_form(&app.calls_url(), form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(
            body["more_info"],
            format!("https://www.twilio.com/docs/errors/{code}")
        );
    }
    let (status, body) = app
        .get_json(&app.call_url("CAffffffffffffffffffffffffffffffff"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], 20404);
}

#[tokio::test]
async fn reset_forgets_calls_and_callees() {
    let app = spawn_voice_sim().await;
    app.script_callee(TO, json!({"behaviour": "busy"})).await;
    app.create_call(&[("To", TO), ("From", FROM), ("Twiml", "<Response/>")])
        .await;

    let (status, _) = app.admin_send(Method::POST, "reset", json!({})).await;

    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.admin_get("calls").await["total"], 0);
    assert_eq!(app.admin_get("callees").await["callees"], json!({}));
    let (_, list) = app.get_json(&app.calls_url()).await;
    assert_eq!(list["calls"], json!([]));
}

#[tokio::test]
async fn a_callee_who_hangs_up_mid_call_ends_it_completed_after_its_turns() {
    let app = spawn_voice_sim().await;
    let voice = spawn_voice_app(|path| match path {
        "/voice" => twiml(r#"<Gather input="speech" action="/two"><Say>One?</Say></Gather>"#),
        "/two" => twiml(r#"<Gather input="speech" action="/three"><Say>Two?</Say></Gather>"#),
        _ => twiml("<Say>Three.</Say>"),
    })
    .await;
    app.script_callee(
        TO,
        json!({"behaviour": "hangup_mid_call", "lines": ["one", "two"], "hangup_after_turns": 1}),
    )
    .await;

    let created = app
        .create_call(&[("To", TO), ("From", FROM), ("Url", &voice.url("/voice"))])
        .await;
    let call = app
        .wait_for_call_end(created["sid"].as_str().unwrap())
        .await;

    assert_eq!(call["status"], "completed");
    assert_eq!(
        events(&call),
        vec![
            event("gather", "system", ""),
            event("say", "agent", "One?"),
            event("speech", "callee", "one"),
            event("gather", "system", ""),
            event("say", "agent", "Two?"),
            event("hangup", "callee", ""),
        ]
    );
}

#[tokio::test]
async fn posting_twiml_to_a_live_call_redirects_it() {
    let app = spawn_voice_sim().await;
    let voice = spawn_voice_app(|_| {
        twiml(r#"<Gather input="speech" action="/next"><Say>Waiting.</Say></Gather>"#)
    })
    .await;
    app.script_callee(TO, json!({"lines": ["hm"], "think_ms": 60_000}))
        .await;
    let created = app
        .create_call(&[("To", TO), ("From", FROM), ("Url", &voice.url("/voice"))])
        .await;
    let sid = created["sid"].as_str().unwrap();
    app.wait_for_call(sid, |call| {
        events(call).iter().any(|(kind, _, _)| kind == "say")
    })
    .await;

    let (status, body) = app
        .post_form(
            &app.call_url(sid),
            &[(
                "Twiml",
                "<Response><Say>Sorry, we must go.</Say></Response>",
            )],
        )
        .await;
    let call = app.wait_for_call_end(sid).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(call["status"], "completed");
    assert_eq!(
        events(&call).last().unwrap(),
        &event("say", "agent", "Sorry, we must go.")
    );
    let (status, refused) = app
        .post_form(&app.call_url(sid), &[("Url", &voice.url("/voice"))])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["code"], 21220);
}

#[tokio::test]
async fn the_calls_list_filters_and_pages_like_twilio() {
    let app = spawn_voice_sim().await;
    let other = "+15558675311";
    let mut ours = Vec::new();
    for to in [TO, other, TO, TO] {
        let call = app
            .create_call(&[("To", to), ("From", FROM), ("Twiml", "<Response/>")])
            .await;
        if to == TO {
            ours.push(call["sid"].as_str().unwrap().to_owned());
        }
    }
    let (status, page) = app
        .get_json(&format!("{}?To=%2B15558675310&PageSize=2", app.calls_url()))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let first: Vec<&str> = page["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["sid"].as_str().unwrap())
        .collect();
    // Newest first, only the filtered number, two per page.
    assert_eq!(first, [ours[2].as_str(), ours[1].as_str()]);
    let next = page["next_page_uri"].as_str().expect("a next page");
    assert!(
        next.contains("To=%2B15558675310") && next.contains("PageSize=2"),
        "{next}"
    );
    let (_, second) = app.get_json(&format!("{}{next}", app.base_url)).await;
    let rest: Vec<&str> = second["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["sid"].as_str().unwrap())
        .collect();
    assert_eq!(rest, [ours[0].as_str()]);
    assert!(second["next_page_uri"].is_null(), "{second}");

    // The typed client (what a retried dial reconciles with) reads the same list.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client =
        voice_agent_twilio::client::TwilioClient::new(voice_agent_twilio::client::TwilioConfig {
            base_url: app.base_url.parse().unwrap(),
            timeout: Duration::from_secs(10),
            ..voice_agent_twilio::client::TwilioConfig::new(
                ACCOUNT_SID,
                voice_agent_twilio::client::Auth::AuthToken(AUTH_TOKEN.to_owned().into()),
            )
        })
        .unwrap();
    let listed = client
        .list_calls(&voice_agent_twilio::client::ListCalls {
            to: Some(TO.to_owned()),
            from: Some(FROM.to_owned()),
            started_after: Some("2000-01-01".to_owned()),
            page_size: Some(100),
        })
        .await
        .unwrap();
    let sids: Vec<&str> = listed.calls.iter().map(|c| c.sid.as_str()).collect();
    assert_eq!(sids, [ours[2].as_str(), ours[1].as_str(), ours[0].as_str()]);
    // Reconciliation compares creation times: RFC 2822, as Twilio writes them.
    let created = listed.calls[0].date_created.as_deref().unwrap();
    assert!(DateTime::parse_from_rfc2822(created).is_ok(), "{created}");

    let (status, error) = app
        .get_json(&format!("{}?PageSize=0", app.calls_url()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], json!(20007), "{error}");
}
