//! REST client against an in-process fake: request shape, response parsing and error classification.

mod helpers;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use secrecy::SecretString;
use tokio::net::TcpListener;
use voice_agent_twilio::TwilioError;
use voice_agent_twilio::client::{
    Auth, CallStatus, CreateCall, CreateMessage, ListMessages, MachineDetection, MessageStatus,
    UpdateCall, UpdateCallStatus,
};

use crate::helpers::{ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, Reply, basic, client_for};

const MESSAGE_JSON: &str = r#"{
    "account_sid": "AC00000000000000000000000000000000",
    "api_version": "2010-04-01",
    "body": "Hello there",
    "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
    "date_sent": null,
    "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
    "direction": "outbound-api",
    "error_code": null,
    "error_message": null,
    "from": "+15005550006",
    "num_media": "0",
    "num_segments": "1",
    "price": null,
    "price_unit": "USD",
    "messaging_service_sid": null,
    "sid": "SM11111111111111111111111111111111",
    "status": "queued",
    "subresource_uris": {"media": "/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages/SM11111111111111111111111111111111/Media.json"},
    "to": "+15558675310",
    "uri": "/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages/SM11111111111111111111111111111111.json"
}"#;

const CALL_JSON: &str = r#"{
    "sid": "CA22222222222222222222222222222222",
    "account_sid": "AC00000000000000000000000000000000",
    "to": "+15558675310",
    "from": "+15005550006",
    "status": "queued",
    "direction": "outbound-api",
    "duration": null,
    "queue_time": "0",
    "start_time": null,
    "end_time": null,
    "price": null,
    "answered_by": null,
    "api_version": "2010-04-01",
    "uri": "/2010-04-01/Accounts/AC00000000000000000000000000000000/Calls/CA22222222222222222222222222222222.json",
    "subresource_uris": {"recordings": "/x"}
}"#;

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
}

#[tokio::test]
async fn create_message_posts_a_form_with_basic_auth_and_parses_the_resource() {
    let fake = FakeTwilio::start(Reply::Json(StatusCode::CREATED, MESSAGE_JSON)).await;
    let client = fake.client();

    let message = client
        .create_message(&CreateMessage {
            to: "+15558675310".into(),
            from: Some("+15005550006".into()),
            body: Some("Hello there & welcome".into()),
            media_url: vec!["https://x/a.png".into(), "https://x/b.png".into()],
            status_callback: Some("https://agent.example/twilio/status".into()),
            ..CreateMessage::default()
        })
        .await
        .expect("message created");

    assert_eq!(message.sid, "SM11111111111111111111111111111111");
    assert_eq!(message.status, MessageStatus::Queued);
    assert_eq!(message.num_segments.as_deref(), Some("1"));
    let request = fake.only_request();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, messages_path());
    assert_eq!(request.authorization, Some(basic(ACCOUNT_SID, AUTH_TOKEN)));
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.accept.as_deref(), Some("application/json"));
    assert_eq!(
        request.form(),
        pairs(&[
            ("To", "+15558675310"),
            ("From", "+15005550006"),
            ("Body", "Hello there & welcome"),
            ("MediaUrl", "https://x/a.png"),
            ("MediaUrl", "https://x/b.png"),
            ("StatusCallback", "https://agent.example/twilio/status"),
        ])
    );
}

#[tokio::test]
async fn messaging_service_and_content_template_fields_are_sent() {
    let fake = FakeTwilio::start(Reply::Json(StatusCode::CREATED, MESSAGE_JSON)).await;

    fake.client()
        .create_message(&CreateMessage {
            to: "whatsapp:+15558675310".into(),
            messaging_service_sid: Some("MG00000000000000000000000000000000".into()),
            content_sid: Some("HX00000000000000000000000000000000".into()),
            content_variables: Some(r#"{"1":"12/1","2":"3pm"}"#.into()),
            ..CreateMessage::default()
        })
        .await
        .expect("message created");

    assert_eq!(
        fake.only_request().form(),
        pairs(&[
            ("To", "whatsapp:+15558675310"),
            ("MessagingServiceSid", "MG00000000000000000000000000000000"),
            ("ContentSid", "HX00000000000000000000000000000000"),
            ("ContentVariables", r#"{"1":"12/1","2":"3pm"}"#),
        ])
    );
}

#[tokio::test]
async fn api_key_auth_uses_the_key_sid_as_username_and_keeps_the_account_in_the_path() {
    let fake = FakeTwilio::start(Reply::Json(StatusCode::OK, MESSAGE_JSON)).await;
    let client = fake.client_with(
        Auth::ApiKey {
            sid: "SK00000000000000000000000000000000".into(),
            secret: SecretString::from("key-secret"),
        },
        Duration::from_secs(5),
    );

    client
        .fetch_message("SM11111111111111111111111111111111")
        .await
        .expect("message fetched");

    let request = fake.only_request();
    assert_eq!(request.method, Method::GET);
    assert_eq!(
        request.path,
        format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SM11111111111111111111111111111111.json"
        )
    );
    assert_eq!(
        request.authorization,
        Some(basic("SK00000000000000000000000000000000", "key-secret"))
    );
}

#[tokio::test]
async fn list_messages_sends_filters_as_query_and_exposes_the_next_page() {
    let page = r#"{"messages": [], "next_page_uri": "/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages.json?PageSize=2&Page=1&PageToken=PA1",
        "page": 0, "page_size": 2, "first_page_uri": "/x", "previous_page_uri": null, "start": 0, "end": 1, "uri": "/x"}"#;
    let fake = FakeTwilio::start(Reply::Json(StatusCode::OK, page)).await;

    let page = fake
        .client()
        .list_messages(&ListMessages {
            to: Some("+123456789".into()),
            from: Some("+987654321".into()),
            date_sent_after: Some("2008-01-02".into()),
            page_size: Some(2),
            ..ListMessages::default()
        })
        .await
        .expect("page listed");

    assert!(page.messages.is_empty());
    assert_eq!(page.page_size, Some(2));
    assert!(
        page.next_page_uri
            .is_some_and(|uri| uri.ends_with("PageToken=PA1"))
    );
    let request = fake.only_request();
    assert_eq!(request.path, messages_path());
    assert_eq!(
        request.query.as_deref(),
        Some("To=%2B123456789&From=%2B987654321&DateSent%3E=2008-01-02&PageSize=2")
    );
}

#[tokio::test]
async fn listing_up_to_a_limit_follows_next_page_uris_and_stops_at_the_limit() {
    let first = r#"{"messages": [{"sid": "SM1", "status": "delivered"}, {"sid": "SM2", "status": "sent"}],
        "next_page_uri": "/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages.json?PageSize=2&Page=1&PageToken=PA1"}"#;
    let second = r#"{"messages": [{"sid": "SM3", "status": "failed", "error_code": 30003}, {"sid": "SM4", "status": "sent"}],
        "next_page_uri": "/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages.json?PageSize=2&Page=2&PageToken=PA2"}"#;
    let fake = FakeTwilio::start(Reply::Sequence(vec![first, second])).await;

    let messages = fake
        .client()
        .list_messages_up_to(&ListMessages::default(), 3)
        .await
        .expect("messages listed");

    let sids: Vec<&str> = messages.iter().map(|m| m.sid.as_str()).collect();
    assert_eq!(sids, ["SM1", "SM2", "SM3"]);
    assert_eq!(messages[2].error_code, Some(30003));
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].path, messages_path());
    assert_eq!(
        requests[1].query.as_deref(),
        Some("PageSize=2&Page=1&PageToken=PA1")
    );
    assert_eq!(
        requests[1].authorization,
        Some(basic(ACCOUNT_SID, AUTH_TOKEN))
    );
}

#[tokio::test]
async fn listing_stops_on_the_last_page() {
    let only = r#"{"messages": [{"sid": "SM1", "status": "received"}], "next_page_uri": null}"#;
    let fake = FakeTwilio::start(Reply::Sequence(vec![only])).await;

    let messages = fake
        .client()
        .list_messages_up_to(&ListMessages::default(), 50)
        .await
        .expect("messages listed");

    assert_eq!(messages.len(), 1);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn create_call_posts_repeated_events_and_parses_the_call() {
    let fake = FakeTwilio::start(Reply::Json(StatusCode::CREATED, CALL_JSON)).await;

    let call = fake
        .client()
        .create_call(&CreateCall {
            to: "+15558675310".into(),
            from: "+15005550006".into(),
            twiml: Some(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hi</Say></Response>"#
                    .into(),
            ),
            status_callback: Some("https://agent.example/twilio/call-status".into()),
            status_callback_event: vec![
                "initiated".into(),
                "ringing".into(),
                "answered".into(),
                "completed".into(),
            ],
            machine_detection: Some(MachineDetection::Enable),
            timeout: Some(30),
            record: Some(false),
            ..CreateCall::default()
        })
        .await
        .expect("call created");

    assert_eq!(call.sid, "CA22222222222222222222222222222222");
    assert_eq!(call.status, CallStatus::Queued);
    assert_eq!(call.duration, None);
    let request = fake.only_request();
    assert_eq!(request.method, Method::POST);
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json")
    );
    assert_eq!(
        request.form(),
        pairs(&[
            ("To", "+15558675310"),
            ("From", "+15005550006"),
            (
                "Twiml",
                r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hi</Say></Response>"#
            ),
            ("StatusCallback", "https://agent.example/twilio/call-status"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
            ("MachineDetection", "Enable"),
            ("Timeout", "30"),
            ("Record", "false"),
        ])
    );
}

#[tokio::test]
async fn fetch_and_update_call_hit_the_call_resource() {
    let fake = FakeTwilio::start(Reply::Json(StatusCode::OK, CALL_JSON)).await;
    let client = fake.client();
    let sid = "CA22222222222222222222222222222222";

    client.fetch_call(sid).await.expect("call fetched");
    client
        .update_call(
            sid,
            &UpdateCall {
                status: Some(UpdateCallStatus::Completed),
                ..UpdateCall::default()
            },
        )
        .await
        .expect("call updated");

    let requests = fake.requests();
    let call_path = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json");
    assert_eq!(
        (requests[0].method.clone(), requests[0].path.clone()),
        (Method::GET, call_path.clone())
    );
    assert_eq!(
        (requests[1].method.clone(), requests[1].path.clone()),
        (Method::POST, call_path)
    );
    assert_eq!(requests[1].form(), pairs(&[("Status", "completed")]));
}

#[tokio::test]
async fn invalid_number_error_json_is_a_permanent_api_error() {
    let body = r#"{"code": 21211, "message": "The 'To' number +1asd is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#;
    let fake = FakeTwilio::start(Reply::Json(StatusCode::BAD_REQUEST, body)).await;

    let error = fake
        .client()
        .create_message(&CreateMessage {
            to: "+1asd".into(),
            ..CreateMessage::default()
        })
        .await
        .expect_err("rejected");

    assert_eq!(error.code(), Some(21211));
    assert!(!error.is_retryable());
    let TwilioError::Api {
        status, more_info, ..
    } = &error
    else {
        panic!("expected an API error, got {error:?}");
    };
    assert_eq!(*status, 400);
    assert_eq!(
        more_info.as_deref(),
        Some("https://www.twilio.com/docs/errors/21211")
    );
}

#[tokio::test]
async fn unsubscribed_recipient_is_permanent() {
    let body = r#"{"code": 21610, "message": "Attempt to send to unsubscribed recipient",
        "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}"#;
    let fake = FakeTwilio::start(Reply::Json(StatusCode::BAD_REQUEST, body)).await;

    let error = fake
        .client()
        .create_message(&CreateMessage {
            to: "+15005550004".into(),
            ..CreateMessage::default()
        })
        .await
        .expect_err("rejected");

    assert_eq!(error.code(), Some(21610));
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn rate_limit_is_retryable() {
    let body = r#"{"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}"#;
    let fake = FakeTwilio::start(Reply::Json(StatusCode::TOO_MANY_REQUESTS, body)).await;

    let error = fake
        .client()
        .fetch_message("SM1")
        .await
        .expect_err("limited");

    assert_eq!(error.code(), Some(20429));
    assert!(error.is_retryable());
}

#[tokio::test]
async fn server_error_with_a_non_json_body_is_retryable() {
    let fake = FakeTwilio::start(Reply::Text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "upstream exploded",
    ))
    .await;

    let error = fake
        .client()
        .fetch_call("CA1")
        .await
        .expect_err("server error");

    assert!(matches!(
        error,
        TwilioError::Api {
            status: 500,
            code: None,
            ..
        }
    ));
    assert!(error.is_retryable());
}

#[tokio::test]
async fn bad_credentials_are_permanent() {
    let body = r#"{"code": 20003, "detail": "Your AccountSid or AuthToken was incorrect.",
        "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}"#;
    let fake = FakeTwilio::start(Reply::Json(StatusCode::UNAUTHORIZED, body)).await;

    let error = fake
        .client()
        .fetch_message("SM1")
        .await
        .expect_err("unauthorized");

    assert_eq!(error.code(), Some(20003));
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn malformed_success_body_is_a_permanent_decode_error() {
    let fake = FakeTwilio::start(Reply::Json(StatusCode::CREATED, r#"{"unexpected": true}"#)).await;

    let error = fake
        .client()
        .fetch_message("SM1")
        .await
        .expect_err("undecodable");

    assert!(matches!(error, TwilioError::Decode { status: 201, .. }));
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn slow_response_times_out_and_is_retryable() {
    let fake = FakeTwilio::start(Reply::Hang).await;
    let client = fake.client_with(
        Auth::AuthToken(SecretString::from(AUTH_TOKEN)),
        Duration::from_millis(200),
    );

    let error = client.fetch_message("SM1").await.expect_err("timed out");

    assert!(matches!(error, TwilioError::Timeout(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn refused_connection_is_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let client = client_for(
        format!("http://{addr}").parse().expect("url"),
        Auth::AuthToken(SecretString::from(AUTH_TOKEN)),
        Duration::from_secs(5),
    );

    let error = client.fetch_message("SM1").await.expect_err("refused");

    assert!(matches!(error, TwilioError::Connect(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn errors_never_expose_the_auth_token_or_full_numbers() {
    let body = r#"{"code": 21211, "message": "The 'To' number +15558675310 is not a valid phone number.", "status": 400}"#;
    let fake = FakeTwilio::start(Reply::Json(StatusCode::BAD_REQUEST, body)).await;

    let error = fake
        .client()
        .list_messages(&ListMessages {
            to: Some("+15558675310".into()),
            ..ListMessages::default()
        })
        .await
        .expect_err("rejected");

    let rendered = format!("{error} {error:?}");
    assert!(!rendered.contains(AUTH_TOKEN));
    assert!(!rendered.contains("15558675310"), "{rendered}");
}
