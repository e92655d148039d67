//! WhatsApp over the Messages resource: the 24-hour session window, Content templates,
//! read receipts and inbound WhatsApp webhooks.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ACCOUNT_SID, Received, Receiver, TestApp, spawn_app_with, spawn_receiver};

const SENDER: &str = "whatsapp:+15005550006";
const USER: &str = "whatsapp:+15558675310";
const TEMPLATE: &str = "HXbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// An app whose inbound messages go to `receiver`'s `/twilio/sms`.
async fn app_with_inbound(receiver: &Receiver) -> TestApp {
    let url = receiver.url("/twilio/sms");
    spawn_app_with(|config| config.default_sms_url = Some(url.parse().unwrap())).await
}

/// Creates a WhatsApp message from SENDER to USER reporting to `receiver`.
async fn send(app: &TestApp, receiver: &Receiver, extra: &[(&str, &str)]) -> (StatusCode, Value) {
    let callback = receiver.url("/twilio/status");
    let mut form = vec![
        ("To", USER),
        ("From", SENDER),
        ("StatusCallback", &callback),
    ];
    form.extend_from_slice(extra);
    app.create_message(&form).await
}

/// The callbacks of one message, in order, until `last` arrives.
async fn callbacks_until(receiver: &mut Receiver, sid: &str, last: &str) -> Vec<Received> {
    let mut callbacks = Vec::new();
    loop {
        let request = receiver.next().await;
        if request.param("MessageSid") != Some(sid) {
            continue;
        }
        let done = request.param("MessageStatus") == Some(last);
        callbacks.push(request);
        if done {
            return callbacks;
        }
    }
}

fn statuses(callbacks: &[Received]) -> Vec<&str> {
    callbacks
        .iter()
        .map(|c| c.param("MessageStatus").unwrap())
        .collect()
}

#[tokio::test]
async fn a_free_form_message_to_a_user_who_never_wrote_is_accepted_then_fails_with_63016() {
    let app = crate::helpers::spawn_app().await;
    let mut receiver = spawn_receiver().await;

    let (status, created) = send(&app, &receiver, &[("Body", "Hello there")]).await;
    let sid = created["sid"].as_str().unwrap();
    let callbacks = callbacks_until(&mut receiver, sid, "failed").await;

    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "queued");
    assert_eq!(created["to"], USER);
    assert_eq!(created["from"], SENDER);
    assert_eq!(statuses(&callbacks), ["failed"]);
    let failed = &callbacks[0];
    assert!(failed.signature_is_valid());
    assert_eq!(failed.param("ErrorCode"), Some("63016"));
    assert_eq!(failed.param("ChannelPrefix"), Some("whatsapp"));
    assert_eq!(failed.param("ChannelToAddress"), Some("+15558675310"));
    let fetched = app.wait_for_message(sid, |m| m["status"] == "failed").await;
    assert_eq!(fetched["error_code"], 63016);
    assert!(
        fetched["error_message"]
            .as_str()
            .unwrap()
            .contains("outside the allowed window")
    );
    let ledger = app.admin_get("ledger?to=whatsapp%3A%2B15558675310").await;
    assert_eq!(ledger["messages"][0]["status"], "failed");
    assert_eq!(ledger["messages"][0]["error_code"], 63016);
}

#[tokio::test]
async fn an_inbound_whatsapp_message_reaches_the_webhook_as_twilio_sends_it_and_opens_the_window() {
    let mut receiver = spawn_receiver().await;
    let app = app_with_inbound(&receiver).await;

    let (status, injected) = app
        .admin_send(
            Method::POST,
            "inbound",
            json!({"from": USER, "to": SENDER, "body": "Hi, is my order ready?", "profile_name": "Ana"}),
        )
        .await;
    let inbound = receiver.next().await;
    let (_, reply) = send(&app, &receiver, &[("Body", "Yes, it ships today")]).await;
    let sid = reply["sid"].as_str().unwrap();
    let callbacks = callbacks_until(&mut receiver, sid, "read").await;

    assert_eq!(status, StatusCode::OK, "{injected}");
    assert!(inbound.signature_is_valid());
    let params = inbound.params_map();
    assert_eq!(params["From"], USER);
    assert_eq!(params["To"], SENDER);
    assert_eq!(params["WaId"], "15558675310");
    assert_eq!(params["ProfileName"], "Ana");
    assert_eq!(params["MessageType"], "text");
    assert_eq!(params["SmsStatus"], "received");
    assert_eq!(params["NumMedia"], "0");
    assert_eq!(params["NumSegments"], "1");
    assert_eq!(params["AccountSid"], ACCOUNT_SID);
    assert!(
        !params.contains_key("FromCountry"),
        "WhatsApp has no geo fields"
    );
    let metadata: Value = serde_json::from_str(params["ChannelMetadata"]).unwrap();
    assert_eq!(metadata["type"], "whatsapp");
    assert_eq!(metadata["data"]["context"]["WaId"], "15558675310");

    assert_eq!(statuses(&callbacks), ["sent", "delivered", "read"]);
    let install_sid = callbacks[0].param("ChannelInstallSid").unwrap();
    assert!(install_sid.starts_with("XE") && install_sid.len() == 34);
    for callback in &callbacks {
        assert!(callback.signature_is_valid());
        assert_eq!(callback.param("ChannelPrefix"), Some("whatsapp"));
        assert_eq!(callback.param("ChannelToAddress"), Some("+15558675310"));
        assert_eq!(callback.param("ChannelInstallSid"), Some(install_sid));
        assert_eq!(callback.param("To"), Some(USER));
        assert_eq!(callback.param("From"), Some(SENDER));
        assert_eq!(callback.param("ErrorCode"), None);
        assert_eq!(callback.param("RawDlrDoneDate"), None);
    }
    assert_eq!(callbacks[0].param("StructuredMessage"), Some("false"));
    assert_eq!(callbacks[1].param("EventType"), Some("DELIVERED"));
    assert_eq!(callbacks[2].param("EventType"), Some("READ"));
    let fetched = app.wait_for_message(sid, |m| m["status"] == "read").await;
    assert_eq!(fetched["num_segments"], "1");
}

#[tokio::test]
async fn the_window_closes_24_hours_after_the_last_inbound_message_on_the_simulated_clock() {
    let mut receiver = spawn_receiver().await;
    let app = app_with_inbound(&receiver).await;
    app.admin_send(
        Method::POST,
        "inbound",
        json!({"from": USER, "to": SENDER, "body": "hi"}),
    )
    .await;
    receiver.next().await;

    let (status, clock) = app
        .admin_send(
            Method::PUT,
            "clock",
            json!({"offset_seconds": 24 * 3600 + 1}),
        )
        .await;
    let sessions = app.admin_get("whatsapp/sessions").await;
    let (_, late) = send(&app, &receiver, &[("Body", "still there?")]).await;
    let late_callbacks =
        callbacks_until(&mut receiver, late["sid"].as_str().unwrap(), "failed").await;
    app.admin_send(Method::PUT, "clock", json!({"offset_seconds": 23 * 3600}))
        .await;
    let (_, early) = send(&app, &receiver, &[("Body", "still there?")]).await;
    let early_callbacks =
        callbacks_until(&mut receiver, early["sid"].as_str().unwrap(), "read").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(clock["offset_seconds"], 24 * 3600 + 1);
    assert_eq!(sessions["sessions"][0]["from"], USER);
    assert_eq!(sessions["sessions"][0]["to"], SENDER);
    assert_eq!(sessions["sessions"][0]["open"], false);
    assert_eq!(late_callbacks[0].param("ErrorCode"), Some("63016"));
    assert_eq!(statuses(&early_callbacks), ["sent", "delivered", "read"]);
}

#[tokio::test]
async fn session_windows_can_be_opened_moved_and_closed_through_the_admin_api() {
    let app = crate::helpers::spawn_app().await;
    let mut receiver = spawn_receiver().await;
    let two_days_ago = (chrono::Utc::now() - chrono::TimeDelta::hours(48)).to_rfc3339();

    // Opened now (no time given); numbers may omit the whatsapp: prefix.
    let (status, opened) = app
        .admin_send(
            Method::PUT,
            "whatsapp/sessions",
            json!({"from": "+15558675310", "to": SENDER}),
        )
        .await;
    let (_, inside) = send(&app, &receiver, &[("Body", "inside")]).await;
    let inside = callbacks_until(&mut receiver, inside["sid"].as_str().unwrap(), "read").await;
    let (_, moved) = app
        .admin_send(
            Method::PUT,
            "whatsapp/sessions",
            json!({"from": USER, "to": SENDER, "last_inbound_at": two_days_ago}),
        )
        .await;
    let (_, after_move) = send(&app, &receiver, &[("Body", "outside")]).await;
    let after_move =
        callbacks_until(&mut receiver, after_move["sid"].as_str().unwrap(), "failed").await;
    app.admin_send(
        Method::PUT,
        "whatsapp/sessions",
        json!({"from": USER, "to": SENDER}),
    )
    .await;
    let (_, closed) = app
        .admin_send(
            Method::PUT,
            "whatsapp/sessions",
            json!({"from": USER, "to": SENDER, "last_inbound_at": null}),
        )
        .await;
    let (_, after_close) = send(&app, &receiver, &[("Body", "closed")]).await;
    let after_close = callbacks_until(
        &mut receiver,
        after_close["sid"].as_str().unwrap(),
        "failed",
    )
    .await;
    let (bad, _) = app
        .admin_send(
            Method::PUT,
            "whatsapp/sessions",
            json!({"from": "not a number", "to": SENDER}),
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{opened}");
    assert_eq!(opened["from"], USER);
    assert_eq!(opened["open"], true);
    assert!(opened["expires_at"].is_string());
    assert_eq!(statuses(&inside), ["sent", "delivered", "read"]);
    assert_eq!(moved["open"], false);
    assert_eq!(after_move[0].param("ErrorCode"), Some("63016"));
    assert_eq!(closed["open"], false);
    assert_eq!(closed["last_inbound_at"], Value::Null);
    assert_eq!(after_close[0].param("ErrorCode"), Some("63016"));
    assert_eq!(bad, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.admin_get("whatsapp/sessions").await["sessions"],
        json!([])
    );
}

#[tokio::test]
async fn template_messages_go_out_outside_the_window_and_are_rendered_when_registered() {
    let app = crate::helpers::spawn_app().await;
    let mut receiver = spawn_receiver().await;
    let (status, template) = app
        .admin_send(
            Method::PUT,
            &format!("content/{TEMPLATE}"),
            json!({"body": "Hi {{1}}, your appointment is on {{2}} at {{3}}.", "variables": {"3": "noon"}}),
        )
        .await;
    let unregistered = "HXcccccccccccccccccccccccccccccccc";

    let (created_status, created) = send(
        &app,
        &receiver,
        &[
            ("ContentSid", TEMPLATE),
            ("ContentVariables", r#"{"1": "Ana", "2": "12/1"}"#),
        ],
    )
    .await;
    let sid = created["sid"].as_str().unwrap();
    let callbacks = callbacks_until(&mut receiver, sid, "read").await;
    let (_, plain) = send(&app, &receiver, &[("ContentSid", unregistered)]).await;
    callbacks_until(&mut receiver, plain["sid"].as_str().unwrap(), "read").await;
    let ledger = app.admin_get("ledger?to=whatsapp%3A%2B15558675310").await;

    assert_eq!(status, StatusCode::OK, "{template}");
    assert_eq!(template["sid"], TEMPLATE);
    assert_eq!(created_status, StatusCode::CREATED, "{created}");
    let rendered = "Hi Ana, your appointment is on 12/1 at noon.";
    assert_eq!(created["body"], rendered);
    assert_eq!(statuses(&callbacks), ["sent", "delivered", "read"]);
    let entry = &ledger["messages"][0];
    assert_eq!(entry["body"], rendered);
    assert_eq!(entry["content_sid"], TEMPLATE);
    assert_eq!(entry["content_variables"], r#"{"1": "Ana", "2": "12/1"}"#);
    assert_eq!(entry["status"], "read");
    let entry = &ledger["messages"][1];
    assert_eq!(entry["content_sid"], unregistered);
    assert_eq!(entry["content_variables"], Value::Null);
    assert_eq!(entry["body"], "");
    assert_eq!(
        app.admin_get("content").await["templates"][TEMPLATE]["body"],
        "Hi {{1}}, your appointment is on {{2}} at {{3}}."
    );
}

#[tokio::test]
async fn bad_content_sids_variables_and_mixed_channels_get_twilio_codes() {
    let app = crate::helpers::spawn_app().await;
    let cases: [(&[(&str, &str)], u64); 5] = [
        (
            &[("To", USER), ("From", SENDER), ("ContentSid", "HX123")],
            21655,
        ),
        (
            &[
                ("To", USER),
                ("From", SENDER),
                ("ContentSid", "MGbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
            ],
            21655,
        ),
        (
            &[
                ("To", USER),
                ("From", SENDER),
                ("ContentSid", TEMPLATE),
                ("ContentVariables", "{not json"),
            ],
            21656,
        ),
        (
            &[
                ("To", USER),
                ("From", SENDER),
                ("ContentSid", TEMPLATE),
                ("ContentVariables", r#"{"1":["a"]}"#),
            ],
            21656,
        ),
        (
            &[("To", USER), ("From", "+15005550006"), ("Body", "x")],
            21910,
        ),
    ];

    for (form, code) in cases {
        let (status, body) = app.create_message(form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}: {body}");
        assert_eq!(body["code"], code, "{form:?}: {body}");
    }
    let (status, _) = app
        .admin_send(
            Method::POST,
            "inbound",
            json!({"from": USER, "to": "+15005550006", "body": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .admin_send(Method::PUT, "content/HX1", json!({"body": "x"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(app.admin_get("ledger/counts").await["total"], 0);
}

#[tokio::test]
async fn a_whatsapp_number_scripted_to_stop_at_delivered_sends_no_read_receipt() {
    let app = crate::helpers::spawn_app().await;
    let mut receiver = spawn_receiver().await;
    app.admin_send(
        Method::PUT,
        "numbers/+15558675310",
        json!({"outcome": {"status": "delivered"}}),
    )
    .await;
    app.admin_send(
        Method::PUT,
        "whatsapp/sessions",
        json!({"from": USER, "to": SENDER}),
    )
    .await;

    let (_, created) = send(&app, &receiver, &[("Body", "x")]).await;
    let sid = created["sid"].as_str().unwrap();
    let callbacks = callbacks_until(&mut receiver, sid, "delivered").await;
    // A message created afterwards and finished proves no `read` was still on its way.
    let (_, marker) = send(&app, &receiver, &[("Body", "marker")]).await;
    let mut later =
        callbacks_until(&mut receiver, marker["sid"].as_str().unwrap(), "delivered").await;
    later.extend(receiver.drain());

    assert_eq!(statuses(&callbacks), ["sent", "delivered"]);
    assert!(!later.iter().any(|r| r.param("MessageSid") == Some(sid)));
}
