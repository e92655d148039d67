//! The store against a real MongoDB-wire server (`VA_TEST_MONGODB_URI`, set by
//! scripts/test.sh). Each test uses a fresh database.

use mongodb::bson::doc;
use voice_agent_domain::{Channel, MessageStatus};
use voice_agent_store::{InboundMessage, InboxEntry, MessageQuery, MongoStore, NewOutboundMessage};

pub(crate) async fn store() -> MongoStore {
    let uri = std::env::var("VA_TEST_MONGODB_URI")
        .expect("VA_TEST_MONGODB_URI is not set: run through scripts/test.sh");
    let name = format!("store_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let store = MongoStore::connect(&uri, &name).await.expect("connect");
    store.ensure_schema().await.expect("schema");
    store
}

fn outbound(id: &str) -> NewOutboundMessage {
    NewOutboundMessage {
        id: id.to_owned(),
        channel: Channel::Sms,
        from: Some("+15005550006".to_owned()),
        messaging_service_sid: None,
        to: "+14155550100".to_owned(),
        body: "hello".to_owned(),
        conversation_id: None,
    }
}

#[tokio::test]
async fn schema_creation_is_idempotent_and_creates_all_collections() {
    let store = store().await;
    store.ensure_schema().await.expect("second run is a no-op");
    let names = store.database().list_collection_names().await.unwrap();
    for c in voice_agent_store::schema::ALL_COLLECTIONS {
        assert!(names.iter().any(|n| n == c), "{c} missing");
    }
}

#[tokio::test]
async fn schema_drops_the_retired_contact_name_index() {
    let store = store().await;
    let contacts = store
        .database()
        .collection::<mongodb::bson::Document>(voice_agent_store::schema::CONTACTS);
    // What an earlier version created.
    contacts
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! { "list_id": 1, "name": 1 })
                .options(
                    mongodb::options::IndexOptions::builder()
                        .name("list_name".to_owned())
                        .build(),
                )
                .build(),
        )
        .await
        .unwrap();
    store
        .ensure_schema()
        .await
        .expect("schema over an old store");
    let names = contacts.list_index_names().await.unwrap();
    assert!(!names.iter().any(|n| n == "list_name"), "{names:?}");
    assert!(names.iter().any(|n| n == "list_phone_unique"), "{names:?}");
    assert!(names.iter().any(|n| n == "phone"), "{names:?}");
}

#[tokio::test]
async fn grouped_item_writes_move_items_forward_only() {
    use voice_agent_store::{CampaignItemDoc, ItemCallback, item_status};
    let store = store().await;
    let items = store
        .database()
        .collection::<CampaignItemDoc>(voice_agent_store::schema::CAMPAIGN_ITEMS);
    for id in ["cp:a", "cp:b", "cp:c"] {
        items
            .insert_one(CampaignItemDoc {
                id: id.to_owned(),
                campaign_id: "cp".to_owned(),
                contact_id: id[3..].to_owned(),
                seq: None,
                seq_key: None,
                phone: "+14155550100".to_owned(),
                variables: Default::default(),
                time_zone: None,
                status: item_status::SENDING.to_owned(),
                status_rank: item_status::rank(item_status::SENDING),
                message_sid: None,
                error_code: None,
                reason: None,
                attempts: 1,
                send_started_at: None,
                batch: None,
                updated_at: mongodb::bson::DateTime::now(),
            })
            .await
            .unwrap();
    }
    let callback = |item: &str, sid: &str, status: &str| ItemCallback {
        item_id: item.to_owned(),
        sid: sid.to_owned(),
        status: status.to_owned(),
        error_code: None,
    };
    // b's delivery report beats the worker's record of its acceptance.
    store
        .apply_item_callbacks(&[callback("cp:b", "SMb", "delivered")])
        .await
        .unwrap();
    let changed = store
        .record_items_accepted(&[
            ("cp:a".to_owned(), "SMa".to_owned()),
            ("cp:b".to_owned(), "SMb".to_owned()),
            ("cp:c".to_owned(), "SMc".to_owned()),
        ])
        .await
        .unwrap();
    assert_eq!(changed, 2, "b is past sent already");
    // One group: a's reports in reverse order, and a report for a message c never sent.
    store
        .apply_item_callbacks(&[
            callback("cp:a", "SMa", "delivered"),
            callback("cp:a", "SMa", "sent"),
            callback("cp:c", "SMx", "failed"),
        ])
        .await
        .unwrap();
    let get = |id: &'static str| {
        let store = store.clone();
        async move { store.get_item(id).await.unwrap().unwrap() }
    };
    let (a, b, c) = (get("cp:a").await, get("cp:b").await, get("cp:c").await);
    assert_eq!(
        (a.status.as_str(), a.message_sid.as_deref()),
        ("delivered", Some("SMa"))
    );
    assert_eq!(
        (b.status.as_str(), b.message_sid.as_deref()),
        ("delivered", Some("SMb"))
    );
    assert_eq!(
        (c.status.as_str(), c.message_sid.as_deref()),
        ("sent", Some("SMc"))
    );
    assert_eq!(store.apply_item_callbacks(&[]).await.unwrap(), 0);
}

#[tokio::test]
async fn finished_items_without_their_attempt_record_are_found() {
    use voice_agent_store::{CampaignItemDoc, ExecutionDoc, item_status};
    let store = store().await;
    let items = store
        .database()
        .collection::<CampaignItemDoc>(voice_agent_store::schema::CAMPAIGN_ITEMS);
    let item = |id: &str, status: &str, attempts: i32| CampaignItemDoc {
        seq: None,
        seq_key: None,
        id: format!("cq:{id}"),
        campaign_id: "cq".to_owned(),
        contact_id: id.to_owned(),
        phone: "+14155550100".to_owned(),
        variables: Default::default(),
        time_zone: None,
        status: status.to_owned(),
        status_rank: item_status::rank(status),
        message_sid: Some(format!("SM{id}")),
        error_code: None,
        reason: None,
        attempts,
        send_started_at: None,
        batch: None,
        updated_at: mongodb::bson::DateTime::now(),
    };
    items
        .insert_many([
            item("a", item_status::DELIVERED, 1), // recorded
            item("b", item_status::DELIVERED, 1), // its record was lost
            item("c", item_status::SENDING, 1),   // still open: reconciled by the retry
            item("d", item_status::DELIVERED, 2), // only its first attempt is recorded
            item("e", item_status::DELIVERED, 1), // past the range
        ])
        .await
        .unwrap();
    let record = |id: &str, attempt: i32| ExecutionDoc {
        campaign_id: "cq".to_owned(),
        item_id: format!("cq:{id}"),
        attempt,
        at: mongodb::bson::DateTime::now(),
        outcome: "accepted".to_owned(),
        error_code: None,
    };
    store
        .record_executions(&[record("a", 1), record("d", 1)])
        .await
        .unwrap();
    // A campaign from before items carried a `seq`: paged by `_id`.
    let now = mongodb::bson::DateTime::now();
    let cq: voice_agent_store::CampaignDoc = mongodb::bson::from_document(doc! {
        "_id": "cq", "name": "cq", "channel": "sms", "template": "Hi", "list_id": "l",
        "rate_per_second": 0.0, "max_attempts": 3, "status": "running",
        "created_at": now, "updated_at": now,
    })
    .unwrap();
    let missing: Vec<String> = store
        .items_missing_executions(&cq, None, Some("cq:d"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(missing, ["cq:b", "cq:d"]);
    let after_b: Vec<String> = store
        .items_missing_executions(&cq, Some("cq:b"), None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(after_b, ["cq:d", "cq:e"]);
}

#[tokio::test]
async fn a_batch_finds_what_its_number_sent_failed_or_skipped() {
    use voice_agent_store::{CampaignItemDoc, item_status};
    let store = store().await;
    let items = store
        .database()
        .collection::<CampaignItemDoc>(voice_agent_store::schema::CAMPAIGN_ITEMS);
    let item = |id: &str| CampaignItemDoc {
        seq: None,
        seq_key: None,
        id: format!("cb:{id}"),
        campaign_id: "cb".to_owned(),
        contact_id: id.to_owned(),
        phone: "+14155550100".to_owned(),
        variables: Default::default(),
        time_zone: None,
        status: item_status::PENDING.to_owned(),
        status_rank: 0,
        message_sid: None,
        error_code: None,
        reason: None,
        attempts: 0,
        send_started_at: None,
        batch: None,
        updated_at: mongodb::bson::DateTime::now(),
    };
    items
        .insert_many(["a", "b", "c", "d", "e", "f"].map(item))
        .await
        .unwrap();
    let ids = |names: &[&str]| names.iter().map(|n| format!("cb:{n}")).collect::<Vec<_>>();
    store.begin_item_sends(&ids(&["a"]), Some(1)).await.unwrap();
    store.record_item_accepted("cb:a", "SMa").await.unwrap();
    store
        .begin_item_sends(&ids(&["b", "c", "d"]), Some(2))
        .await
        .unwrap();
    store.record_item_accepted("cb:b", "SMb").await.unwrap();
    store
        .finish_item_of_attempt("cb:c", 1, item_status::FAILED, Some(21211), "bad")
        .await
        .unwrap();
    // d is still `sending`: the retry reconciles it, so it is not counted as finished.
    store.skip_item("cb:e", "opted out", Some(2)).await.unwrap();
    // f was never touched.
    let now = mongodb::bson::DateTime::now();
    let cb: voice_agent_store::CampaignDoc = mongodb::bson::from_document(doc! {
        "_id": "cb", "name": "cb", "channel": "sms", "template": "Hi", "list_id": "l",
        "rate_per_second": 0.0, "max_attempts": 3, "status": "running",
        "created_at": now, "updated_at": now,
    })
    .unwrap();
    let found = |after: Option<&'static str>, batch: i64| {
        let store = store.clone();
        let cb = cb.clone();
        async move {
            store
                .items_finished_by_batch(&cb, after, None, batch, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|i| (i.id, i.status))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        found(None, 2).await,
        [
            ("cb:b".to_owned(), "sent".to_owned()),
            ("cb:c".to_owned(), "failed".to_owned()),
            ("cb:e".to_owned(), "skipped".to_owned()),
        ]
    );
    assert_eq!(
        found(None, 1).await,
        [("cb:a".to_owned(), "sent".to_owned())]
    );
    assert_eq!(
        found(Some("cb:b"), 2).await,
        [
            ("cb:c".to_owned(), "failed".to_owned()),
            ("cb:e".to_owned(), "skipped".to_owned()),
        ],
        "only after the cursor"
    );
}

#[tokio::test]
async fn recording_an_intent_twice_keeps_the_first() {
    let store = store().await;
    let first = store
        .record_outbound_intent(&outbound("msg_a"))
        .await
        .unwrap();
    let mut changed = outbound("msg_a");
    changed.body = "different".to_owned();
    let second = store.record_outbound_intent(&changed).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(second.body, "hello");
    assert_eq!(second.status(), MessageStatus::Pending);
}

#[tokio::test]
async fn send_attempts_keep_the_first_start_time() {
    let store = store().await;
    store
        .record_outbound_intent(&outbound("msg_b"))
        .await
        .unwrap();
    let before_first = store.begin_send_attempt("msg_b").await.unwrap().unwrap();
    assert!(before_first.send_started_at.is_none());
    let before_second = store.begin_send_attempt("msg_b").await.unwrap().unwrap();
    let first_start = before_second.send_started_at.expect("first start recorded");
    let after = store.get_message("msg_b").await.unwrap().unwrap();
    assert_eq!(after.send_started_at, Some(first_start));
    assert_eq!(after.send_attempts, 2);
}

#[tokio::test]
async fn statuses_never_move_backwards() {
    let store = store().await;
    let sid = "SM0123456789abcdef0123456789abcdef";
    store
        .record_outbound_intent(&outbound("msg_c"))
        .await
        .unwrap();
    // The delivered callback beats the REST answer that says "queued".
    assert!(
        store
            .apply_status_callback(Some("msg_c"), sid, MessageStatus::Delivered, None)
            .await
            .unwrap()
    );
    store
        .record_provider_accept("msg_c", sid, MessageStatus::Queued, None)
        .await
        .unwrap();
    assert!(
        !store
            .apply_status_callback(Some("msg_c"), sid, MessageStatus::Sent, None)
            .await
            .unwrap()
    );
    let m = store.get_message("msg_c").await.unwrap().unwrap();
    assert_eq!(m.status(), MessageStatus::Delivered);
    assert_eq!(m.twilio_sid.as_deref(), Some(sid));
}

#[tokio::test]
async fn a_callback_with_a_foreign_sid_changes_nothing() {
    let store = store().await;
    store
        .record_outbound_intent(&outbound("msg_d"))
        .await
        .unwrap();
    store
        .record_provider_accept(
            "msg_d",
            "SM11111111111111111111111111111111",
            MessageStatus::Queued,
            None,
        )
        .await
        .unwrap();
    let changed = store
        .apply_status_callback(
            Some("msg_d"),
            "SM22222222222222222222222222222222",
            MessageStatus::Failed,
            Some(30003),
        )
        .await
        .unwrap();
    assert!(!changed);
    assert_eq!(
        store.get_message("msg_d").await.unwrap().unwrap().status(),
        MessageStatus::Queued
    );
}

#[tokio::test]
async fn inbound_messages_are_stored_once_per_message_sid() {
    let store = store().await;
    let msg = InboundMessage {
        message_sid: "SM33333333333333333333333333333333".to_owned(),
        channel: Channel::Sms,
        from: "+14155550100".to_owned(),
        to: "+15005550006".to_owned(),
        body: "hi".to_owned(),
        conversation_id: "conversation-15005550006-14155550100".to_owned(),
    };
    let first = store.insert_inbound(&msg).await.unwrap();
    assert!(first.new && !first.handed_over);
    let again = store.insert_inbound(&msg).await.unwrap();
    assert!(!again.new && !again.handed_over);
    assert_eq!(
        again.received_at, first.received_at,
        "the first arrival counts"
    );
    assert_eq!(store.count_messages(doc! {}).await.unwrap(), 1);
    store
        .mark_handed_over(std::slice::from_ref(&msg.message_sid))
        .await
        .unwrap();
    let after = store.insert_inbound(&msg).await.unwrap();
    assert!(
        !after.new && after.handed_over,
        "a repeat after the hand-over is not handed over again"
    );
    let listed = store
        .list_messages(&MessageQuery {
            phone: Some("+14155550100".to_owned()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn inbox_entries_are_stored_once_and_read_oldest_first() {
    let store = store().await;
    let entry = |id: &str, target: &str, seq: i64| InboxEntry {
        id: id.to_owned(),
        kind: "message".to_owned(),
        target: target.to_owned(),
        seq,
        received_at: mongodb::bson::DateTime::now(),
        payload: "{}".to_owned(),
        attempts: 0,
        last_error: None,
    };
    assert!(store.enqueue_inbox(&entry("b", "t1", 2)).await.unwrap());
    assert!(store.enqueue_inbox(&entry("a", "t1", 1)).await.unwrap());
    assert!(store.enqueue_inbox(&entry("c", "t2", 3)).await.unwrap());
    assert!(
        !store.enqueue_inbox(&entry("a", "t1", 9)).await.unwrap(),
        "a repeat is stored once"
    );
    let pending = store.pending_inbox(10, &[]).await.unwrap();
    let ids: Vec<&str> = pending.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(store.pending_inbox(2, &[]).await.unwrap().len(), 2);
    let backlog = store.inbox_backlog().await.unwrap();
    assert_eq!(backlog.pending, 3);
    assert_eq!(backlog.oldest, Some(pending[0].received_at));

    store.fail_inbox("a", &"x".repeat(10_000)).await.unwrap();
    let a = &store.pending_inbox(1, &[]).await.unwrap()[0];
    assert_eq!(a.attempts, 1);
    assert_eq!(
        a.last_error.as_deref().map(str::len),
        Some(500),
        "errors are kept short"
    );

    // A resting target is left out of the read.
    let without_t1: Vec<String> = store
        .pending_inbox(10, &["t1".to_owned()])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(without_t1, ["c"]);

    store.complete_inbox(&["a".to_owned()]).await.unwrap();
    // A refused entry is kept aside, with its reason, and leaves the inbox.
    let c = store
        .pending_inbox(10, &["t1".to_owned()])
        .await
        .unwrap()
        .remove(0);
    store
        .dead_letter_inbox(&c, "invalid argument")
        .await
        .unwrap();
    store
        .dead_letter_inbox(&c, "invalid argument")
        .await
        .unwrap();
    let dead = store
        .database()
        .collection::<mongodb::bson::Document>("inbox_dead")
        .find_one(doc! { "_id": "c" })
        .await
        .unwrap()
        .expect("kept aside");
    assert_eq!(dead.get_str("refused").unwrap(), "invalid argument");
    assert_eq!(dead.get_str("target").unwrap(), "t2");
    let left: Vec<String> = store
        .pending_inbox(10, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, ["b"]);
}

#[tokio::test]
async fn a_lease_has_one_holder_and_is_taken_over_only_when_unrenewed() {
    let store = store().await;
    assert_eq!(store.lease("inbox").await.unwrap(), None);
    assert!(store.claim_lease("inbox", "p1").await.unwrap());
    assert!(
        store.claim_lease("inbox", "p1").await.unwrap(),
        "the holder may claim again"
    );
    assert!(!store.claim_lease("inbox", "p2").await.unwrap());
    let seen = store.lease("inbox").await.unwrap().unwrap();
    assert_eq!(seen.holder.as_deref(), Some("p1"));

    // The holder renews after p2 looked: p2's take-over must fail.
    assert!(store.renew_lease("inbox", "p1").await.unwrap());
    assert!(!store.take_over_lease("inbox", "p2", &seen).await.unwrap());
    assert!(!store.renew_lease("inbox", "p2").await.unwrap());

    // Unrenewed since p2 looked: p2 takes it, and p1 finds out at its next renewal.
    let seen = store.lease("inbox").await.unwrap().unwrap();
    assert!(store.take_over_lease("inbox", "p2", &seen).await.unwrap());
    assert!(!store.renew_lease("inbox", "p1").await.unwrap());
    assert!(
        !store.take_over_lease("inbox", "p3", &seen).await.unwrap(),
        "seen is stale now"
    );

    // A release by a non-holder does nothing; the holder's release frees it at once.
    store.release_lease("inbox", "p1").await.unwrap();
    assert!(!store.claim_lease("inbox", "p3").await.unwrap());
    store.release_lease("inbox", "p2").await.unwrap();
    assert!(store.claim_lease("inbox", "p3").await.unwrap());
}

#[tokio::test]
async fn opt_out_keywords_apply_in_the_order_they_were_sent() {
    let store = store().await;
    let t = |s: i64| mongodb::bson::DateTime::from_millis(1_800_000_000_000 + s * 1000);
    let phone = "+14155550177";
    assert!(store.suppress(phone, "STOP", "sms", t(10)).await.unwrap());
    assert!(store.is_suppressed(phone).await.unwrap());
    assert!(store.unsuppress(phone, t(20)).await.unwrap());
    assert!(!store.is_suppressed(phone).await.unwrap());
    // The STOP delivered again (or an older one arriving late) does not undo the START.
    assert!(!store.suppress(phone, "STOP", "sms", t(10)).await.unwrap());
    assert!(!store.suppress(phone, "STOP", "sms", t(15)).await.unwrap());
    assert!(!store.is_suppressed(phone).await.unwrap());
    assert!(
        store
            .suppressed_among(&[phone.to_owned()])
            .await
            .unwrap()
            .is_empty()
    );
    // A later STOP does.
    assert!(store.suppress(phone, "STOP", "sms", t(30)).await.unwrap());
    assert!(!store.unsuppress(phone, t(25)).await.unwrap());
    assert!(store.is_suppressed(phone).await.unwrap());
    assert_eq!(
        store
            .suppressed_among(&[phone.to_owned()])
            .await
            .unwrap()
            .len(),
        1
    );
    // A START for a number that never opted out is recorded, so an older STOP is ignored.
    let other = "+14155550178";
    assert!(store.unsuppress(other, t(40)).await.unwrap());
    assert!(!store.suppress(other, "STOP", "sms", t(35)).await.unwrap());
    assert!(!store.is_suppressed(other).await.unwrap());
    // Documents of earlier versions (no opted_out field) still mean opted out.
    store
        .database()
        .collection::<mongodb::bson::Document>("suppressions")
        .insert_one(doc! { "_id": "+14155550179", "keyword": "STOP" })
        .await
        .unwrap();
    assert!(store.is_suppressed("+14155550179").await.unwrap());
}

// The page queries of a campaign: their plans must not grow with it.
#[path = "mongo/plans.rs"]
mod plans;

// Contact lists and contacts; under tests/mongo/ so cargo does not build it as a target of its own.
#[path = "mongo/contacts.rs"]
mod contacts;

#[tokio::test]
async fn a_dial_attempt_is_recorded_once_and_tells_a_retry_an_earlier_request_started() {
    use voice_agent_store::NewCallAttempt;
    let store = store().await;
    let attempt = NewCallAttempt {
        id: "call-x/1".to_owned(),
        call_id: "call-x".to_owned(),
        attempt: 1,
        direction: "outbound".to_owned(),
        from: "+15005550006".to_owned(),
        to: "+14155550100".to_owned(),
        campaign_id: None,
        item_id: None,
    };
    let first = store.begin_dial(&attempt).await.expect("first dial");
    let first = first.expect("the intent is recorded before the dial request");
    assert_eq!(first.status, "dialing");
    assert!(
        first.dial_started_at.is_none(),
        "no earlier request: {first:?}"
    );
    assert!(first.call_sid.is_none());

    let again = store.begin_dial(&attempt).await.unwrap().unwrap();
    assert!(
        again.dial_started_at.is_some(),
        "a retry must reconcile first"
    );
    store.record_call_sid(&attempt.id, "CA0123").await.unwrap();
    let third = store.begin_dial(&attempt).await.unwrap().unwrap();
    assert_eq!(third.call_sid.as_deref(), Some("CA0123"));
    assert_eq!(store.call_logs_of("call-x").await.unwrap().len(), 1);
    assert_eq!(
        store.call_log_by_sid("CA0123").await.unwrap().map(|l| l.id),
        Some("call-x/1".to_owned())
    );
}

#[tokio::test]
async fn the_agent_reads_a_contacts_details_leniently() {
    let store = store().await;
    assert!(
        store
            .contact_variables("+14155550100")
            .await
            .unwrap()
            .is_empty()
    );
    // Written by hand (no timestamps, a number where text is expected): still readable.
    store
        .database()
        .collection::<mongodb::bson::Document>("contacts")
        .insert_one(doc! {
            "_id": "ct_1", "list_id": "cl_1", "phone": "+14155550100",
            "first_name": "Ada", "variables": { "plan": "gold", "visits": 3 },
        })
        .await
        .unwrap();
    let vars = store.contact_variables("+14155550100").await.unwrap();
    assert_eq!(vars.get("first_name").map(String::as_str), Some("Ada"));
    assert_eq!(vars.get("plan").map(String::as_str), Some("gold"));
    assert!(!vars.contains_key("visits"));
}

#[tokio::test]
async fn a_campaigns_batch_lease_has_one_holder_and_changes_hands_only_when_not_renewed() {
    let store = store().await;
    let id = "cmp_lease";
    store
        .database()
        .collection::<mongodb::bson::Document>("campaigns")
        .insert_one(doc! { "_id": id, "name": "lease" })
        .await
        .unwrap();
    assert!(store.claim_batch_lease(id, "run/1/1").await.unwrap());
    assert!(
        store.claim_batch_lease(id, "run/1/1").await.unwrap(),
        "the holder claims again"
    );
    assert!(
        !store.claim_batch_lease(id, "run/1/2").await.unwrap(),
        "a second attempt does not get a held lease"
    );
    let seen = store.batch_lease(id).await.unwrap().unwrap();
    assert_eq!(seen.holder.as_deref(), Some("run/1/1"));

    // The holder renews after the waiter looked: the waiter takes nothing.
    assert!(store.renew_batch_lease(id, "run/1/1").await.unwrap());
    assert!(
        !store
            .take_over_batch_lease(id, "run/1/2", &seen)
            .await
            .unwrap()
    );

    // No renewal since it looked: it takes over, and the old holder learns so on renewal.
    let seen = store.batch_lease(id).await.unwrap().unwrap();
    assert!(
        store
            .take_over_batch_lease(id, "run/1/2", &seen)
            .await
            .unwrap()
    );
    assert!(!store.renew_batch_lease(id, "run/1/1").await.unwrap());
    assert!(store.renew_batch_lease(id, "run/1/2").await.unwrap());

    // Only the holder's release frees it.
    store.release_batch_lease(id, "run/1/1").await.unwrap();
    assert_eq!(
        store
            .batch_lease(id)
            .await
            .unwrap()
            .unwrap()
            .holder
            .as_deref(),
        Some("run/1/2")
    );
    store.release_batch_lease(id, "run/1/2").await.unwrap();
    assert_eq!(store.batch_lease(id).await.unwrap().unwrap().holder, None);
    assert!(store.claim_batch_lease(id, "run/2/1").await.unwrap());
}

#[tokio::test]
async fn what_an_idle_conversation_carries_reads_back_for_its_next_run() {
    use voice_agent_store::{AgentTurnRecord, ConversationCarry};
    let store = store().await;
    let id = "conversation-15005550006-14155550100";
    assert_eq!(store.conversation_carry(id).await.unwrap(), None);
    store
        .record_agent_turn(&AgentTurnRecord {
            conversation_id: id.to_owned(),
            turn_id: "SM1".to_owned(),
            status: "handoff".to_owned(),
            ..AgentTurnRecord::default()
        })
        .await
        .unwrap();
    assert_eq!(store.conversation_carry(id).await.unwrap(), None);
    let carry = ConversationCarry {
        conversation_id: id.to_owned(),
        memory: [("name".to_owned(), "Grace".to_owned())].into(),
        status: "handoff".to_owned(),
        seen_ids: vec!["SM1".to_owned(), "SM2".to_owned()],
    };
    store.set_conversation_carry(&carry).await.unwrap();
    assert_eq!(store.conversation_carry(id).await.unwrap(), Some(carry));
}

// Send slots shared by everything that sends from one number.
#[path = "mongo/senders.rs"]
mod senders;

#[path = "mongo/stats.rs"]
mod stats;

// Users, API keys, sessions and the audit log.
#[path = "mongo/auth.rs"]
mod auth;

// Agent profiles, versioned.
#[path = "mongo/profiles.rs"]
mod profiles;

// Previewed contact files kept for their import.
#[path = "mongo/uploads.rs"]
mod uploads;
