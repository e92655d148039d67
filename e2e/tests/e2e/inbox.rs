//! The durable inbox (issue 14): inbound messages are answered once stored, and reach their
//! conversations once and in order whatever happens to Temporal or the api meanwhile.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use mongodb::bson::{Document, doc};
use serde_json::Value;
use temporalio_client::WorkflowQueryOptions;
use voice_agent_workflows::ConversationWorkflow;

use crate::helpers::{ACCOUNT_SID, AUTH_TOKEN, FROM, Stack, TemporalServer, eventually};

const WAIT: Duration = Duration::from_secs(180);

/// A Twilio-style SID for message `n` of person `p`.
fn sid(p: usize, n: usize) -> String {
    format!("SM{:016x}{:016x}", p as u64 + 0xabc0_0000, n as u64)
}

fn person(p: usize) -> String {
    format!("+1415556{p:04}")
}

/// Posts an inbound SMS to `api` signed as Twilio signs it for `api`'s public URL. Returns
/// the status, or `None` when the api could not be reached.
async fn post_sms(
    http: &reqwest::Client,
    api: &str,
    from: &str,
    sid: &str,
    body: &str,
) -> Option<u16> {
    let url = format!("{api}/twilio/sms");
    let params: Vec<(String, String)> = [
        ("AccountSid", ACCOUNT_SID),
        ("Body", body),
        ("From", from),
        ("MessageSid", sid),
        ("To", FROM),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let signature = voice_agent_twilio::signature::compute_signature(AUTH_TOKEN, &url, &params);
    let resp = http
        .post(&url)
        .header("X-Twilio-Signature", signature)
        .form(&params)
        .send()
        .await
        .ok()?;
    Some(resp.status().as_u16())
}

/// The inbound message ids the conversation with `from` holds, in its order, once it holds
/// `count` of them.
async fn conversation_inbound(
    stack: &Stack,
    from: &str,
    count: u64,
) -> anyhow::Result<Vec<String>> {
    let workflow_id = format!(
        "conversation-{}-{}",
        FROM.trim_start_matches('+'),
        from.trim_start_matches('+')
    );
    let handle = stack
        .temporal()
        .await?
        .get_workflow_handle::<ConversationWorkflow>(workflow_id);
    let state = eventually(
        &format!("{count} messages in the conversation"),
        WAIT,
        || async {
            let state = match handle
                .query(
                    ConversationWorkflow::transcript,
                    (),
                    WorkflowQueryOptions::default(),
                )
                .await
            {
                Ok(s) => s,
                Err(_) => return Ok(None),
            };
            Ok((state.inbound_count >= count).then_some(state))
        },
    )
    .await?;
    assert_eq!(
        state.inbound_count, count,
        "{from}: a message was taken twice"
    );
    Ok(state
        .recent
        .iter()
        .filter(|m| m.direction == "inbound")
        .map(|m| m.id.clone())
        .collect())
}

/// How many signals the conversation's workflow received (its history, every run).
async fn signals_received(stack: &Stack, from: &str) -> anyhow::Result<usize> {
    let workflow_id = format!(
        "conversation-{}-{}",
        FROM.trim_start_matches('+'),
        from.trim_start_matches('+')
    );
    let json = stack
        .temporal()
        .await?
        .get_workflow_handle::<ConversationWorkflow>(workflow_id)
        .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
        .to_json()
        .await?;
    let history: Value = serde_json::from_slice(&json)?;
    Ok(history["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["attributes"]["WorkflowExecutionSignaledEventAttributes"].is_object())
                .count()
        })
        .unwrap_or(0))
}

async fn metric(stack: &Stack, api: &str, name: &str) -> anyhow::Result<Option<f64>> {
    let text = stack
        .http
        .get(format!("{api}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())))
}

/// One message through the whole path, so the worker is polling (a worker that cannot reach
/// Temporal while it starts gives up) before the test takes Temporal away.
async fn warm_up(stack: &Stack) -> anyhow::Result<()> {
    let warm = person(9_999);
    assert_eq!(
        post_sms(&stack.http, &stack.api_http, &warm, &sid(9_999, 0), "hi").await,
        Some(200)
    );
    conversation_inbound(stack, &warm, 1).await?;
    Ok(())
}

async fn assert_inbox_empty(stack: &Stack) -> anyhow::Result<()> {
    eventually("the inbox to be empty", WAIT, || async {
        let left = stack
            .mongo
            .collection::<Document>("inbox")
            .count_documents(doc! {})
            .await?;
        Ok((left == 0).then_some(()))
    })
    .await
}

#[tokio::test]
async fn messages_during_a_temporal_outage_are_answered_and_reach_their_conversations_once_in_order()
-> anyhow::Result<()> {
    const PEOPLE: usize = 20;
    const ROUNDS: usize = 6;
    let mut temporal = TemporalServer::start().await?;
    let stack = Stack::start_with(&temporal.address).await?;
    warm_up(&stack).await?;

    temporal.stop().await?;
    // A minute without Temporal, messages arriving all along: each is answered 200.
    for round in 0..ROUNDS {
        let posts = (0..PEOPLE).map(|p| {
            let (http, api) = (stack.http.clone(), stack.api_http.clone());
            async move {
                post_sms(
                    &http,
                    &api,
                    &person(p),
                    &sid(p, round),
                    &format!("r{round}"),
                )
                .await
            }
        });
        let statuses = join_all(posts).await;
        assert!(
            statuses.iter().all(|s| *s == Some(200)),
            "round {round}: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let pending = eventually("the backlog gauge", WAIT, || async {
        Ok(
            metric(&stack, &stack.api_http, "voice_agent_inbox_pending ")
                .await?
                .filter(|n| *n >= (PEOPLE * ROUNDS) as f64),
        )
    })
    .await?;
    assert_eq!(pending, (PEOPLE * ROUNDS) as f64);
    let age = metric(
        &stack,
        &stack.api_http,
        "voice_agent_inbox_oldest_age_seconds ",
    )
    .await?
    .unwrap_or(0.0);
    assert!(
        age >= 30.0,
        "the oldest message waited a minute, the gauge says {age} s"
    );

    temporal.start_again().await?;
    for p in 0..PEOPLE {
        let ids = conversation_inbound(&stack, &person(p), ROUNDS as u64).await?;
        let sent: Vec<String> = (0..ROUNDS).map(|r| sid(p, r)).collect();
        assert_eq!(ids, sent, "person {p}: out of order");
        assert_eq!(
            signals_received(&stack, &person(p)).await?,
            ROUNDS,
            "person {p}: every message handed over exactly once"
        );
    }
    assert_inbox_empty(&stack).await?;
    let not_marked = stack
        .mongo
        .collection::<Document>("messages")
        .count_documents(doc! { "direction": "inbound", "handed_over_at": { "$exists": false } })
        .await?;
    assert_eq!(not_marked, 0);
    Ok(())
}

#[tokio::test]
async fn the_api_killed_in_a_burst_loses_no_message_it_answered() -> anyhow::Result<()> {
    const PEOPLE: usize = 30;
    const EACH: usize = 5;
    let mut stack = Stack::start().await?;

    // Each person texts EACH messages one after the other; a message the api did not answer
    // 200 is sent again (with its MessageSid), as an operator replaying Twilio's log would.
    let senders: Vec<_> = (0..PEOPLE)
        .map(|p| {
            let (http, api) = (stack.http.clone(), stack.api_http.clone());
            tokio::spawn(async move {
                let mut answered_first_time = Vec::new();
                for n in 0..EACH {
                    let mut first = true;
                    let deadline = tokio::time::Instant::now() + WAIT;
                    loop {
                        if post_sms(&http, &api, &person(p), &sid(p, n), &format!("m{n}")).await
                            == Some(200)
                        {
                            if first {
                                answered_first_time.push(sid(p, n));
                            }
                            break;
                        }
                        first = false;
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "the api never came back"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                answered_first_time
            })
        })
        .collect();
    eventually("part of the burst stored", WAIT, || async {
        let stored = stack
            .mongo
            .collection::<Document>("messages")
            .count_documents(doc! {})
            .await?;
        Ok((stored >= (PEOPLE * EACH / 3) as u64).then_some(()))
    })
    .await?;
    stack.kill_api().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.start_api().await?;

    let mut answered = 0;
    for (p, sender) in senders.into_iter().enumerate() {
        answered += sender.await?.len();
        let ids = conversation_inbound(&stack, &person(p), EACH as u64).await?;
        let sent: Vec<String> = (0..EACH).map(|n| sid(p, n)).collect();
        assert_eq!(ids, sent, "person {p}: lost or out of order");
    }
    assert!(answered > 0);
    assert_inbox_empty(&stack).await?;
    Ok(())
}

#[tokio::test]
async fn two_apis_drain_one_backlog_and_hand_each_message_over_once() -> anyhow::Result<()> {
    const PEOPLE: usize = 30;
    const EACH: usize = 3;
    let mut temporal = TemporalServer::start().await?;
    let stack = Stack::start_with(&temporal.address).await?;
    let (_second, second_url) = stack.spawn_api().await?;
    warm_up(&stack).await?;

    // A backlog stored through both apis, while Temporal is away.
    temporal.stop().await?;
    let apis = [stack.api_http.clone(), second_url];
    let mut by_person: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for n in 0..EACH {
        let posts = (0..PEOPLE).map(|p| {
            let (http, api) = (stack.http.clone(), apis[(p + n) % 2].clone());
            async move { post_sms(&http, &api, &person(p), &sid(p, n), &format!("m{n}")).await }
        });
        let statuses = join_all(posts).await;
        assert!(statuses.iter().all(|s| *s == Some(200)), "{statuses:?}");
        for p in 0..PEOPLE {
            by_person.entry(p).or_default().push(sid(p, n));
        }
    }
    temporal.start_again().await?;

    for (p, sent) in &by_person {
        let ids = conversation_inbound(&stack, &person(*p), EACH as u64).await?;
        assert_eq!(&ids, sent, "person {p}: out of order");
        assert_eq!(
            signals_received(&stack, &person(*p)).await?,
            EACH,
            "person {p}: a message was handed over twice"
        );
    }
    assert_inbox_empty(&stack).await?;
    Ok(())
}
