//! Black-box tests of the simulator over HTTP.

mod calls;
mod campaign;
mod helpers;
mod relay;
mod whatsapp;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use helpers::{
    ACCOUNT_SID, API_KEY_SECRET, API_KEY_SID, AUTH_TOKEN, TWIML_REPLY, spawn_app, spawn_app_with,
    spawn_receiver, status_and_json,
};

const FROM: &str = "+15005550006";
const TO: &str = "+15558675310";

fn is_sid(value: &Value, prefix: &str) -> bool {
    value.as_str().is_some_and(|sid| {
        sid.len() == 34
            && sid.starts_with(prefix)
            && sid[2..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[tokio::test]
async fn creating_a_message_returns_twilio_json_and_fetch_returns_the_same_message() {
    let app = spawn_app().await;

    let (status, created) = app
        .create_message(&[("To", TO), ("From", FROM), ("Body", "Hello! 👍")])
        .await;

    assert_eq!(status, StatusCode::CREATED);
    assert!(is_sid(&created["sid"], "SM"), "{created}");
    assert_eq!(created["status"], "queued");
    assert_eq!(created["account_sid"], ACCOUNT_SID);
    assert_eq!(created["api_version"], "2010-04-01");
    assert_eq!(created["direction"], "outbound-api");
    assert_eq!(created["num_segments"], "1");
    assert_eq!(created["num_media"], "0");
    assert_eq!(created["price"], Value::Null);
    assert_eq!(created["error_code"], Value::Null);
    assert_eq!(created["date_sent"], Value::Null);
    assert!(
        created["date_created"]
            .as_str()
            .unwrap()
            .ends_with(" +0000")
    );
    let sid = created["sid"].as_str().unwrap();
    assert_eq!(
        created["uri"],
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json")
    );
    assert_eq!(
        created["subresource_uris"]["media"],
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json")
    );

    let (status, fetched) = app.get_json(&app.message_url(sid)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["sid"], created["sid"]);
    assert_eq!(fetched["body"], "Hello! 👍");
}

#[tokio::test]
async fn a_messaging_service_message_starts_accepted_and_gets_a_sender() {
    let app = spawn_app().await;
    let service = "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    let (status, created) = app
        .create_message(&[("To", TO), ("MessagingServiceSid", service), ("Body", "hi")])
        .await;

    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["status"], "accepted");
    assert_eq!(created["from"], Value::Null);
    assert_eq!(created["messaging_service_sid"], service);
    let sid = created["sid"].as_str().unwrap();
    let delivered = app
        .wait_for_message(sid, |m| m["status"] == "delivered")
        .await;
    assert!(delivered["from"].as_str().unwrap().starts_with('+'));
    assert_eq!(delivered["num_segments"], "1");
}

#[tokio::test]
async fn fetching_an_unknown_message_answers_20404() {
    let app = spawn_app().await;
    let url = app.message_url("SM00000000000000000000000000000000");

    let (status, body) = app.get_json(&url).await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], 20404);
    assert_eq!(body["status"], 404);
    assert_eq!(
        body["more_info"],
        "https://www.twilio.com/docs/errors/20404"
    );
}

#[tokio::test]
async fn listing_filters_by_to_and_pages_newest_first() {
    let app = spawn_app().await;
    let other = "+15558675311";
    let mut sids = Vec::new();
    for i in 0..5 {
        let (_, created) = app
            .create_message(&[("To", TO), ("From", FROM), ("Body", &format!("m{i}"))])
            .await;
        sids.push(created["sid"].as_str().unwrap().to_owned());
        app.create_message(&[("To", other), ("From", FROM), ("Body", "noise")])
            .await;
    }

    let mut seen = Vec::new();
    let mut url = format!("{}?To=%2B15558675310&PageSize=2", app.messages_url());
    let mut pages = 0;
    loop {
        let (status, page) = app.get_json(&url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["page_size"], 2);
        assert_eq!(page["page"], pages);
        for message in page["messages"].as_array().unwrap() {
            assert_eq!(message["to"], TO);
            seen.push(message["sid"].as_str().unwrap().to_owned());
        }
        pages += 1;
        match page["next_page_uri"].as_str() {
            Some(next) => {
                assert!(next.starts_with("/2010-04-01/Accounts/"), "{next}");
                assert!(next.contains("PageToken=PA"));
                url = format!("{}{next}", app.base_url);
            }
            None => break,
        }
    }

    assert_eq!(pages, 3);
    sids.reverse();
    assert_eq!(seen, sids);
}

#[tokio::test]
async fn listing_rejects_page_sizes_over_1000() {
    let app = spawn_app().await;

    let (status, body) = app
        .get_json(&format!("{}?PageSize=1001", app.messages_url()))
        .await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], 20007);
}

#[tokio::test]
async fn listing_filters_by_date_sent() {
    let app = spawn_app().await;
    let (_, created) = app
        .create_message(&[("To", TO), ("From", FROM), ("Body", "x")])
        .await;
    app.wait_for_message(created["sid"].as_str().unwrap(), |m| {
        !m["date_sent"].is_null()
    })
    .await;
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today.succ_opt().unwrap();

    let (_, on_or_after_today) = app
        .get_json(&format!("{}?DateSent%3E={today}", app.messages_url()))
        .await;
    let (_, after_tomorrow) = app
        .get_json(&format!("{}?DateSent%3E={tomorrow}", app.messages_url()))
        .await;

    assert_eq!(on_or_after_today["messages"].as_array().unwrap().len(), 1);
    assert_eq!(after_tomorrow["messages"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn invalid_create_requests_get_twilio_validation_codes() {
    let app = spawn_app().await;
    let long_body = "a".repeat(1601);
    let cases: [(&[(&str, &str)], u64); 6] = [
        (&[("From", FROM), ("Body", "x")], 21604),
        (&[("To", TO), ("Body", "x")], 21603),
        (&[("To", TO), ("From", FROM)], 21619),
        (&[("To", TO), ("From", FROM), ("Body", "")], 21602),
        (&[("To", TO), ("From", FROM), ("Body", &long_body)], 21617),
        (&[("To", "+1asd"), ("From", FROM), ("Body", "x")], 21211),
    ];

    for (form, code) in cases {
        let (status, body) = app.create_message(form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}");
        assert_eq!(body["code"], code, "{form:?}: {body}");
        assert_eq!(body["status"], 400);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(
            body["more_info"],
            format!("https://www.twilio.com/docs/errors/{code}")
        );
    }
    assert_eq!(app.admin_get("ledger/counts").await["total"], 0);
}

#[tokio::test]
async fn magic_test_numbers_fail_with_their_documented_codes() {
    let app = spawn_app().await;
    let cases = [
        (FROM_MAGIC_INVALID, TO, 21212),
        ("+15005550007", TO, 21606),
        ("+15005550008", TO, 21611),
        (FROM, "+15005550001", 21211),
        (FROM, "+15005550002", 21612),
        (FROM, "+15005550003", 21408),
        (FROM, "+15005550004", 21610),
        (FROM, "+15005550009", 21614),
    ];

    for (from, to, code) in cases {
        let (status, body) = app
            .create_message(&[("To", to), ("From", from), ("Body", "x")])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{from} -> {to}");
        assert_eq!(body["code"], code, "{from} -> {to}");
    }
    let (status, _) = app
        .create_message(&[("To", TO), ("From", "+15551112222"), ("Body", "x")])
        .await;
    assert_eq!(status, StatusCode::CREATED, "any other From is owned");
}

const FROM_MAGIC_INVALID: &str = "+15005550001";

#[tokio::test]
async fn wrong_or_missing_credentials_get_401_with_code_20003() {
    let app = spawn_app().await;

    let wrong = app
        .http
        .get(app.messages_url())
        .basic_auth(ACCOUNT_SID, Some("wrong"))
        .send()
        .await
        .unwrap();
    let missing = app.http.get(app.messages_url()).send().await.unwrap();

    for response in [wrong, missing] {
        assert!(response.headers().contains_key("www-authenticate"));
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["code"], 20003);
        assert_eq!(body["status"], 401);
        assert_eq!(
            body["detail"],
            "Your AccountSid or AuthToken was incorrect."
        );
        assert_eq!(
            body["more_info"],
            "https://www.twilio.com/docs/errors/20003"
        );
    }
}

#[tokio::test]
async fn api_keys_authenticate_and_other_accounts_are_not_found() {
    let app = spawn_app().await;

    let with_key = app
        .http
        .get(app.messages_url())
        .basic_auth(API_KEY_SID, Some(API_KEY_SECRET))
        .send()
        .await
        .unwrap();
    let other_account = app
        .http
        .get(format!(
            "{}/2010-04-01/Accounts/ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/Messages.json",
            app.base_url
        ))
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .send()
        .await
        .unwrap();

    assert_eq!(with_key.status(), StatusCode::OK);
    let (status, body) = status_and_json(other_account).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], 20404);
}

#[tokio::test]
async fn a_sender_over_the_rate_limit_gets_429_with_code_20429() {
    let app = spawn_app_with(|config| config.rate_limit_mps = 2).await;
    let started = Instant::now();

    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, body) = app
            .create_message(&[("To", TO), ("From", FROM), ("Body", "x")])
            .await;
        statuses.push((status, body));
    }
    let (other_sender, _) = app
        .create_message(&[("To", TO), ("From", "+15551112222"), ("Body", "x")])
        .await;

    // The window is one second; the test is only meaningful if it ran inside it.
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(statuses[0].0, StatusCode::CREATED);
    assert_eq!(statuses[1].0, StatusCode::CREATED);
    assert_eq!(statuses[2].0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(statuses[2].1["code"], 20429);
    assert_eq!(statuses[2].1["status"], 429);
    assert_eq!(other_sender, StatusCode::CREATED, "limits are per sender");
}

#[tokio::test]
async fn status_callbacks_are_signed_and_arrive_sent_then_delivered() {
    let app = spawn_app().await;
    let mut receiver = spawn_receiver().await;
    let callback = receiver.url("/twilio/status?tenant=a");

    let (_, created) = app
        .create_message(&[
            ("To", TO),
            ("From", FROM),
            ("Body", "hi"),
            ("StatusCallback", &callback),
        ])
        .await;
    let sid = created["sid"].as_str().unwrap();
    let sent = receiver.next().await;
    let delivered = receiver.next().await;

    for (request, status) in [(&sent, "sent"), (&delivered, "delivered")] {
        assert_eq!(request.url, callback);
        assert!(request.signature_is_valid(), "{request:?}");
        assert_eq!(request.header("user-agent"), Some("TwilioProxy/1.1"));
        assert_eq!(
            request.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert!(request.header("i-twilio-idempotency-token").is_some());
        let params = request.params_map();
        assert_eq!(params["MessageStatus"], status);
        assert_eq!(params["SmsStatus"], status);
        assert_eq!(params["MessageSid"], sid);
        assert_eq!(params["SmsSid"], sid);
        assert_eq!(params["AccountSid"], ACCOUNT_SID);
        assert_eq!(params["ApiVersion"], "2010-04-01");
        assert_eq!(params["From"], FROM);
        assert_eq!(params["To"], TO);
        assert!(!params.contains_key("ErrorCode"));
    }
    let fetched = app
        .wait_for_message(sid, |m| m["status"] == "delivered")
        .await;
    assert!(!fetched["date_sent"].is_null());
}

#[tokio::test]
async fn scripted_outcomes_end_undelivered_failed_or_stay_sent() {
    let app = spawn_app().await;
    let mut receiver = spawn_receiver().await;
    let callback = receiver.url("/status");
    let script = [
        (
            "+15550000001",
            json!({"status": "undelivered", "error_code": 30003}),
        ),
        (
            "+15550000002",
            json!({"status": "failed", "error_code": 30007}),
        ),
        ("+15550000003", json!({"status": "sent"})),
    ];
    for (number, outcome) in &script {
        let (status, _) = app
            .admin_send(
                Method::PUT,
                &format!("numbers/{number}"),
                json!({ "outcome": outcome }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    let mut sids = Vec::new();
    for (number, _) in &script {
        let (_, created) = app
            .create_message(&[
                ("To", number),
                ("From", FROM),
                ("Body", "x"),
                ("StatusCallback", &callback),
            ])
            .await;
        sids.push(created["sid"].as_str().unwrap().to_owned());
    }
    // A normal message created last finishes after the scripted ones had every chance to.
    let (_, last) = app
        .create_message(&[
            ("To", TO),
            ("From", FROM),
            ("Body", "x"),
            ("StatusCallback", &callback),
        ])
        .await;
    let last_sid = last["sid"].as_str().unwrap();
    let mut received = Vec::new();
    while !received.iter().any(|r: &helpers::Received| {
        r.param("MessageSid") == Some(last_sid) && r.param("MessageStatus") == Some("delivered")
    }) {
        received.push(receiver.next().await);
    }
    received.extend(receiver.drain());

    let statuses = |sid: &str| -> Vec<(String, Option<String>)> {
        received
            .iter()
            .filter(|r| r.param("MessageSid") == Some(sid))
            .map(|r| {
                (
                    r.param("MessageStatus").unwrap().to_owned(),
                    r.param("ErrorCode").map(str::to_owned),
                )
            })
            .collect()
    };
    assert_eq!(
        statuses(&sids[0]),
        [
            ("sent".to_owned(), None),
            ("undelivered".to_owned(), Some("30003".to_owned()))
        ]
    );
    assert_eq!(
        statuses(&sids[1]),
        [("failed".to_owned(), Some("30007".to_owned()))]
    );
    assert_eq!(statuses(&sids[2]), [("sent".to_owned(), None)]);
    let (_, undelivered) = app.get_json(&app.message_url(&sids[0])).await;
    assert_eq!(undelivered["status"], "undelivered");
    assert_eq!(undelivered["error_code"], 30003);
}

#[tokio::test]
async fn injected_inbound_sms_reaches_the_webhook_signed_and_can_be_redelivered() {
    let mut receiver = spawn_receiver().await;
    let default_url = receiver.url("/twilio/sms");
    let app =
        spawn_app_with(|config| config.default_sms_url = Some(default_url.parse().unwrap())).await;

    let (status, result) = app
        .admin_send(
            Method::POST,
            "inbound",
            json!({"from": TO, "to": FROM, "body": "Héllo wörld & more"}),
        )
        .await;
    let first = receiver.next().await;
    let (_, again) = app
        .admin_send(
            Method::POST,
            &format!(
                "inbound/{}/redeliver",
                result["message_sid"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    let second = receiver.next().await;

    assert_eq!(status, StatusCode::OK);
    assert!(is_sid(&result["message_sid"], "SM"));
    assert_eq!(result["status"], 200);
    assert_eq!(result["body"], TWIML_REPLY);
    assert_eq!(result["url"], default_url);
    assert!(first.signature_is_valid());
    let params = first.params_map();
    assert_eq!(
        params["MessageSid"],
        result["message_sid"].as_str().unwrap()
    );
    assert_eq!(params["SmsMessageSid"], params["MessageSid"]);
    assert_eq!(params["SmsSid"], params["MessageSid"]);
    assert_eq!(params["SmsStatus"], "received");
    assert_eq!(params["Body"], "Héllo wörld & more");
    assert_eq!(params["From"], TO);
    assert_eq!(params["To"], FROM);
    assert_eq!(params["NumMedia"], "0");
    assert_eq!(params["NumSegments"], "1");
    assert_eq!(params["FromCountry"], "US");
    assert_eq!(params["AccountSid"], ACCOUNT_SID);
    assert_eq!(params["ApiVersion"], "2010-04-01");
    assert_eq!(again["message_sid"], result["message_sid"]);
    assert_eq!(second.params, first.params);
    assert!(second.signature_is_valid());
    // Inbound messages show in the REST list like Twilio's, but not in the outbound ledger.
    let (_, listed) = app.get_json(&app.messages_url()).await;
    assert_eq!(listed["messages"][0]["direction"], "inbound");
    assert_eq!(listed["messages"][0]["status"], "received");
    assert_eq!(app.admin_get("ledger/counts").await["total"], 0);
}

#[tokio::test]
async fn a_number_webhook_overrides_the_default_and_forged_signatures_fail_validation() {
    let mut receiver = spawn_receiver().await;
    let app = spawn_app().await;
    let number_url = receiver.url("/per-number");
    app.admin_send(
        Method::PUT,
        "numbers/+15005550006",
        json!({"sms_url": number_url}),
    )
    .await;

    let (_, result) = app
        .admin_send(
            Method::POST,
            "inbound",
            json!({"from": TO, "to": FROM, "body": "forged", "bad_signature": true}),
        )
        .await;
    let forged = receiver.next().await;
    let (status, unrouted) = app
        .admin_send(
            Method::POST,
            "inbound",
            json!({"from": TO, "to": "+15559990000", "body": "x"}),
        )
        .await;

    assert_eq!(result["url"], number_url);
    assert_eq!(forged.url, number_url);
    assert!(forged.header("x-twilio-signature").is_some());
    assert!(!forged.signature_is_valid());
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{unrouted}");
}

#[tokio::test]
async fn the_ledger_lists_outbound_messages_and_counts_them_per_destination() {
    let app = spawn_app().await;
    for to in [TO, TO, "+15558675311"] {
        app.create_message(&[("To", to), ("From", FROM), ("Body", "campaign")])
            .await;
    }

    let counts = app.admin_get("ledger/counts").await;
    let for_to = app.admin_get("ledger?to=%2B15558675310").await;
    let unencoded_plus = app.admin_get("ledger?to=+15558675310").await;

    assert_eq!(counts["total"], 3);
    assert_eq!(counts["by_to"][TO], 2);
    assert_eq!(counts["by_to"]["+15558675311"], 1);
    assert_eq!(for_to["total"], 2);
    assert_eq!(unencoded_plus["total"], 2);
    let entry = &for_to["messages"][0];
    assert_eq!(entry["to"], TO);
    assert_eq!(entry["from"], FROM);
    assert_eq!(entry["body"], "campaign");
    assert!(is_sid(&entry["sid"], "SM"));
    assert!(entry["status"].is_string());
    assert!(entry["date_created"].is_string());
}

#[tokio::test]
async fn faults_can_be_injected_and_cleared_at_run_time() {
    let app = spawn_app().await;

    let (status, faults) = app
        .admin_send(Method::PUT, "faults", json!({"error_rate": 1.0}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(faults["error_rate"], 1.0);
    let (status, body) = app
        .create_message(&[("To", TO), ("From", FROM), ("Body", "x")])
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["code"], 20500);

    app.admin_send(
        Method::PUT,
        "faults",
        json!({"error_rate": 0.0, "too_many_requests_rate": 1.0}),
    )
    .await;
    let (status, body) = app.get_json(&app.messages_url()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["code"], 20429);

    app.admin_send(
        Method::PUT,
        "faults",
        json!({"too_many_requests_rate": 0.0, "latency_ms": 150}),
    )
    .await;
    let started = Instant::now();
    let (status, _) = app.get_json(&app.messages_url()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));

    let (status, _) = app
        .admin_send(Method::PUT, "faults", json!({"error_rate": 2.0}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = app.http.post(app.admin_url("reset")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.admin_get("faults").await["latency_ms"], 0);
}

#[tokio::test]
async fn reset_forgets_messages_and_number_settings() {
    let app = spawn_app().await;
    let (_, created) = app
        .create_message(&[("To", TO), ("From", FROM), ("Body", "x")])
        .await;
    app.admin_send(Method::PUT, &format!("numbers/{TO}"), json!({}))
        .await;

    app.http.post(app.admin_url("reset")).send().await.unwrap();

    let (status, _) = app
        .get_json(&app.message_url(created["sid"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.admin_get("ledger/counts").await["total"], 0);
    assert_eq!(app.admin_get("numbers").await["numbers"], json!({}));
}

#[tokio::test]
async fn deleting_a_message_hides_it_from_the_api_but_not_from_the_ledger() {
    let app = spawn_app().await;
    let (_, created) = app
        .create_message(&[("To", TO), ("From", FROM), ("Body", "x")])
        .await;
    let url = app.message_url(created["sid"].as_str().unwrap());

    let deleted = app
        .http
        .delete(&url)
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .send()
        .await
        .unwrap();

    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get_json(&url).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.admin_get("ledger/counts").await["total"], 1);
}

#[tokio::test]
async fn the_admin_api_refuses_malformed_bodies() {
    let app = spawn_app().await;

    let response = app
        .http
        .post(app.admin_url("inbound"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("invalid JSON"));
}

#[tokio::test]
async fn run_returns_once_shutdown_is_requested() {
    let app = spawn_app().await;
    app.create_message(&[("To", TO), ("From", FROM), ("Body", "x")])
        .await;

    app.stop().await;
}
