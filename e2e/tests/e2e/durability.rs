//! Durability holes found by a review of the workflows (issue 13), each reproduced over the
//! real processes: a batch attempt that Temporal gave up on while it still ran, a voice call
//! whose workflow ended without telling its campaign, a cancelled voice campaign whose calls
//! kept dialling, and inputs that used to wedge a campaign.

use std::time::Duration;

use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use temporalio_client::{
    WorkflowGetResultOptions, WorkflowSignalOptions, WorkflowTerminateOptions,
};
use voice_agent_workflows::CampaignWorkflow;

use crate::campaigns::{
    api, create_and_start, item_counts, ledger_counts, make_list, result, start_campaign,
};
use crate::helpers::{Stack, eventually};
use crate::voice::{
    enc, person, ring_in, route_our_number, script_callee, simulator_call, voice_list,
};

const WAIT: Duration = Duration::from_secs(180);

/// Dials the simulator placed to `number`.
pub(crate) async fn dials(stack: &Stack, number: &str) -> anyhow::Result<Vec<Value>> {
    let calls = stack
        .admin(
            reqwest::Method::GET,
            &format!("/admin/calls?to={}", enc(number)),
            None,
        )
        .await?;
    Ok(calls["calls"].as_array().cloned().unwrap_or_default())
}

pub(crate) async fn item(stack: &Stack, campaign_id: &str) -> anyhow::Result<Vec<Document>> {
    use futures::TryStreamExt;
    Ok(stack
        .mongo
        .collection::<Document>("campaign_items")
        .find(doc! { "campaign_id": campaign_id })
        .await?
        .try_collect()
        .await?)
}

async fn total(stack: &Stack) -> anyhow::Result<u64> {
    Ok(ledger_counts(stack).await?.values().sum())
}

/// Before: the retry of a batch whose heartbeats stopped read the same page while the first
/// attempt, only paused, still held it; when it woke it sent what its retry had sent already.
///
/// The worker is frozen just after a send reached Twilio, between two paced sends: what the
/// lease guarantees is that a paused holder starts no send once it may have lost the lease. (A
/// request it had already handed to its HTTP client but not yet written to the socket when it
/// froze would still go out when it wakes; docs/architecture.md says why nothing on our side
/// can exclude that.)
#[tokio::test]
async fn a_batch_frozen_past_its_heartbeat_timeout_never_sends_alongside_its_retry()
-> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let contacts = 40;
    let (list_id, _) = make_list(&stack, contacts).await?;
    // 4 a second: batches of 20 items that take 5 s each, one send every 250 ms.
    let id = create_and_start(&stack, &list_id, 4.0).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while total(&stack).await? < 5 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the campaign did not start sending"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The worker stops mid-batch with most of its page still to go.
    let frozen = stack.freeze_worker()?;
    let at_freeze = total(&stack).await?;
    stack.start_worker()?;
    // The retry (on the new worker) is sending the same page...
    eventually("the retry to send", WAIT, || async {
        Ok((total(&stack).await? >= at_freeze + 3).then_some(()))
    })
    .await?;
    // ...when the first attempt wakes up, every paced send of its page overdue.
    frozen.thaw()?;
    let counters = result(&stack, &id).await?;
    assert_eq!(counters.total, contacts as i64);
    let by_to = ledger_counts(&stack).await?;
    let twice: Vec<_> = by_to.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} numbers got the message more than once, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    assert_eq!(by_to.len(), contacts, "every contact got the message");
    // The retry counts what the frozen attempt sent before it froze (its page no longer holds
    // those items, and the frozen attempt's own result is never used).
    assert_eq!(
        counters.accepted + counters.reconciled,
        contacts as u64,
        "{counters:?}"
    );
    // The counters follow the item writes: the thawed attempt may still owe the count of an
    // item it wrote just before it froze (seen as `sending: 1, sent: -1` for a moment).
    eventually("the progress counters to settle", WAIT, || async {
        let counts = item_counts(&stack, &id).await?;
        let done: i64 = ["sent", "delivered"]
            .iter()
            .map(|s| counts.get(*s).copied().unwrap_or(0))
            .sum();
        let other = counts.values().sum::<i64>() - done;
        anyhow::ensure!(done == contacts as i64 && other == 0, "{counts:?}");
        Ok(Some(()))
    })
    .await?;
    drop(frozen);
    Ok(())
}

/// Before: a voice campaign counted its calls in flight down only on the call's signal; a call
/// workflow that was terminated never sent it, and the campaign waited for ever.
#[tokio::test]
async fn a_voice_campaign_completes_when_a_call_workflow_is_terminated() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    route_our_number(&stack).await?;
    let number = person();
    // A long call: each answer takes 20 s.
    script_callee(
        &stack,
        &number,
        json!({"behaviour": "human", "lines": ["hello", "tell me more", "bye"], "think_ms": 20_000}),
    )
    .await?;
    let list_id = voice_list(&stack, &[(&number, "")]).await?;
    let id = start_campaign(
        &stack,
        json!({"name": "Terminated", "channel": "voice", "list_id": list_id, "max_in_flight": 1}),
    )
    .await?;
    let items = eventually("the call's item", WAIT, || async {
        let items = item(&stack, &id).await?;
        Ok((items.len() == 1 && !dials(&stack, &number).await?.is_empty()).then_some(items))
    })
    .await?;
    let item_id = items[0].get_str("_id")?.to_owned();
    let call_wf = format!("call-{}", item_id.replace(':', "-"));
    let temporal = stack.temporal().await?;
    temporal
        .get_workflow_handle::<voice_agent_workflows::CallWorkflow>(call_wf)
        .terminate(WorkflowTerminateOptions::builder().reason("test").build())
        .await?;
    let counters = tokio::time::timeout(WAIT, result(&stack, &id))
        .await
        .map_err(|_| anyhow::anyhow!("the campaign still waits for a call that ended"))??;
    assert_eq!(counters.outcomes.get("failed"), Some(&1), "{counters:?}");
    let items = item(&stack, &id).await?;
    assert_eq!(items[0].get_str("status")?, "failed", "{:?}", items[0]);
    assert!(
        items[0].get_str("reason")?.contains("terminated"),
        "{:?}",
        items[0]
    );
    stack
        .save_history::<CampaignWorkflow>(&format!("campaign-{id}"), "campaign-voice-call-settled")
        .await?;
    Ok(())
}

/// Before: cancelling a voice campaign abandoned its calls: one ringing rang on, one waiting
/// to retry a busy line dialled again.
#[tokio::test]
async fn cancelling_a_voice_campaign_stops_calls_not_yet_answered() -> anyhow::Result<()> {
    // Calls ring in real seconds: the unanswered one rings for its whole 30 s ring timeout.
    let stack = Stack::start_with_simulator_args(&["--call-second-ms", "1000"]).await?;
    route_our_number(&stack).await?;
    let ringing = person();
    let busy = person();
    script_callee(&stack, &ringing, json!({"behaviour": "no_answer"})).await?;
    script_callee(&stack, &busy, json!({"behaviour": "busy"})).await?;
    let list_id = voice_list(&stack, &[(&ringing, ""), (&busy, "")]).await?;
    let id = start_campaign(
        &stack,
        json!({"name": "Cancelled", "channel": "voice", "list_id": list_id, "max_in_flight": 2,
               "rate_per_second": 10.0, "max_attempts": 3, "retry_after_secs": 8}),
    )
    .await?;
    eventually(
        "both dialled, the busy one waiting to retry",
        WAIT,
        || async {
            let ringing_calls = dials(&stack, &ringing).await?;
            let busy_calls = dials(&stack, &busy).await?;
            let busy_over = busy_calls
                .first()
                .is_some_and(|c| c["status"] == json!("busy"));
            Ok((!ringing_calls.is_empty() && busy_over).then_some(()))
        },
    )
    .await?;
    let (status, body) = api(
        &stack,
        reqwest::Method::POST,
        &format!("/api/campaigns/{id}/cancel"),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let counters = tokio::time::timeout(WAIT, result(&stack, &id))
        .await
        .map_err(|_| anyhow::anyhow!("the cancelled campaign did not finish"))??;
    // Past the busy line's retry time: no second dial.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        dials(&stack, &busy).await?.len(),
        1,
        "the busy line was dialled again"
    );
    let ringing_calls = dials(&stack, &ringing).await?;
    assert_eq!(ringing_calls.len(), 1);
    assert_eq!(
        ringing_calls[0]["status"],
        json!("canceled"),
        "the ringing call was not cancelled: {}",
        ringing_calls[0]
    );
    let items = item(&stack, &id).await?;
    for item in &items {
        assert_eq!(item.get_str("status")?, "cancelled", "{item}");
    }
    assert_eq!(counters.outcomes.get("canceled"), Some(&2), "{counters:?}");
    stack
        .save_history::<CampaignWorkflow>(&format!("campaign-{id}"), "campaign-voice-cancelled")
        .await?;
    for item in &items {
        let item_id = item.get_str("_id")?;
        let phone = item.get_str("phone")?;
        let name = if phone == busy {
            "call-campaign-stopped-while-waiting-to-retry"
        } else {
            "call-campaign-stopped-while-ringing"
        };
        stack
            .save_history::<voice_agent_workflows::CallWorkflow>(
                &format!("call-{}", item_id.replace(':', "-")),
                name,
            )
            .await?;
    }
    Ok(())
}

/// Before: a rate of 1e-300 per second (sent around the API's check) made the batch's pacing
/// overflow and panic on every retry, and a campaign deleted under its workflow retried for ever.
#[tokio::test]
async fn inputs_that_wedged_a_campaign_are_refused_or_end_it() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (list_id, _) = make_list(&stack, 3).await?;
    // The API refuses a rate below one message in 1,000 s.
    let (status, body) = api(
        &stack,
        reqwest::Method::POST,
        "/api/campaigns",
        Some(
            json!({"name": "Slow", "list_id": list_id, "template": "Hi", "rate_per_second": 1e-9}),
        ),
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("rate_per_second"), "{body}");
    // A call longer than Twilio allows (u64::MAX seconds used to fail its workflow for ever).
    let (status, body) = api(
        &stack,
        reqwest::Method::POST,
        "/api/calls",
        Some(json!({"to": person(), "max_duration_secs": u64::MAX})),
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("max_duration_secs"), "{body}");

    // A paused campaign gets the rate straight from Temporal, then resumes.
    let id = create_and_start(&stack, &list_id, 1.0).await?;
    let temporal = stack.temporal().await?;
    let handle = temporal.get_workflow_handle::<CampaignWorkflow>(format!("campaign-{id}"));
    handle
        .signal(
            CampaignWorkflow::set_rate,
            1e-300,
            WorkflowSignalOptions::default(),
        )
        .await?;
    let counters = tokio::time::timeout(WAIT, result(&stack, &id))
        .await
        .map_err(|_| anyhow::anyhow!("the campaign is wedged"))??;
    assert_eq!(counters.accepted, 3, "{counters:?}");

    // A campaign whose document is deleted before it starts ends with a clear failure.
    let start_at = (chrono::Utc::now() + chrono::Duration::seconds(4)).to_rfc3339();
    let (status, created) = api(
        &stack,
        reqwest::Method::POST,
        "/api/campaigns",
        Some(
            json!({"name": "Deleted", "list_id": list_id, "template": "Hi", "start_at": start_at}),
        ),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    let gone = created["id"].as_str().expect("id").to_owned();
    let (status, body) = api(
        &stack,
        reqwest::Method::POST,
        &format!("/api/campaigns/{gone}/start"),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    stack
        .mongo
        .collection::<Document>("campaigns")
        .delete_one(doc! { "_id": &gone })
        .await?;
    let outcome = tokio::time::timeout(
        WAIT,
        temporal
            .get_workflow_handle::<CampaignWorkflow>(format!("campaign-{gone}"))
            .get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the deleted campaign's workflow retries for ever"))?;
    let err = outcome.expect_err("a deleted campaign cannot complete");
    assert!(format!("{err:?}").contains("does not exist"), "{err:?}");
    Ok(())
}

/// Before: a Gather result was added to whatever turn the call was at: one Twilio retried
/// without its idempotency token was a second turn, and one of another call entered this one.
#[tokio::test]
async fn a_gather_result_is_answered_once_per_turn_and_a_foreign_one_is_refused()
-> anyhow::Result<()> {
    use temporalio_client::WorkflowQueryOptions;
    use voice_agent_twilio::signature::compute_signature;

    let stack = Stack::start().await?;
    route_our_number(&stack).await?;
    let caller = person();
    // The simulated caller stays quiet long enough for the test to speak for it.
    let sid = ring_in(&stack, &caller, &["Hello"], 30_000).await?;
    eventually("the greeting", WAIT, || async {
        let call = simulator_call(&stack, &sid).await?;
        Ok(call["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == json!("say")))
            .then_some(()))
    })
    .await?;
    let gather = |call_sid: &str, turn: u32, speech: &str| {
        let url = format!(
            "{}/twilio/voice/gather?wf=call-{sid}&turn={turn}",
            stack.api_http
        );
        let mut params: Vec<(String, String)> = [
            ("CallSid", call_sid),
            ("From", caller.as_str()),
            ("To", "+15005550006"),
            ("AccountSid", crate::helpers::ACCOUNT_SID),
            ("SpeechResult", speech),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        params.sort();
        let signature = compute_signature(crate::helpers::AUTH_TOKEN, &url, &params);
        let req = stack
            .http
            .post(url)
            .header("X-Twilio-Signature", signature)
            .form(&params);
        async move {
            let r = req.send().await?;
            anyhow::ensure!(r.status().is_success(), "{}", r.status());
            Ok::<_, anyhow::Error>(r.text().await?)
        }
    };
    // The greeting was turn 1; its Gather's result, sent twice without a token: one turn.
    let first = gather(&sid, 1, "tell me more").await?;
    let again = gather(&sid, 1, "tell me more").await?;
    assert_eq!(first, again);
    // A result for a turn the call never asked for, and one of another call: refused, and
    // nothing is said into the call.
    let late = gather(&sid, 7, "late words").await?;
    assert!(!late.contains("<Say"), "{late}");
    let other = gather("CA0123456789abcdef0123456789abcdef", 2, "foreign words").await?;
    assert!(!other.contains("<Say"), "{other}");

    let view = stack
        .temporal()
        .await?
        .get_workflow_handle::<voice_agent_workflows::CallWorkflow>(format!("call-{sid}"))
        .query(
            voice_agent_workflows::CallWorkflow::call,
            (),
            WorkflowQueryOptions::default(),
        )
        .await?;
    let said: Vec<&str> = view.transcript.iter().map(|t| t.text.as_str()).collect();
    let count = |text: &str| said.iter().filter(|x| x.contains(text)).count();
    assert_eq!(count("tell me more"), 1, "{said:?}");
    assert_eq!(count("late words"), 0, "{said:?}");
    assert_eq!(count("foreign words"), 0, "{said:?}");
    // The answer's Gather asks for turn 2.
    assert!(first.contains("turn=2"), "{first}");
    Ok(())
}
