//! The durable inbox (issue 14): inbound messages are answered once stored, and reach their
//! conversations once and in order whatever happens to Temporal or the api meanwhile.

use std::time::Duration;

use futures::TryStreamExt;
use futures::future::join_all;
use mongodb::bson::{Document, doc};
use temporalio_client::WorkflowQueryOptions;
use voice_agent_workflows::ConversationWorkflow;

use crate::helpers::{ACCOUNT_SID, AUTH_TOKEN, FROM, Stack, TemporalServer, eventually};

const WAIT: Duration = Duration::from_secs(180);

/// The people of one test run: numbers and message SIDs unique to the run, so conversations
/// left on a shared Temporal server by an earlier run are not in the way.
#[derive(Clone)]
pub(crate) struct Run {
    area: &'static str,
    exchange: u16,
    salt: u64,
}

impl Run {
    pub(crate) fn new(area: &'static str) -> Self {
        let r = uuid::Uuid::new_v4().as_u128();
        Self {
            area,
            exchange: 200 + (r % 700) as u16,
            salt: (r >> 64) as u64 & 0xffff_ffff,
        }
    }

    pub(crate) fn person(&self, p: usize) -> String {
        format!("+1{}{}{p:04}", self.area, self.exchange)
    }

    /// A Twilio-style SID for message `n` of person `p`.
    pub(crate) fn sid(&self, p: usize, n: usize) -> String {
        format!("SM{:016x}{:016x}", (self.salt << 20) + p as u64, n as u64)
    }
}

/// Posts an inbound SMS to `api` signed as Twilio signs it for `api`'s public URL. Returns
/// the status, or `None` when the api could not be reached.
pub(crate) async fn post_sms(
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
pub(crate) async fn conversation_inbound(
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
    // A failed query or a short count is kept as the last error, so a timeout says which.
    let state = eventually(
        &format!("{count} messages in the conversation"),
        WAIT,
        || async {
            let state = handle
                .query(
                    ConversationWorkflow::transcript,
                    (),
                    WorkflowQueryOptions::default(),
                )
                .await?;
            if state.inbound_count >= count {
                return Ok(Some(state));
            }
            let held: Vec<&str> = state.recent.iter().map(|m| m.id.as_str()).collect();
            anyhow::bail!(
                "{} inbound so far; held: {held:?}; run {}",
                state.inbound_count,
                state.generation
            )
        },
    )
    .await;
    let state = match state {
        Ok(state) => state,
        Err(e) => {
            let waiting: Vec<Document> = stack
                .mongo
                .collection::<Document>("inbox")
                .find(doc! {})
                .limit(20)
                .await?
                .try_collect()
                .await?;
            anyhow::bail!("{from}: {e:#}; the inbox holds {waiting:?}");
        }
    };
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

/// One message through the whole path, so every process is up and polling before the test
/// takes Temporal away.
async fn warm_up(stack: &Stack, run: &Run) -> anyhow::Result<()> {
    let warm = run.person(9_999);
    assert_eq!(
        post_sms(
            &stack.http,
            &stack.api_http,
            &warm,
            &run.sid(9_999, 0),
            "hi"
        )
        .await,
        Some(200)
    );
    conversation_inbound(stack, &warm, 1).await?;
    Ok(())
}

pub(crate) async fn assert_inbox_empty(stack: &Stack) -> anyhow::Result<()> {
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
    let run = Run::new("415");
    let mut temporal = TemporalServer::start().await?;
    let stack = Stack::start_with(&temporal.address).await?;
    warm_up(&stack, &run).await?;

    temporal.stop().await?;
    // A minute without Temporal, messages arriving all along: each is answered 200.
    for round in 0..ROUNDS {
        let posts = (0..PEOPLE).map(|p| {
            let (http, api) = (stack.http.clone(), stack.api_http.clone());
            let (from, id) = (run.person(p), run.sid(p, round));
            async move { post_sms(&http, &api, &from, &id, &format!("r{round}")).await }
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
        let ids = conversation_inbound(&stack, &run.person(p), ROUNDS as u64).await?;
        let sent: Vec<String> = (0..ROUNDS).map(|r| run.sid(p, r)).collect();
        assert_eq!(ids, sent, "person {p}: out of order");
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
    let run = Run::new("628");
    let mut stack = Stack::start().await?;

    // Each person texts EACH messages one after the other; a message the api did not answer
    // 200 is sent again (with its MessageSid), as an operator replaying Twilio's log would.
    let senders: Vec<_> = (0..PEOPLE)
        .map(|p| {
            let (http, api, run) = (stack.http.clone(), stack.api_http.clone(), run.clone());
            tokio::spawn(async move {
                let mut answered_first_time = Vec::new();
                for n in 0..EACH {
                    let mut first = true;
                    let deadline = tokio::time::Instant::now() + WAIT;
                    loop {
                        if post_sms(
                            &http,
                            &api,
                            &run.person(p),
                            &run.sid(p, n),
                            &format!("m{n}"),
                        )
                        .await
                            == Some(200)
                        {
                            if first {
                                answered_first_time.push(run.sid(p, n));
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
    // What the killed api had answered but not handed over yet, or had not been sent at all.
    let unfinished = stack
        .mongo
        .collection::<Document>("messages")
        .count_documents(doc! { "handed_over_at": { "$exists": true } })
        .await?;
    assert!(
        unfinished < (PEOPLE * EACH) as u64,
        "the burst was over before the kill"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.start_api().await?;

    for (p, sender) in senders.into_iter().enumerate() {
        sender.await?;
        let ids = conversation_inbound(&stack, &run.person(p), EACH as u64).await?;
        let sent: Vec<String> = (0..EACH).map(|n| run.sid(p, n)).collect();
        assert_eq!(ids, sent, "person {p}: lost or out of order");
    }
    assert_inbox_empty(&stack).await?;
    Ok(())
}

#[tokio::test]
async fn two_apis_share_one_backlog_and_the_second_finishes_it_when_the_first_dies()
-> anyhow::Result<()> {
    const PEOPLE: usize = 60;
    const EACH: usize = 3;
    let run = Run::new("510");
    let mut temporal = TemporalServer::start().await?;
    let mut stack = Stack::start_with(&temporal.address).await?;
    let (_second, second_url) = stack.spawn_api().await?;
    warm_up(&stack, &run).await?;

    // A backlog stored through both apis, while Temporal is away.
    temporal.stop().await?;
    let apis = [stack.api_http.clone(), second_url];
    for n in 0..EACH {
        let posts = (0..PEOPLE).map(|p| {
            let (http, api) = (stack.http.clone(), apis[(p + n) % 2].clone());
            let (from, id) = (run.person(p), run.sid(p, n));
            async move { post_sms(&http, &api, &from, &id, &format!("m{n}")).await }
        });
        let statuses = join_all(posts).await;
        assert!(statuses.iter().all(|s| *s == Some(200)), "{statuses:?}");
    }
    // The first api holds the lease (it started first); it dies in the middle of the drain.
    let holder = stack
        .mongo
        .collection::<Document>("leases")
        .find_one(doc! { "_id": "inbox" })
        .await?
        .and_then(|d| d.get_str("holder").ok().map(str::to_owned));
    assert!(holder.is_some(), "nobody holds the inbox lease");
    temporal.start_again().await?;
    let total = (PEOPLE * EACH) as u64;
    let left = eventually("the drain to be under way", WAIT, || async {
        let left = stack
            .mongo
            .collection::<Document>("inbox")
            .count_documents(doc! {})
            .await?;
        Ok((left < total).then_some(left))
    })
    .await?;
    stack.kill_api().await?;
    let taken_over = eventually("the second api to take the lease", WAIT, || async {
        let now = stack
            .mongo
            .collection::<Document>("leases")
            .find_one(doc! { "_id": "inbox" })
            .await?
            .and_then(|d| d.get_str("holder").ok().map(str::to_owned));
        Ok((now.is_some() && now != holder).then_some(()))
    })
    .await;
    if left > 0 {
        taken_over?;
    }

    for p in 0..PEOPLE {
        let ids = conversation_inbound(&stack, &run.person(p), EACH as u64).await?;
        let sent: Vec<String> = (0..EACH).map(|n| run.sid(p, n)).collect();
        assert_eq!(ids, sent, "person {p}: out of order");
    }
    assert_inbox_empty(&stack).await?;
    Ok(())
}

#[tokio::test]
async fn a_worker_started_while_temporal_is_down_waits_for_it() -> anyhow::Result<()> {
    let run = Run::new("707");
    let mut temporal = TemporalServer::start().await?;
    let mut stack = Stack::start_with(&temporal.address).await?;
    warm_up(&stack, &run).await?;

    // The worker restarts while Temporal is away, for longer than the SDK's own start-up
    // check retries (about ten seconds).
    stack.kill_worker().await?;
    temporal.stop().await?;
    stack.start_worker()?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    temporal.start_again().await?;

    // Answering a query takes a polling worker.
    let from = run.person(1);
    assert_eq!(
        post_sms(
            &stack.http,
            &stack.api_http,
            &from,
            &run.sid(1, 0),
            "still there?"
        )
        .await,
        Some(200)
    );
    let ids = conversation_inbound(&stack, &from, 1).await?;
    assert_eq!(ids, [run.sid(1, 0)]);
    Ok(())
}
