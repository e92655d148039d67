//! The dashboard's figures against the MongoDB-wire server: the daily counters against a
//! recount of the documents after repeated, out-of-order and concurrent writes, their repair
//! after a lost count, the rebuild of data from before them, and campaign items from the
//! campaigns' counters.

use std::time::Duration;

use mongodb::bson::{DateTime, Document, doc};
use voice_agent_domain::{Channel, MessageStatus};
use voice_agent_store::stats::Stats;
use voice_agent_store::{CallLogDoc, InboundMessage, MongoStore, NewOutboundMessage};

use crate::store;

const DAY_MS: i64 = 86_400_000;

fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

fn midnight(days_ago: i64) -> DateTime {
    let d = today() - chrono::Days::new(u64::try_from(days_ago).unwrap());
    DateTime::from_millis(d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis())
}

/// The counters' figures and a recount's, messages and calls only, over the last `days` days.
async fn counted_and_recounted(store: &MongoStore, days: i64) -> (Stats, Stats) {
    let mut counted = store.stats(midnight(days - 1)).await.expect("stats");
    counted.campaign_items.clear();
    let tomorrow = DateTime::from_millis(midnight(0).timestamp_millis() + DAY_MS);
    let recounted = store
        .stats_by_aggregation(midnight(days - 1), tomorrow)
        .await
        .expect("recount");
    (counted, recounted)
}

fn outbound(id: &str, channel: Channel) -> NewOutboundMessage {
    NewOutboundMessage {
        id: id.to_owned(),
        channel,
        from: Some("+15005550006".to_owned()),
        messaging_service_sid: None,
        to: "+14155550100".to_owned(),
        body: "hello".to_owned(),
        conversation_id: None,
    }
}

fn inbound(sid: &str, channel: Channel) -> InboundMessage {
    InboundMessage {
        message_sid: sid.to_owned(),
        channel,
        from: "+14155550100".to_owned(),
        to: "+15005550006".to_owned(),
        body: "hi".to_owned(),
        conversation_id: "conversation-15005550006-14155550100".to_owned(),
    }
}

fn call(id: &str, started_at: Option<String>, outcome: Option<&str>) -> CallLogDoc {
    CallLogDoc {
        id: id.to_owned(),
        call_id: id.split('/').next().unwrap().to_owned(),
        attempt: 1,
        call_sid: None,
        direction: "outbound".to_owned(),
        from: "+15005550006".to_owned(),
        to: "+14155550100".to_owned(),
        status: "completed".to_owned(),
        outcome: outcome.map(str::to_owned),
        answered_by: None,
        started_at,
        answered_at: None,
        ended_at: None,
        duration_secs: None,
        transcript: Vec::new(),
        disposition: None,
        summary: None,
        recording_url: None,
        campaign_id: None,
        profile: None,
        profile_version: None,
        item_id: None,
        dial_started_at: None,
        created_at: DateTime::now(),
        updated_at: DateTime::now(),
    }
}

fn now_text() -> String {
    DateTime::now().try_to_rfc3339_string().unwrap()
}

#[tokio::test]
async fn counters_equal_a_recount_after_repeated_out_of_order_and_concurrent_writes() {
    let store = store().await;

    // Intents recorded twice (a retried activity) count once.
    for id in ["m1", "m2", "m3", "m4"] {
        for _ in 0..2 {
            store
                .record_outbound_intent(&outbound(id, Channel::Sms))
                .await
                .unwrap();
        }
    }
    store
        .record_outbound_intent(&outbound("w1", Channel::Whatsapp))
        .await
        .unwrap();
    // The provider's answer after its callback, and callbacks repeated and out of order.
    assert!(
        store
            .apply_status_callback(Some("m1"), "SM1", MessageStatus::Sent, None)
            .await
            .unwrap()
    );
    store
        .record_provider_accept("m1", "SM1", MessageStatus::Queued, None)
        .await
        .unwrap();
    for _ in 0..2 {
        store
            .apply_status_callback(Some("m1"), "SM1", MessageStatus::Delivered, None)
            .await
            .unwrap();
    }
    assert!(
        !store
            .apply_status_callback(Some("m1"), "SM1", MessageStatus::Sent, None)
            .await
            .unwrap(),
        "a stale status moves nothing"
    );
    // Found by Twilio's SID alone.
    store
        .apply_status_callback(None, "SM1", MessageStatus::Read, None)
        .await
        .unwrap();
    // A permanent failure recorded twice.
    for _ in 0..2 {
        store
            .record_send_failure("m3", Some(21211), "invalid number")
            .await
            .unwrap();
    }
    // Every status of two messages, each sent three times and out of order, the two messages'
    // callbacks at once: each message moves once per status it really passes. (One message's
    // callbacks at once: `concurrent_callbacks_of_one_message_count_once`, ignored here.)
    let out_of_order = [
        MessageStatus::Undelivered,
        MessageStatus::Sent,
        MessageStatus::Queued,
        MessageStatus::Delivered,
        MessageStatus::Sending,
    ];
    let one_message = async |id: &str, sid: &str| {
        for _ in 0..3 {
            for status in out_of_order {
                store
                    .apply_status_callback(Some(id), sid, status, None)
                    .await
                    .unwrap();
            }
        }
    };
    tokio::join!(one_message("m2", "SM2"), one_message("w1", "SM3"));
    // A webhook delivered twice is stored and counted once.
    for _ in 0..2 {
        store
            .insert_inbound(&inbound("SMin1", Channel::Sms))
            .await
            .unwrap();
    }
    store
        .insert_inbound(&inbound("SMin2", Channel::Whatsapp))
        .await
        .unwrap();
    // Calls: a log written twice; one whose outcome comes later; one not started yet, then
    // started.
    let started = now_text();
    for _ in 0..2 {
        store
            .save_call_log(&call("c1/1", Some(started.clone()), Some("human")))
            .await
            .unwrap();
    }
    store
        .save_call_log(&call("c2/1", Some(started.clone()), None))
        .await
        .unwrap();
    store
        .save_call_log(&call("c2/1", None, Some("busy")))
        .await
        .unwrap();
    store
        .save_call_log(&call("c3/1", None, None))
        .await
        .unwrap();
    store
        .save_call_log(&call("c3/1", Some(started.clone()), Some("voicemail_left")))
        .await
        .unwrap();

    let (counted, recounted) = counted_and_recounted(&store, 1).await;
    assert_eq!(counted, recounted);
    let t = &counted.outbound.total;
    assert_eq!(t.get("read"), Some(&1), "{t:?}");
    assert_eq!(t.get("failed"), Some(&1), "{t:?}");
    assert_eq!(t.get("pending"), Some(&1), "{t:?}");
    assert_eq!(
        t.get("delivered").unwrap_or(&0) + t.get("undelivered").unwrap_or(&0),
        2,
        "{t:?}"
    );
    assert_eq!(t.values().sum::<i64>(), 5, "every message once: {t:?}");
    assert_eq!(
        counted.inbound.total,
        [("sms".to_owned(), 1), ("whatsapp".to_owned(), 1)].into()
    );
    assert_eq!(
        counted.calls.total,
        [
            ("busy".to_owned(), 1),
            ("human".to_owned(), 1),
            ("voicemail_left".to_owned(), 1)
        ]
        .into()
    );
}

/// Ignored: secantusd-rs 0.5.3 fails it about one run in eight. Two concurrent
/// `findAndModify` of one document there can both return the document as it was before either
/// wrote, so a counter moves twice from the same status; MongoDB's single-document atomicity
/// rules that out (docs/benchmarks.md, "The local server is at fault"). Run it against a real
/// MongoDB with `--ignored`.
#[tokio::test]
#[ignore = "the local MongoDB-wire server's findAndModify is not atomic under concurrency"]
async fn concurrent_callbacks_of_one_message_count_once() {
    let store = store().await;
    for id in ["m1", "m2"] {
        store
            .record_outbound_intent(&outbound(id, Channel::Sms))
            .await
            .unwrap();
    }
    let statuses = [
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Undelivered,
    ];
    let mut all = Vec::new();
    for (id, sid) in [("m1", "SM1"), ("m2", "SM2")] {
        for _ in 0..3 {
            for status in statuses {
                all.push((id, sid, status));
            }
        }
    }
    let applied = futures::future::join_all(
        all.iter()
            .map(|(id, sid, status)| store.apply_status_callback(Some(id), sid, *status, None)),
    )
    .await;
    assert!(applied.iter().all(Result::is_ok), "{applied:?}");
    let (counted, recounted) = counted_and_recounted(&store, 1).await;
    assert_eq!(counted, recounted);
    let t = &counted.outbound.total;
    assert_eq!(t.values().sum::<i64>(), 2, "every message once: {t:?}");
}

#[tokio::test]
async fn a_count_lost_in_a_crash_is_repaired_once_the_day_is_quiet() {
    let store = store().await;
    store
        .record_outbound_intent(&outbound("m1", Channel::Sms))
        .await
        .unwrap();
    // A process died after moving a message and before counting the move.
    store
        .database()
        .collection::<Document>(voice_agent_store::schema::MESSAGES)
        .update_one(
            doc! { "_id": "m1" },
            doc! { "$set": { "status": "delivered", "status_rank": 5 } },
        )
        .await
        .unwrap();
    let (counted, recounted) = counted_and_recounted(&store, 1).await;
    assert_ne!(
        counted, recounted,
        "the counters are short of the lost move"
    );

    // Not quiet for long enough yet: nothing is recounted.
    let n = store
        .recount_quiet_stats_days(today(), 30, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(n, 0);
    let n = store
        .recount_quiet_stats_days(today(), 30, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let (counted, recounted) = counted_and_recounted(&store, 1).await;
    assert_eq!(counted, recounted);
    assert_eq!(counted.outbound.total, [("delivered".to_owned(), 1)].into());
    // Recounted since its last counted write: not again.
    assert_eq!(
        store
            .recount_quiet_stats_days(today(), 30, Duration::ZERO)
            .await
            .unwrap(),
        0
    );
    // Counting goes on from the recount.
    store
        .apply_status_callback(Some("m1"), "SM1", MessageStatus::Read, None)
        .await
        .unwrap();
    let (counted, recounted) = counted_and_recounted(&store, 1).await;
    assert_eq!(counted, recounted);
    assert_eq!(counted.outbound.total, [("read".to_owned(), 1)].into());
}

#[tokio::test]
async fn data_from_before_the_counters_is_rebuilt_once_and_counted_by_day() {
    let store = store().await;
    let db = store.database();
    let now = DateTime::now().timestamp_millis();
    let at = DateTime::from_millis;
    let messages = db.collection::<Document>(voice_agent_store::schema::MESSAGES);
    let msg = |id: &str, direction: &str, status: &str, when: i64| {
        doc! { "_id": id, "direction": direction, "channel": "sms", "to": "+1", "body": "",
        "status": status, "status_rank": 0, "created_at": at(when), "updated_at": at(when) }
    };
    // Written directly: as if stored before the counters existed.
    messages
        .insert_many([
            msg("a", "outbound", "delivered", now - 1000),
            msg("b", "outbound", "delivered", now - DAY_MS),
            msg("c", "outbound", "failed", now - 1000),
            msg("d", "inbound", "received", now - 1000),
            // Before the window: not counted.
            msg("e", "outbound", "delivered", now - 3 * DAY_MS),
        ])
        .await
        .unwrap();
    let calls = db.collection::<Document>(voice_agent_store::schema::CALL_LOGS);
    let text = |ms: i64| {
        at(ms)
            .try_to_rfc3339_string()
            .unwrap()
            .replace('Z', "+00:00")
    };
    calls
        .insert_many([
            doc! { "_id": "c1/1", "started_at": text(now - 1000), "outcome": "human" },
            doc! { "_id": "c2/1", "started_at": text(now - 1000), "outcome": "busy" },
            doc! { "_id": "c3/1", "started_at": text(now - 1000) },
            doc! { "_id": "c4/1", "started_at": text(now - 3 * DAY_MS), "outcome": "human" },
        ])
        .await
        .unwrap();
    let campaigns = db.collection::<Document>(voice_agent_store::schema::CAMPAIGNS);
    campaigns
        .insert_many([
            doc! { "_id": "k1", "created_at": at(now - 1000), "status_counts": { "delivered": 5_i64, "sending": 0_i64 } },
            doc! { "_id": "k2", "created_at": at(now - 3 * DAY_MS), "status_counts": { "delivered": 7_i64 } },
        ])
        .await
        .unwrap();
    let empty = store.stats(midnight(2)).await.unwrap();
    assert!(
        empty.outbound.total.is_empty(),
        "not counted before the rebuild"
    );

    let rebuilt = store.rebuild_stats(today(), 30).await.unwrap();
    assert_eq!(rebuilt.recounted, 30);
    assert_eq!(rebuilt.busy, 0);
    assert_eq!(
        store.rebuild_stats(today(), 30).await.unwrap().recounted,
        0,
        "every day of the window was recounted already"
    );

    let s = store.stats(midnight(2)).await.expect("stats");
    assert_eq!(s.outbound.total.get("delivered"), Some(&2));
    assert_eq!(s.outbound.total.get("failed"), Some(&1));
    assert_eq!(s.inbound.total.get("sms"), Some(&1));
    assert_eq!(s.outbound.by_day.len(), 2, "{:?}", s.outbound.by_day);
    assert_eq!(s.calls.total.get("human"), Some(&1));
    assert_eq!(s.calls.total.get("busy"), Some(&1));
    assert_eq!(s.calls.total.get("in_progress"), Some(&1));
    assert_eq!(s.campaign_items, [("delivered".to_owned(), 5)].into());
    let (counted, recounted) = counted_and_recounted(&store, 3).await;
    assert_eq!(counted, recounted);
}
