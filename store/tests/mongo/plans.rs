//! The page queries a campaign runs, on a campaign large enough to tell: each must read one
//! page through an index that serves its filter and sort, whatever the campaign's or list's
//! size; and the progress counters must agree with the items after every kind of move.

use mongodb::bson::{Bson, DateTime, Document, doc};
use voice_agent_store::campaigns::{
    PAGE_WIDTH, PageQuery, batch_items_by_ids, batch_items_window, contacts_query,
    finished_items_by_ids, finished_items_window, open_items_by_ids, open_items_window,
    pages_query, seq_key,
};
use voice_agent_store::{CampaignDoc, ItemCallback, MongoStore, campaign_status, item_status};

use super::store;

const CONTACTS: usize = 20_000;
const WINDOW: i64 = 1_000;

fn phone(i: usize) -> String {
    // Spread over the number space, not in insertion order.
    format!("+1415{:07}", (i * 7_919) % 10_000_000)
}

async fn contact_list(store: &MongoStore, list_id: &str, n: usize) {
    let contacts = store.database().collection::<Document>("contacts");
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let docs: Vec<Document> = chunk
            .iter()
            .map(|i| doc! { "_id": format!("ct_{list_id}_{i:08}"), "list_id": list_id, "phone": phone(*i), "name": format!("Person {i}") })
            .collect();
        contacts.insert_many(docs).await.expect("contacts");
    }
}

async fn campaign(store: &MongoStore, id: &str, list_id: &str) -> CampaignDoc {
    let now = DateTime::now();
    store
        .database()
        .collection::<Document>("campaigns")
        .insert_one(doc! {
            "_id": id, "name": id, "channel": "sms", "template": "Hi", "list_id": list_id,
            "rate_per_second": 0.0, "max_attempts": 3, "status": campaign_status::STARTING,
            "created_at": now, "updated_at": now,
        })
        .await
        .expect("campaign");
    let far = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let (_, _, done) = store
        .materialize_items(id, list_id, None, far)
        .await
        .expect("materialise");
    assert!(done);
    store.get_campaign(id).await.unwrap().expect("campaign")
}

/// `executionStats` of a `find` with the query's filter, sort and index.
async fn explain(
    store: &MongoStore,
    collection: &str,
    q: &PageQuery,
    limit: Option<i64>,
) -> Document {
    let (filter, sort, hint) = q;
    let mut find = doc! { "find": collection, "filter": filter.clone(), "sort": sort.clone() };
    // The store never hints `_id` (the local server then scans the whole index); the plan
    // must choose it by itself.
    if *hint != "_id_" {
        find.insert("hint", *hint);
    }
    if let Some(limit) = limit {
        find.insert("limit", limit);
    }
    store
        .database()
        .run_command(doc! { "explain": find, "verbosity": "executionStats" })
        .await
        .expect("explain")
}

/// Every stage of a plan, with its index when it scans one.
fn stages(plan: &Document, out: &mut Vec<(String, Option<String>, Option<Document>)>) {
    out.push((
        plan.get_str("stage").unwrap_or_default().to_owned(),
        plan.get_str("indexName").ok().map(str::to_owned),
        plan.get_document("indexBounds").ok().cloned(),
    ));
    if let Ok(input) = plan.get_document("inputStage") {
        stages(input, out);
    }
    if let Ok(inputs) = plan.get_array("inputStages") {
        for p in inputs.iter().filter_map(Bson::as_document) {
            stages(p, out);
        }
    }
}

fn examined(e: &Document, field: &str) -> i64 {
    match e.get_document("executionStats").unwrap().get(field) {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        other => panic!("{field}: {other:?}"),
    }
}

/// The plan scans `index` (no collection scan, no in-memory sort) and reads at most `max`
/// keys and documents.
fn assert_one_page(what: &str, e: &Document, index: &str, max: i64) {
    assert_reads(what, e, index, max + 1, max);
}

/// The plan scans `index` and reads at most `keys` keys and `docs` documents.
fn assert_reads(what: &str, e: &Document, index: &str, keys_max: i64, max: i64) {
    let plan = e
        .get_document("queryPlanner")
        .unwrap()
        .get_document("winningPlan")
        .unwrap();
    let mut found = Vec::new();
    stages(plan, &mut found);
    assert!(
        found.iter().any(|(s, i, _)| match s.as_str() {
            "IXSCAN" => i.as_deref() == Some(index),
            // MongoDB 8 names a lookup by `_id` EXPRESS_IXSCAN (IDHACK before).
            "EXPRESS_IXSCAN" | "IDHACK" => index == "_id_",
            _ => false,
        }),
        "{what}: not an index scan of {index}: {plan}"
    );
    assert!(
        !found.iter().any(|(s, _, _)| s == "SORT" || s == "COLLSCAN"),
        "{what}: sorts in memory or scans the collection: {plan}"
    );
    let keys = examined(e, "totalKeysExamined");
    let docs = examined(e, "totalDocsExamined");
    assert!(
        keys <= keys_max && docs <= max,
        "{what}: {keys} keys, {docs} documents examined for a page of {max}"
    );
}

/// The `seq_key` range is bounded by the window's two keys: on MongoDB the scan reads the
/// window only (the local server reads the whole key range of a one-sided query, so an open
/// end would cost the rest of the campaign there too).
fn assert_bounded_window(what: &str, e: &Document, campaign_id: &str, from: i64, to: i64) {
    let plan = e
        .get_document("queryPlanner")
        .unwrap()
        .get_document("winningPlan")
        .unwrap();
    let mut found = Vec::new();
    stages(plan, &mut found);
    let bounds = found
        .iter()
        .find_map(|(_, _, b)| b.clone())
        .unwrap_or_else(|| panic!("{what}: no index bounds: {plan}"));
    let range = bounds
        .get("seq_key")
        .unwrap_or_else(|| panic!("{what}: no bounds on seq_key: {bounds}"))
        .to_string();
    assert!(
        range.contains(&seq_key(campaign_id, from)) && range.contains(&seq_key(campaign_id, to)),
        "{what}: the range is not the window: {range}"
    );
}

#[tokio::test]
async fn every_page_query_of_a_twenty_thousand_item_campaign_reads_one_page() {
    let store = store().await;
    // Another list and campaign in the same collections: a page must not read them either.
    contact_list(&store, "other", 3_000).await;
    campaign(&store, "cmp_other", "other").await;
    contact_list(&store, "big", CONTACTS).await;
    let c = campaign(&store, "cmp_big", "big").await;
    assert!(c.indexed_items && c.paged_items);
    assert_eq!(
        c.status_counts.get(item_status::PENDING),
        Some(&(CONTACTS as i64))
    );

    // Materialise: a keyset walk of (list_id, phone), from the start and from the middle.
    for after in [None, Some(phone(CONTACTS / 2))] {
        let q = contacts_query("big", after.as_deref());
        let e = explain(&store, "contacts", &q, Some(5_000)).await;
        assert_one_page(
            &format!("materialise after {after:?}"),
            &e,
            "list_phone_unique",
            5_000,
        );
    }

    // Send passes of this version: a window's pages, then its items, both by `_id` alone (the
    // local server bounds only `_id` ranges; docs/benchmarks.md), at the start, middle and
    // end, unaligned with the pages too.
    for from in [0, c.items_seq / 2 + 17, c.items_seq - WINDOW] {
        let what = format!("pages from {from}");
        let e = explain(
            &store,
            "campaign_pages",
            &pages_query("cmp_big", from, from + WINDOW),
            None,
        )
        .await;
        assert_one_page(&what, &e, "_id_", 2);
        assert_eq!(
            examined(&e, "nReturned"),
            (from + WINDOW - 1) / PAGE_WIDTH - from / PAGE_WIDTH + 1,
            "{what}"
        );
        let (items, _) = store
            .next_open_items(&c, Some(&format!("s:{from}")), WINDOW)
            .await
            .unwrap();
        assert_eq!(
            items.len() as i64,
            WINDOW,
            "a window of {WINDOW} numbers holds {WINDOW} items"
        );
        let seqs: Vec<i64> = items.iter().map(|i| i.seq.unwrap()).collect();
        assert_eq!(
            seqs,
            (from..from + WINDOW).collect::<Vec<_>>(),
            "in order, from {from}"
        );
        let ids: Vec<String> = items.into_iter().map(|i| i.id).collect();
        for (what, q) in [
            ("open items by id", open_items_by_ids(&ids)),
            ("finished items by id", finished_items_by_ids(&ids)),
            ("a batch's items by id", batch_items_by_ids(&ids, 7)),
        ] {
            let e = explain(&store, "campaign_items", &q, None).await;
            // A point lookup per id: a seek and a step past it.
            assert_reads(
                &format!("{what} from {from}"),
                &e,
                "_id_",
                2 * WINDOW + 1,
                WINDOW,
            );
        }
    }

    // Send passes of campaigns the previous version materialised: windows of `seq_key`.
    for from in [0, c.items_seq / 2, c.items_seq - WINDOW] {
        for (what, q) in [
            (
                "open items",
                open_items_window("cmp_big", from, from + WINDOW),
            ),
            (
                "finished items",
                finished_items_window("cmp_big", from, from + WINDOW),
            ),
            (
                "a batch's items",
                batch_items_window("cmp_big", from, from + WINDOW, 7),
            ),
        ] {
            let e = explain(&store, "campaign_items", &q, None).await;
            assert_one_page(&format!("{what} from {from}"), &e, "seq_key", WINDOW);
            assert_bounded_window(
                &format!("{what} from {from}"),
                &e,
                "cmp_big",
                from,
                from + WINDOW,
            );
        }
    }

    // The store's own paging: a window per call, the cursor moving on by one window.
    let (items, next) = store
        .next_open_items(&c, Some(&format!("s:{}", c.items_seq / 2)), WINDOW)
        .await
        .unwrap();
    assert_eq!(items.len() as i64, WINDOW);
    assert_eq!(next, Some(format!("s:{}", c.items_seq / 2 + WINDOW)));
    let (items, next) = store
        .next_open_items(&c, Some(&format!("s:{}", c.items_seq)), WINDOW)
        .await
        .unwrap();
    assert!(
        items.is_empty() && next.is_none(),
        "the pass ends after the last window"
    );

    // Callbacks and accepted sends write by `_id`: one key, one document.
    let by_id = (
        doc! { "_id": "cmp_big:ct_big_00000007", "status": item_status::SENDING },
        doc! { "_id": 1 },
        "_id_",
    );
    let e = explain(&store, "campaign_items", &by_id, None).await;
    assert!(examined(&e, "totalDocsExamined") <= 1, "{e}");

    // Cancel is one write over the campaign's own items (once per campaign), never the
    // collection's.
    let cancel = (
        doc! { "campaign_id": "cmp_big", "status": item_status::PENDING },
        doc! {},
        "campaign_contact_unique",
    );
    let e = explain(&store, "campaign_items", &cancel, None).await;
    assert_one_page("cancel", &e, "campaign_contact_unique", CONTACTS as i64);
}

#[tokio::test]
async fn status_counters_agree_with_the_items_after_repeated_and_out_of_order_moves() {
    let store = store().await;
    contact_list(&store, "l", 8).await;
    let c = campaign(&store, "cmp_c", "l").await;
    let ids: Vec<String> = (0..8).map(|i| format!("cmp_c:ct_l_{i:08}")).collect();
    let callback = |i: usize, status: &str| ItemCallback {
        item_id: ids[i].clone(),
        sid: format!("SM{i}"),
        status: status.to_owned(),
        error_code: None,
    };

    // Act: every kind of move, repeated, some callbacks before the send's own record.
    store.begin_item_sends(&ids[..6], None).await.unwrap();
    store.begin_item_sends(&ids[..6], None).await.unwrap();
    store
        .apply_item_callbacks(&[
            callback(0, "delivered"),
            callback(0, "sent"),
            callback(1, "sent"),
        ])
        .await
        .unwrap();
    let accepted: Vec<(String, String)> =
        (0..3).map(|i| (ids[i].clone(), format!("SM{i}"))).collect();
    store.record_items_accepted(&accepted).await.unwrap();
    store.record_items_accepted(&accepted).await.unwrap();
    store
        .apply_item_callbacks(&[
            callback(1, "delivered"),
            callback(1, "delivered"),
            callback(2, "undelivered"),
            callback(2, "sent"),
        ])
        .await
        .unwrap();
    store.release_item(&ids[3], 2).await.unwrap();
    store.release_item(&ids[3], 2).await.unwrap();
    store
        .finish_item(&ids[4], item_status::FAILED, Some(21211), "bad number")
        .await
        .unwrap();
    store
        .finish_item(&ids[4], item_status::SKIPPED, None, "again")
        .await
        .unwrap();
    store
        .finish_item(&ids[6], item_status::SKIPPED, None, "opted out")
        .await
        .unwrap();
    store.cancel_open_items("cmp_c").await.unwrap();
    store.cancel_open_items("cmp_c").await.unwrap();

    // Assert: the counters, read from the campaign document alone, match the items.
    let c = store.get_campaign(&c.id).await.unwrap().unwrap();
    let counted = store.progress_counts(&c).await.unwrap();
    let actual = store.item_counts(&c.id).await.unwrap();
    assert_eq!(counted, actual);
    assert_eq!(actual.values().sum::<i64>(), 8);
    assert_eq!(actual.get(item_status::DELIVERED), Some(&2), "{actual:?}");
}

#[tokio::test]
async fn a_finished_campaigns_counters_left_short_by_a_crash_are_recounted_once_quiet() {
    let store = store().await;
    contact_list(&store, "l", 5).await;
    let c = campaign(&store, "cmp_q", "l").await;
    let campaigns = store.database().collection::<Document>("campaigns");
    // A process died after writing an item and before its counter: one pending too many.
    store
        .database()
        .collection::<Document>("campaign_items")
        .update_one(
            doc! { "_id": "cmp_q:ct_l_00000000" },
            doc! { "$set": { "status": item_status::SKIPPED, "status_rank": 3 } },
        )
        .await
        .unwrap();
    let quiet_since = DateTime::from_millis(DateTime::now().timestamp_millis() - 61_000);
    campaigns
        .update_one(
            doc! { "_id": &c.id },
            doc! { "$set": { "status": campaign_status::COMPLETED, "counts_at": quiet_since } },
        )
        .await
        .unwrap();

    let c = store.get_campaign(&c.id).await.unwrap().unwrap();
    let counts = store.progress_counts(&c).await.unwrap();

    assert_eq!(counts.get(item_status::PENDING), Some(&4));
    assert_eq!(counts.get(item_status::SKIPPED), Some(&1));
    let c = store.get_campaign(&c.id).await.unwrap().unwrap();
    assert_eq!(
        c.status_counts.get(item_status::SKIPPED),
        Some(&1),
        "stored"
    );
    assert!(c.counts_checked_at.is_some());
}

/// Not a test: the reproduction behind docs/benchmarks.md ("The local server reads the whole
/// range"). It prints the server's CPU time per query (`VA_TEST_MONGO_PID` = the server's
/// process id) for one 100-document page of a 100,000-document collection, by the shape of the
/// range. Run with `--ignored --nocapture`.
#[tokio::test]
#[ignore = "diagnostic: prints figures, asserts nothing"]
async fn local_server_range_cost_reproduction() {
    use futures::TryStreamExt;
    let Ok(pid) = std::env::var("VA_TEST_MONGO_PID") else {
        eprintln!("set VA_TEST_MONGO_PID to the MongoDB-wire server's process id");
        return;
    };
    let cpu_ms = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let f: Vec<u64> = stat
            .rsplit_once(')')
            .expect("stat")
            .1
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|v| v.parse().expect("ticks"))
            .collect();
        (f[0] + f[1]) * 10
    };
    let store = store().await;
    let coll = store.database().collection::<Document>("docs");
    for chunk in 0..20 {
        let docs: Vec<Document> = (chunk * 5_000..(chunk + 1) * 5_000)
            .map(|i| doc! { "_id": format!("k{i:08}"), "n": i })
            .collect();
        coll.insert_many(docs).await.expect("insert");
    }
    let shapes = [
        (
            "$gt, limit 100, 90,000 after it",
            doc! { "_id": { "$gt": "k00010000" } },
        ),
        (
            "$gt, limit 100, 200 after it",
            doc! { "_id": { "$gt": "k00099800" } },
        ),
        (
            "$gt and $lt 100 apart",
            doc! { "_id": { "$gt": "k00010000", "$lte": "k00010100" } },
        ),
        (
            "$gt and $lt 90,000 apart",
            doc! { "_id": { "$gt": "k00010000", "$lt": "k00100000" } },
        ),
    ];
    for (what, filter) in shapes {
        let before = cpu_ms();
        for _ in 0..10 {
            let page: Vec<Document> = coll
                .find(filter.clone())
                .sort(doc! { "_id": 1 })
                .limit(100)
                .await
                .expect("find")
                .try_collect()
                .await
                .expect("page");
            assert_eq!(page.len(), 100);
        }
        println!(
            "{what}: {} ms of server CPU per query",
            (cpu_ms() - before) / 10
        );
    }
    // A range on the second field of a compound index, the first one equal everywhere.
    coll.create_index(
        mongodb::IndexModel::builder()
            .keys(doc! { "g": 1, "n": 1 })
            .build(),
    )
    .await
    .expect("index");
    coll.update_many(doc! {}, doc! { "$set": { "g": "a" } })
        .await
        .expect("group");
    for (what, from) in [
        ("compound (g, n), n window of 100 at the start", 0),
        ("compound (g, n), n window of 100 at the end", 99_800),
    ] {
        let before = cpu_ms();
        for _ in 0..10 {
            let page: Vec<Document> = coll
                .find(doc! { "g": "a", "n": { "$gte": from, "$lt": from + 100 } })
                .sort(doc! { "g": 1, "n": 1 })
                .hint(mongodb::options::Hint::Keys(doc! { "g": 1, "n": 1 }))
                .await
                .expect("find")
                .try_collect()
                .await
                .expect("page");
            assert_eq!(page.len(), 100);
        }
        println!(
            "{what}: {} ms of server CPU per query",
            (cpu_ms() - before) / 10
        );
    }
    // One key of a single-field secondary index, and 100 keys of `_id` (what a paged window
    // reads instead).
    coll.create_index(mongodb::IndexModel::builder().keys(doc! { "n": 1 }).build())
        .await
        .expect("index");
    let ids: Vec<String> = (50_000..50_100).map(|i| format!("k{i:08}")).collect();
    for (what, filter, hint, expect) in [
        (
            "single-field secondary index, one key (equality)",
            doc! { "n": 50_000 },
            doc! { "n": 1 },
            1,
        ),
        (
            "_id $in 100 keys, hinted",
            doc! { "_id": { "$in": ids.clone() } },
            doc! { "_id": 1 },
            100,
        ),
        (
            "_id $in 100 keys, not hinted",
            doc! { "_id": { "$in": ids } },
            doc! {},
            100,
        ),
    ] {
        let before = cpu_ms();
        for _ in 0..10 {
            let mut find = coll.find(filter.clone());
            if !hint.is_empty() {
                find = find.hint(mongodb::options::Hint::Keys(hint.clone()));
            }
            let found: Vec<Document> = find
                .await
                .expect("find")
                .try_collect()
                .await
                .expect("found");
            assert_eq!(found.len(), expect);
        }
        println!(
            "{what}: {} ms of server CPU per query",
            (cpu_ms() - before) / 10
        );
    }
    let before = cpu_ms();
    let mut all = coll
        .find(doc! { "_id": { "$gt": "k" } })
        .sort(doc! { "_id": 1 })
        .batch_size(5_000)
        .await
        .expect("find");
    let mut n = 0;
    while all.try_next().await.expect("next").is_some() {
        n += 1;
    }
    println!(
        "one cursor over all {n}: {} ms of server CPU",
        cpu_ms() - before
    );
}

/// A materialise page retried after a crash lists its items again under new numbers: a pass
/// still returns each open item once, in order, and the retried batch's check for lost
/// attempt records reads the pages too.
#[tokio::test]
async fn a_pass_over_pages_listed_twice_returns_each_item_once() {
    const N: usize = 2_500;
    let store = store().await;
    contact_list(&store, "twice", N).await;
    let c = campaign(&store, "cmp_twice", "twice").await;
    let far = std::time::Instant::now() + std::time::Duration::from_secs(600);
    store
        .materialize_items("cmp_twice", "twice", None, far)
        .await
        .expect("materialise again");
    let c2 = store.get_campaign("cmp_twice").await.unwrap().unwrap();
    assert_eq!(
        c2.items_seq,
        2 * c.items_seq,
        "the second run numbers its items anew"
    );
    assert_eq!(
        c2.status_counts.get(item_status::PENDING),
        Some(&(N as i64)),
        "no item is counted twice"
    );

    let mut seen = std::collections::HashSet::new();
    let mut after: Option<String> = None;
    let mut windows: i64 = 0;
    // Per batch number: the cursors around its page and the items it sent.
    let mut batches = Vec::new();
    loop {
        let (items, next) = store
            .next_open_items(&c2, after.as_deref(), 300)
            .await
            .unwrap();
        windows += 1;
        assert!(windows < 100, "the pass ends");
        let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        for id in &ids {
            assert!(seen.insert(id.clone()), "{id} returned twice");
        }
        batches.push((after.clone(), next.clone(), ids.clone()));
        // Sent as a batch does, so the second listing finds them done.
        store.begin_item_sends(&ids, Some(windows)).await.unwrap();
        let accepted: Vec<(String, String)> = ids
            .iter()
            .map(|id| (id.clone(), format!("SM{id}")))
            .collect();
        store.record_items_accepted(&accepted).await.unwrap();
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), N, "every item once");

    // A retried batch finds what its number sent in its range, and nothing another sent.
    let (from, to, sent) = &batches[3];
    let mut found: Vec<String> = store
        .items_finished_by_batch(&c2, from.as_deref(), to.as_deref(), 4, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    found.sort();
    let mut sent = sent.clone();
    sent.sort();
    assert_eq!(found, sent, "batch 4's items");
    assert!(
        store
            .items_finished_by_batch(&c2, from.as_deref(), to.as_deref(), 3, 10_000)
            .await
            .unwrap()
            .is_empty(),
        "batch 3 sent nothing in batch 4's range"
    );
    let to_end = store
        .items_finished_by_batch(&c2, from.as_deref(), None, 4, 50)
        .await
        .unwrap();
    assert_eq!(to_end.len(), 50, "at most the limit");

    // Sent items whose attempt record was lost are found across pages.
    let lost = store
        .items_missing_executions(&c2, Some("s:900"), Some("s:1200"), 10_000)
        .await
        .unwrap();
    assert_eq!(
        lost.len(),
        300,
        "numbers 900-1199 were sent without a record"
    );
    let lost = store
        .items_missing_executions(&c2, Some("s:900"), Some("s:1200"), 50)
        .await
        .unwrap();
    assert_eq!(lost.len(), 50, "at most the limit");
}
