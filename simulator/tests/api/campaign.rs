//! Campaign concerns: STOP opt-outs (21610), duplicate and missing recipients in the ledger,
//! and many concurrent sends each getting all their callbacks.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Receiver, TestApp, spawn_app, spawn_app_with, spawn_receiver};

const SENDER: &str = "+15005550006";
const OTHER_SENDER: &str = "+15005550010";
const USER: &str = "+15558675310";
const TEMPLATE: &str = "HXdddddddddddddddddddddddddddddddd";

async fn app_with_inbound(
    receiver: &Receiver,
    configure: impl FnOnce(&mut voice_agent_simulator::Config),
) -> TestApp {
    let url = receiver.url("/twilio/sms");
    spawn_app_with(|config| {
        config.default_sms_url = Some(url.parse().unwrap());
        configure(config);
    })
    .await
}

async fn text_from_user(app: &TestApp, receiver: &mut Receiver, body: &str) {
    let (status, result) = app
        .admin_send(
            Method::POST,
            "inbound",
            json!({"from": USER, "to": SENDER, "body": body}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    // Twilio still forwards keywords to the application.
    assert_eq!(receiver.next().await.param("Body"), Some(body));
}

async fn sms(app: &TestApp, from: &str) -> (StatusCode, serde_json::Value) {
    app.create_message(&[("To", USER), ("From", from), ("Body", "Offer!")])
        .await
}

#[tokio::test]
async fn a_user_who_texted_stop_gets_no_sms_from_that_sender_until_they_text_start() {
    let mut receiver = spawn_receiver().await;
    let app = app_with_inbound(&receiver, |_| {}).await;

    text_from_user(&app, &mut receiver, "  stop\n").await;
    let (blocked, error) = sms(&app, SENDER).await;
    let (other_sender, _) = sms(&app, OTHER_SENDER).await;
    let opt_outs = app.admin_get("opt-outs").await;
    text_from_user(&app, &mut receiver, "Start").await;
    let (again, _) = sms(&app, SENDER).await;

    assert_eq!(blocked, StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], 21610);
    assert_eq!(
        error["message"],
        "Attempt to send to unsubscribed recipient"
    );
    assert_eq!(other_sender, StatusCode::CREATED, "opt-outs are per sender");
    assert_eq!(opt_outs["enabled"], true);
    assert_eq!(opt_outs["refused"], 1);
    assert_eq!(opt_outs["opt_outs"], json!([{"from": USER, "to": SENDER}]));
    assert_eq!(again, StatusCode::CREATED);
    assert_eq!(app.admin_get("opt-outs").await["opt_outs"], json!([]));
    // The refused create is not in the ledger.
    assert_eq!(app.admin_get("ledger/counts").await["total"], 2);
}

#[tokio::test]
async fn every_default_opt_out_keyword_counts_and_ordinary_messages_do_not() {
    let mut receiver = spawn_receiver().await;
    let app = app_with_inbound(&receiver, |_| {}).await;

    for keyword in ["STOPALL", "unsubscribe", "Cancel", "END", "quit", "STOP"] {
        text_from_user(&app, &mut receiver, keyword).await;
        assert_eq!(sms(&app, SENDER).await.1["code"], 21610, "{keyword}");
        text_from_user(&app, &mut receiver, "UNSTOP").await;
        assert_eq!(sms(&app, SENDER).await.0, StatusCode::CREATED, "{keyword}");
    }
    text_from_user(&app, &mut receiver, "please stop calling me").await;
    assert_eq!(sms(&app, SENDER).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn opt_out_enforcement_can_be_switched_off_by_flag_and_at_run_time() {
    let mut receiver = spawn_receiver().await;
    let off = app_with_inbound(&receiver, |config| config.twilio_opt_out = false).await;
    text_from_user(&off, &mut receiver, "STOP").await;
    let (sent_while_off, _) = sms(&off, SENDER).await;
    let (status, faults) = off
        .admin_send(Method::PUT, "faults", json!({"twilio_opt_out": true}))
        .await;
    // The STOP was recorded while enforcement was off, as Twilio would have.
    let (refused_once_on, _) = sms(&off, SENDER).await;

    assert_eq!(sent_while_off, StatusCode::CREATED);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(faults["twilio_opt_out"], true);
    assert_eq!(refused_once_on, StatusCode::BAD_REQUEST);
    off.http.post(off.admin_url("reset")).send().await.unwrap();
    assert_eq!(off.admin_get("faults").await["twilio_opt_out"], false);
    assert_eq!(off.admin_get("opt-outs").await["opt_outs"], json!([]));
}

#[tokio::test]
async fn the_ledger_finds_numbers_that_got_the_same_content_twice_and_numbers_that_got_nothing() {
    let app = spawn_app().await;
    let sends: [(&str, &[(&str, &str)]); 7] = [
        ("+15550000001", &[("Body", "Spring sale")]),
        ("+15550000001", &[("Body", "Spring sale")]),
        ("+15550000002", &[("Body", "Spring sale")]),
        ("+15550000002", &[("Body", "Summer sale")]),
        (
            "+15550000003",
            &[
                ("ContentSid", TEMPLATE),
                ("ContentVariables", r#"{"1":"a","2":"b"}"#),
            ],
        ),
        (
            "+15550000003",
            &[
                ("ContentSid", TEMPLATE),
                ("ContentVariables", r#"{"2": "b", "1": "a"}"#),
            ],
        ),
        (
            "+15550000004",
            &[
                ("ContentSid", TEMPLATE),
                ("ContentVariables", r#"{"1":"a"}"#),
            ],
        ),
    ];
    let mut sids: HashMap<&str, Vec<String>> = HashMap::new();
    for (to, extra) in sends {
        let mut form = vec![("To", to), ("From", SENDER)];
        form.extend_from_slice(extra);
        let (status, created) = app.create_message(&form).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        sids.entry(to)
            .or_default()
            .push(created["sid"].as_str().unwrap().to_owned());
    }

    let all = app.admin_get("ledger/duplicates").await;
    let spring = app.admin_get("ledger/duplicates?body=Spring%20sale").await;
    let by_template = app
        .admin_get(&format!("ledger/duplicates?content_sid={TEMPLATE}"))
        .await;
    let (status, missing) = app
        .admin_send(
            Method::POST,
            "ledger/missing",
            json!({"numbers": ["+15550000001", "+15550000002", "+15550000005"], "body": "Spring sale"}),
        )
        .await;
    let one = app.admin_get("ledger/counts?to=%2B15550000002").await;
    let totals = app.admin_get("ledger/counts?by_to=false").await;
    let every = app.admin_get("ledger/counts").await;

    assert_eq!(all["total"], 2, "{all}");
    assert_eq!(all["numbers"], 2);
    let first = &all["duplicates"][0];
    assert_eq!(first["to"], "+15550000001");
    assert_eq!(first["count"], 2);
    assert_eq!(first["body"], "Spring sale");
    assert_eq!(first["sids"], json!(sids["+15550000001"]));
    let second = &all["duplicates"][1];
    assert_eq!(second["to"], "+15550000003");
    assert_eq!(second["content_sid"], TEMPLATE);
    assert_eq!(second["count"], 2);
    assert_eq!(spring["total"], 1);
    assert_eq!(by_template["total"], 1);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(missing["checked"], 3);
    assert_eq!(missing["missing"], json!(["+15550000005"]));
    assert_eq!(one["total"], 2);
    assert_eq!(one["by_to"], json!({"+15550000002": 2}));
    // Statuses move on between the two reads (callbacks); the totals do not.
    assert_eq!(totals["total"], every["total"]);
    let status_sum = |v: &serde_json::Value| -> u64 {
        v["by_status"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum()
    };
    assert_eq!(status_sum(&totals), totals["total"].as_u64().unwrap());
    assert_eq!(totals["by_to"], json!({}));
    assert!(every["by_to"].as_object().unwrap().len() > 1, "{every}");
    assert_eq!(
        one["by_status"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        2
    );
}

#[tokio::test]
async fn many_concurrent_sends_each_get_both_callbacks_through_a_narrow_callback_pool() {
    const MESSAGES: usize = 300;
    let app = spawn_app_with(|config| {
        config.callback_delay_ms = 0;
        config.callback_concurrency = 4;
    })
    .await;
    let mut receiver = spawn_receiver().await;
    let callback = receiver.url("/twilio/status");
    let numbers: Vec<String> = (0..MESSAGES).map(|i| format!("+1555{i:07}")).collect();

    let mut sends = tokio::task::JoinSet::new();
    for chunk in numbers.chunks(MESSAGES / 10) {
        let (http, url, callback, chunk) = (
            app.http.clone(),
            app.messages_url(),
            callback.clone(),
            chunk.to_vec(),
        );
        sends.spawn(async move {
            for to in chunk {
                let response = http
                    .post(&url)
                    .basic_auth(
                        crate::helpers::ACCOUNT_SID,
                        Some(crate::helpers::AUTH_TOKEN),
                    )
                    .form(&[
                        ("To", to.as_str()),
                        ("From", SENDER),
                        ("Body", "Campaign"),
                        ("StatusCallback", &callback),
                    ])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
            }
        });
    }
    while let Some(result) = sends.join_next().await {
        result.unwrap();
    }
    let mut per_message: HashMap<String, Vec<String>> = HashMap::new();
    for _ in 0..2 * MESSAGES {
        let request = receiver.next().await;
        per_message
            .entry(request.param("MessageSid").unwrap().to_owned())
            .or_default()
            .push(request.param("MessageStatus").unwrap().to_owned());
    }
    let counts = app.admin_get("ledger/counts").await;
    let (_, missing) = app
        .admin_send(
            Method::POST,
            "ledger/missing",
            json!({ "numbers": numbers }),
        )
        .await;

    assert_eq!(per_message.len(), MESSAGES);
    assert!(per_message.values().all(|s| s == &["sent", "delivered"]));
    assert_eq!(counts["total"], MESSAGES);
    assert_eq!(counts["by_status"]["delivered"], MESSAGES);
    assert_eq!(counts["by_to"].as_object().unwrap().len(), MESSAGES);
    assert_eq!(app.admin_get("ledger/duplicates").await["total"], 0);
    assert_eq!(missing["missing"], json!([]));
}
