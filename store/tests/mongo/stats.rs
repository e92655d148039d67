//! The dashboard's figures against the MongoDB-wire server: windowed by time, by status and
//! by day, and campaign items from the campaigns' counters.

use mongodb::bson::{DateTime, Document, doc};

use crate::store;

#[tokio::test]
async fn stats_count_the_window_by_status_outcome_and_day() {
    let store = store().await;
    let db = store.database();
    let day = 86_400_000_i64;
    let now = DateTime::now().timestamp_millis();
    let since = DateTime::from_millis(now - 2 * day);
    let at = |ms: i64| DateTime::from_millis(ms);
    let messages = db.collection::<Document>(voice_agent_store::schema::MESSAGES);
    let msg = |id: &str, direction: &str, status: &str, when: i64| {
        doc! { "_id": id, "direction": direction, "channel": "sms", "to": "+1", "body": "",
        "status": status, "status_rank": 0, "created_at": at(when), "updated_at": at(when) }
    };
    messages
        .insert_many([
            msg("a", "outbound", "delivered", now - 1000),
            msg("b", "outbound", "delivered", now - day),
            msg("c", "outbound", "failed", now - 1000),
            msg("d", "inbound", "received", now - 1000),
            // Before the window: not counted.
            msg("e", "outbound", "delivered", now - 3 * day),
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
            doc! { "_id": "c4/1", "started_at": text(now - 3 * day), "outcome": "human" },
        ])
        .await
        .unwrap();
    let campaigns = db.collection::<Document>(voice_agent_store::schema::CAMPAIGNS);
    campaigns
        .insert_many([
            doc! { "_id": "k1", "created_at": at(now - 1000), "status_counts": { "delivered": 5_i64, "sending": 0_i64 } },
            doc! { "_id": "k2", "created_at": at(now - 3 * day), "status_counts": { "delivered": 7_i64 } },
        ])
        .await
        .unwrap();

    let s = store.stats(since).await.expect("stats");
    assert_eq!(s.outbound.total.get("delivered"), Some(&2));
    assert_eq!(s.outbound.total.get("failed"), Some(&1));
    assert_eq!(s.inbound.total.get("sms"), Some(&1));
    assert_eq!(s.outbound.by_day.len(), 2, "{:?}", s.outbound.by_day);
    assert_eq!(s.calls.total.get("human"), Some(&1));
    assert_eq!(s.calls.total.get("busy"), Some(&1));
    assert_eq!(s.calls.total.get("in_progress"), Some(&1));
    assert_eq!(s.campaign_items, [("delivered".to_owned(), 5)].into());
}
