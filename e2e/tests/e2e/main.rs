//! End-to-end tests: real processes, real Temporal, real MongoDB-wire server, the simulator.

mod agent;
mod auth;
mod balancer;
mod campaigns;
mod chaos;
mod continued;
mod durability;
mod helpers;
mod hostile;
mod inbox;
mod live;
mod relay;
mod scale;
mod senders;
mod turns;
mod voice;
mod web;
mod whatsapp;

use std::time::Duration;

use helpers::{AUTH_TOKEN, Stack, eventually};
use mongodb::bson::{Document, doc};
use serde_json::json;
use temporalio_client::{WorkflowGetResultOptions, WorkflowQueryOptions};
use voice_agent_activities::SendMessageOutput;
use voice_agent_protos::v1::{GetMessageRequest, SendSmsRequest};
use voice_agent_workflows::{ConversationWorkflow, SendMessageWorkflow};

const WAIT: Duration = Duration::from_secs(90);

async fn message_status(stack: &Stack, id: &str) -> anyhow::Result<Option<(String, String)>> {
    let mut grpc = stack.grpc().await?;
    match grpc
        .get_message(GetMessageRequest {
            message_id: id.to_owned(),
        })
        .await
    {
        Ok(m) => {
            let m = m.into_inner();
            Ok(Some((m.status, m.twilio_sid)))
        }
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(s.into()),
    }
}

async fn wait_for_status(stack: &Stack, id: &str, want: &str) -> anyhow::Result<String> {
    eventually(&format!("message {id} to be {want}"), WAIT, || async {
        Ok(message_status(stack, id)
            .await?
            .filter(|(status, _)| status == want)
            .map(|(_, sid)| sid))
    })
    .await
}

#[tokio::test]
async fn outbound_sms_ends_delivered_with_exactly_one_message_at_twilio() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let to = "+14155550101";

    let sent = stack
        .grpc()
        .await?
        .send_sms(SendSmsRequest {
            to: "(415) 555-0101".to_owned(),
            body: "Your appointment is tomorrow at 10:00".to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(sent.created);
    assert_eq!(sent.workflow_id, format!("send-{}", sent.message_id));

    let sid = wait_for_status(&stack, &sent.message_id, "delivered").await?;
    let ledger = stack.ledger(to).await?;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["sid"], json!(sid));
    assert_eq!(
        ledger[0]["body"],
        json!("Your appointment is tomorrow at 10:00")
    );
    Ok(())
}

#[tokio::test]
async fn a_repeated_idempotency_key_sends_once() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let request = SendSmsRequest {
        to: "+14155550102".to_owned(),
        body: "once".to_owned(),
        idempotency_key: "order-7".to_owned(),
        ..Default::default()
    };
    let first = stack
        .grpc()
        .await?
        .send_sms(request.clone())
        .await?
        .into_inner();
    wait_for_status(&stack, &first.message_id, "delivered").await?;
    let second = stack.grpc().await?.send_sms(request).await?.into_inner();

    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.message_id, second.message_id);
    assert_eq!(stack.ledger("+14155550102").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_rejected_number_ends_failed_with_twilios_code_and_is_not_retried() -> anyhow::Result<()>
{
    let stack = Stack::start().await?;
    // Twilio's magic number for "unsubscribed recipient" (21610).
    let sent = stack
        .grpc()
        .await?
        .send_sms(SendSmsRequest {
            to: "+15005550004".to_owned(),
            body: "hello".to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    wait_for_status(&stack, &sent.message_id, "failed").await?;
    let m = stack
        .grpc()
        .await?
        .get_message(GetMessageRequest {
            message_id: sent.message_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(m.error_code, 21610);
    let doc = stack
        .mongo
        .collection::<Document>("messages")
        .find_one(doc! { "_id": &sent.message_id })
        .await?
        .expect("message stored");
    assert_eq!(
        doc.get_i32("send_attempts")?,
        1,
        "a permanent failure is not retried"
    );
    Ok(())
}

#[tokio::test]
async fn invalid_requests_get_clear_errors_and_start_nothing() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let mut grpc = stack.grpc().await?;
    for (to, body, field) in [
        ("not a number", "hi", "to"),
        ("+1415555", "hi", "to"),
        ("+14155550103", "", "body"),
        ("+14155550103", &"x".repeat(1601), "body"),
    ] {
        let err = grpc
            .send_sms(SendSmsRequest {
                to: to.to_owned(),
                body: body.to_owned(),
                ..Default::default()
            })
            .await
            .expect_err("invalid request must fail");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{to:?}: {err:?}");
        assert!(err.message().starts_with(field), "{err:?}");
    }
    let err = grpc
        .get_message(GetMessageRequest {
            message_id: "msg_00000000000000000000000000000000".to_owned(),
        })
        .await
        .expect_err("unknown id");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(
        stack
            .mongo
            .collection::<Document>("messages")
            .count_documents(doc! {})
            .await?,
        0
    );
    Ok(())
}

#[tokio::test]
async fn inbound_sms_delivered_twice_is_stored_once_and_reaches_the_conversation()
-> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let first = stack
        .admin(
            reqwest::Method::POST,
            "/admin/inbound",
            Some(json!({"from": "+14155550104", "to": "+15005550006", "body": "Hi there"})),
        )
        .await?;
    assert_eq!(first["status"], json!(200), "{first}");
    let sid = first["message_sid"].as_str().expect("sid").to_owned();
    let again = stack
        .admin(
            reqwest::Method::POST,
            &format!("/admin/inbound/{sid}/redeliver"),
            None,
        )
        .await?;
    assert_eq!(again["status"], json!(200), "{again}");

    let messages = stack.mongo.collection::<Document>("messages");
    assert_eq!(messages.count_documents(doc! { "_id": &sid }).await?, 1);
    let stored = messages
        .find_one(doc! { "_id": &sid })
        .await?
        .expect("stored");
    assert_eq!(stored.get_str("direction")?, "inbound");
    assert_eq!(stored.get_str("from")?, "+14155550104");
    assert_eq!(stored.get_str("body")?, "Hi there");
    let conversation_id = stored.get_str("conversation_id")?.to_owned();
    assert_eq!(conversation_id, "conversation-15005550006-14155550104");

    let temporal = stack.temporal().await?;
    let handle = temporal.get_workflow_handle::<ConversationWorkflow>(conversation_id);
    let transcript = eventually("the conversation to hold the message", WAIT, || async {
        let state = handle
            .query(
                ConversationWorkflow::transcript,
                (),
                WorkflowQueryOptions::default(),
            )
            .await?;
        Ok((state.inbound_count > 0).then_some(state))
    })
    .await?;
    assert_eq!(
        transcript.inbound_count, 1,
        "the duplicate delivery is dropped"
    );
    assert_eq!(transcript.recent.len(), 1);
    assert_eq!(transcript.recent[0].body, "Hi there");
    Ok(())
}

#[tokio::test]
async fn forged_or_unsigned_webhooks_get_403_and_store_nothing() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let forged = stack
        .admin(
            reqwest::Method::POST,
            "/admin/inbound",
            Some(json!({"from": "+14155550105", "to": "+15005550006", "body": "forged", "bad_signature": true})),
        )
        .await?;
    assert_eq!(forged["status"], json!(403), "{forged}");

    let params = [
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("From", "+14155550105"),
        ("To", "+15005550006"),
        ("Body", "unsigned"),
    ];
    let unsigned = stack
        .http
        .post(format!("{}/twilio/sms", stack.api_http))
        .form(&params)
        .send()
        .await?;
    assert_eq!(unsigned.status(), 403);

    // Signed with the right token but for another URL: a replay against a different endpoint.
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let signature = voice_agent_twilio::signature::compute_signature(
        AUTH_TOKEN,
        "https://elsewhere.example/sms",
        &owned,
    );
    let replayed = stack
        .http
        .post(format!("{}/twilio/sms", stack.api_http))
        .header("X-Twilio-Signature", signature)
        .form(&params)
        .send()
        .await?;
    assert_eq!(replayed.status(), 403);

    let status = stack
        .http
        .post(format!(
            "{}/twilio/status?mid=msg_00000000000000000000000000000000",
            stack.api_http
        ))
        .header("X-Twilio-Signature", "bm9wZQ==")
        .form(&[
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("MessageStatus", "delivered"),
        ])
        .send()
        .await?;
    assert_eq!(status.status(), 403);

    assert_eq!(
        stack
            .mongo
            .collection::<Document>("messages")
            .count_documents(doc! {})
            .await?,
        0
    );
    Ok(())
}

/// Sends with Twilio's answer held back, kills the worker once Twilio has accepted the
/// message (so the dead worker never learned the SID), restarts it, and returns the finished
/// workflow's result.
async fn send_through_a_worker_crash(
    stack: &mut Stack,
    to: &str,
) -> anyhow::Result<SendMessageOutput> {
    stack
        .admin(
            reqwest::Method::PUT,
            "/admin/faults",
            Some(json!({"accept_delay_ms": 3000})),
        )
        .await?;
    let sent = stack
        .grpc()
        .await?
        .send_sms(SendSmsRequest {
            to: to.to_owned(),
            body: "exactly once, please".to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    eventually("Twilio to accept the message", WAIT, || async {
        Ok((!stack.ledger(to).await?.is_empty()).then_some(()))
    })
    .await?;
    stack.kill_worker().await?;
    stack
        .admin(
            reqwest::Method::PUT,
            "/admin/faults",
            Some(json!({"accept_delay_ms": 0})),
        )
        .await?;
    stack.start_worker()?;

    let temporal = stack.temporal().await?;
    let output = temporal
        .get_workflow_handle::<SendMessageWorkflow>(sent.workflow_id)
        .get_result(WorkflowGetResultOptions::default())
        .await?;
    assert_eq!(output.message_id, sent.message_id);
    Ok(output)
}

#[tokio::test]
async fn worker_killed_during_a_send_reconciles_with_twilio_and_sends_once() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let to = "+14155550106";
    // No status callback reaches us, so only asking Twilio can reveal the accepted message.
    stack
        .admin(
            reqwest::Method::PUT,
            "/admin/faults",
            Some(json!({"callback_loss_rate": 1.0})),
        )
        .await?;

    let output = send_through_a_worker_crash(&mut stack, to).await?;

    assert!(
        output.reconciled,
        "the retry must adopt the accepted message: {output:?}"
    );
    let ledger = stack.ledger(to).await?;
    assert_eq!(ledger.len(), 1, "sent more than once: {ledger:?}");
    assert_eq!(ledger[0]["sid"], json!(output.provider_id));
    let doc = stack
        .mongo
        .collection::<Document>("messages")
        .find_one(doc! { "_id": &output.message_id })
        .await?
        .expect("message stored");
    assert_eq!(
        doc.get_i32("send_attempts")?,
        2,
        "one crashed attempt, one reconciling: {doc}"
    );
    assert_eq!(doc.get_str("twilio_sid")?, output.provider_id);
    Ok(())
}

#[tokio::test]
async fn worker_killed_during_a_send_ends_delivered_and_sends_once() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let to = "+14155550107";

    let output = send_through_a_worker_crash(&mut stack, to).await?;

    assert!(output.reconciled, "{output:?}");
    let sid = wait_for_status(&stack, &output.message_id, "delivered").await?;
    assert_eq!(sid, output.provider_id);
    let ledger = stack.ledger(to).await?;
    assert_eq!(ledger.len(), 1, "sent more than once: {ledger:?}");
    stack
        .save_history::<SendMessageWorkflow>(
            &format!("send-{}", output.message_id),
            "send-after-worker-crash",
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn health_and_metrics_endpoints_answer() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let health: serde_json::Value = stack
        .http
        .get(format!("{}/healthz", stack.api_http))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        health,
        json!({"status": "ok", "mongodb": "up", "temporal": "up"})
    );
    let metrics = stack
        .http
        .get(format!("{}/metrics", stack.api_http))
        .send()
        .await?;
    assert_eq!(metrics.status(), 200);
    let collections = stack.mongo.list_collection_names().await?;
    for c in [
        "messages",
        "campaigns",
        "campaign_items",
        "campaign_executions",
        "contact_lists",
        "contacts",
        "call_logs",
    ] {
        assert!(collections.iter().any(|n| n == c), "missing collection {c}");
    }
    Ok(())
}
