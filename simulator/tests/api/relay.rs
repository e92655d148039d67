//! `<Connect><ConversationRelay>`: the simulator plays ConversationRelay against a small
//! application of the test's own (an axum WebSocket and two TwiML routes).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use voice_agent_twilio::signature::validate;

use crate::helpers::{AUTH_TOKEN, spawn_app_with};

const OURS: &str = "+15005550006";
const CALLER: &str = "+15558675310";

/// What the application saw: its handshake's signature check, the frames from "Twilio" and
/// the action request's parameters.
#[derive(Default)]
struct Seen {
    signed: Vec<bool>,
    frames: Vec<Value>,
    action: Vec<(String, String)>,
}

async fn session(mut socket: WebSocket, seen: Arc<Mutex<Seen>>) {
    let next = async |socket: &mut WebSocket| loop {
        match socket.recv().await {
            Some(Ok(Message::Text(t))) => return serde_json::from_str::<Value>(&t).ok(),
            Some(Ok(_)) => {}
            _ => return None,
        }
    };
    let send = async |socket: &mut WebSocket, v: Value| {
        let _ = socket.send(Message::Text(v.to_string().into())).await;
    };
    // setup, then the caller's first prompt.
    for _ in 0..2 {
        let Some(frame) = next(&mut socket).await else {
            return;
        };
        seen.lock().unwrap().frames.push(frame);
    }
    // A message ConversationRelay cannot use: answered with an error.
    send(&mut socket, json!({"type": "text", "token": 5})).await;
    if let Some(frame) = next(&mut socket).await {
        seen.lock().unwrap().frames.push(frame);
    }
    for token in ["Our", " hours", " are", " nine", " to", " five."] {
        send(
            &mut socket,
            json!({"type": "text", "token": token, "last": false}),
        )
        .await;
    }
    send(
        &mut socket,
        json!({"type": "text", "token": "", "last": true}),
    )
    .await;
    // The caller cuts the next reply off after two tokens: interrupt, then its words.
    let Some(second) = next(&mut socket).await else {
        return;
    };
    seen.lock().unwrap().frames.push(second);
    for token in ["Sure,", " we", " are", " at", " the", " harbour."] {
        send(
            &mut socket,
            json!({"type": "text", "token": token, "last": false}),
        )
        .await;
    }
    send(
        &mut socket,
        json!({"type": "text", "token": "", "last": true}),
    )
    .await;
    for _ in 0..2 {
        if let Some(frame) = next(&mut socket).await {
            seen.lock().unwrap().frames.push(frame);
        }
    }
    send(
        &mut socket,
        json!({"type": "text", "token": "Goodbye.", "last": false}),
    )
    .await;
    send(
        &mut socket,
        json!({"type": "text", "token": "", "last": true}),
    )
    .await;
    send(
        &mut socket,
        json!({"type": "end", "handoffData": "{\"reason\":\"end\"}"}),
    )
    .await;
    while next(&mut socket).await.is_some() {}
}

#[tokio::test]
async fn conversation_relay_is_played_with_a_signed_handshake_tokens_interruptions_and_end() {
    let app = spawn_app_with(|config| {
        config.calls_per_second = 0;
        config.call_ring_ms = 10;
        config.call_second_ms = 1;
        config.call_think_ms = 0;
    })
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let ws_url = format!("{}/relay?call=1", base.replacen("http://", "ws://", 1));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let connect = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="{base}/action"><ConversationRelay url="{}" welcomeGreeting="Hi, this is Acme." dtmfDetection="true"><Parameter name="profile" value="support" /></ConversationRelay></Connect></Response>"#,
        ws_url.replace('&', "&amp;")
    );
    let router = Router::new()
        .route(
            "/incoming",
            post(move || {
                let connect = connect.clone();
                async move { ([("content-type", "text/xml")], connect) }
            }),
        )
        .route(
            "/action",
            post({
                let seen = seen.clone();
                move |body: String| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().action =
                            serde_urlencoded::from_str(&body).unwrap_or_default();
                        (
                            [("content-type", "text/xml")],
                            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup /></Response>"#,
                        )
                    }
                }
            }),
        )
        .route(
            "/relay",
            get({
                let seen = seen.clone();
                let ws_url = ws_url.clone();
                move |headers: HeaderMap, ws: WebSocketUpgrade| {
                    let seen = seen.clone();
                    let signature = headers
                        .get("x-twilio-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let signed = validate(AUTH_TOKEN, &ws_url, &[], &signature);
                    seen.lock().unwrap().signed.push(signed);
                    async move {
                        ws.on_upgrade(move |socket| session(socket, seen))
                            .into_response()
                    }
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });

    let (status, _) = app
        .admin_send(
            Method::PUT,
            &format!("numbers/{OURS}"),
            json!({"voice_url": format!("{base}/incoming")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, placed) = app
        .admin_send(
            Method::POST,
            "calls/inbound",
            json!({"from": CALLER, "to": OURS, "lines": [
                "when are you open?",
                "where are you?",
                {"speech": "thanks", "interrupt_after_tokens": 2},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{placed}");
    let sid = placed["call_sid"].as_str().unwrap().to_owned();
    let call = app.wait_for_call_end(&sid).await;
    assert_eq!(call["status"], "completed", "{call}");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.signed, [true], "the handshake is signed over the URL");
    let frames = &seen.frames;
    assert_eq!(frames[0]["type"], "setup");
    assert_eq!(frames[0]["callSid"], json!(sid));
    assert_eq!(frames[0]["from"], CALLER);
    assert_eq!(frames[0]["direction"], "inbound");
    assert_eq!(frames[0]["customParameters"], json!({"profile": "support"}));
    assert_eq!(
        frames[1],
        json!({"type": "prompt", "voicePrompt": "when are you open?", "lang": "en-US", "last": true})
    );
    assert_eq!(frames[2]["type"], "error");
    assert!(
        frames[2]["description"]
            .as_str()
            .unwrap()
            .starts_with("Invalid message received"),
        "{frames:?}"
    );
    assert_eq!(frames[3]["voicePrompt"], "where are you?");
    assert_eq!(
        frames[4],
        json!({"type": "interrupt", "utteranceUntilInterrupt": "Sure, we", "durationUntilInterruptMs": frames[4]["durationUntilInterruptMs"]})
    );
    assert_eq!(frames[5]["voicePrompt"], "thanks");
    let action: std::collections::HashMap<_, _> = seen.action.iter().cloned().collect();
    assert_eq!(action["HandoffData"], "{\"reason\":\"end\"}");
    assert_eq!(action["SessionStatus"], "ended");
    assert!(action["SessionId"].starts_with("VX"));

    let kinds = |kind: &str| -> Vec<String> {
        call["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| e["text"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        kinds("say"),
        [
            "Hi, this is Acme.",
            "Our hours are nine to five.",
            "Sure, we",
            "Goodbye."
        ]
    );
    assert_eq!(kinds("interrupt"), ["Sure, we"]);
    assert_eq!(kinds("error").len(), 1);
    assert_eq!(kinds("end"), ["{\"reason\":\"end\"}"]);
    assert_eq!(kinds("token")[..2], ["Our", " hours"]);
    assert_eq!(kinds("hangup").len(), 1);
}
