//! Campaigns end to end: a contact list, a campaign workflow, the simulator's ledger.

use std::collections::BTreeMap;
use std::time::Duration;

use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use temporalio_client::WorkflowGetResultOptions;
use voice_agent_workflows::{CampaignCounters, CampaignWorkflow};

use crate::helpers::{Stack, eventually};

const WAIT: Duration = Duration::from_secs(120);

/// A list of `n` contacts (+1415555 2000 + i), written straight into MongoDB: the contact
/// upload has its own tests; these are about sending.
pub(crate) async fn make_list(stack: &Stack, n: usize) -> anyhow::Result<(String, Vec<String>)> {
    let list_id = format!("cl_{}", uuid::Uuid::new_v4().simple());
    stack
        .mongo
        .collection::<Document>("contact_lists")
        .insert_one(doc! { "_id": &list_id, "name": "e2e list" })
        .await?;
    let phones: Vec<String> = (0..n).map(|i| format!("+1415555{:04}", 2000 + i)).collect();
    let docs: Vec<Document> = phones
        .iter()
        .enumerate()
        .map(|(i, p)| {
            doc! {
                "_id": format!("ct_{i:06}"),
                "list_id": &list_id,
                "phone": p,
                "name": format!("Person {i}"),
                "variables": { "code": format!("C{i}") },
            }
        })
        .collect();
    stack
        .mongo
        .collection::<Document>("contacts")
        .insert_many(docs)
        .await?;
    Ok((list_id, phones))
}

pub(crate) async fn api(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = stack
        .http
        .request(method, format!("{}{path}", stack.api_http));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Creates a campaign from `body` and starts it; its id.
pub(crate) async fn start_campaign(stack: &Stack, body: Value) -> anyhow::Result<String> {
    let (status, created) = api(stack, reqwest::Method::POST, "/api/campaigns", Some(body)).await?;
    anyhow::ensure!(status == 201, "{created}");
    anyhow::ensure!(created["status"] == json!("draft"), "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, started) = api(
        stack,
        reqwest::Method::POST,
        &format!("/api/campaigns/{id}/start"),
        None,
    )
    .await?;
    anyhow::ensure!(status == 200, "{started}");
    Ok(id)
}

pub(crate) async fn create_and_start(
    stack: &Stack,
    list_id: &str,
    rate: f64,
) -> anyhow::Result<String> {
    start_campaign(
        stack,
        json!({
            "name": "Spring reminder",
            "list_id": list_id,
            "template": "Hi {{name}}, your code is {{code}}",
            "rate_per_second": rate,
        }),
    )
    .await
}

/// The progress of campaign `id` as the api at `base` reads it.
async fn progress_on(stack: &Stack, base: &str, id: &str) -> anyhow::Result<Value> {
    let url = format!("{base}/api/campaigns/{id}/progress");
    let resp = stack.http.get(url).send().await?;
    anyhow::ensure!(resp.status() == 200, "{}", resp.text().await?);
    Ok(resp.json().await?)
}

pub(crate) async fn result(stack: &Stack, id: &str) -> anyhow::Result<CampaignCounters> {
    Ok(stack
        .temporal()
        .await?
        .get_workflow_handle::<CampaignWorkflow>(format!("campaign-{id}"))
        .get_result(WorkflowGetResultOptions::default())
        .await?)
}

pub(crate) async fn item_counts(stack: &Stack, id: &str) -> anyhow::Result<BTreeMap<String, i64>> {
    let (status, progress) = api(
        stack,
        reqwest::Method::GET,
        &format!("/api/campaigns/{id}/progress"),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{progress}");
    Ok(serde_json::from_value(progress["counts"].clone())?)
}

pub(crate) async fn ledger_total(stack: &Stack) -> anyhow::Result<u64> {
    Ok(ledger_counts(stack).await?.values().sum())
}

pub(crate) async fn ledger_counts(stack: &Stack) -> anyhow::Result<BTreeMap<String, u64>> {
    let counts = stack
        .admin(reqwest::Method::GET, "/admin/ledger/counts", None)
        .await?;
    Ok(serde_json::from_value(counts["by_to"].clone())?)
}

#[tokio::test]
async fn a_campaign_sends_each_contact_exactly_once_with_its_own_text() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (list_id, phones) = make_list(&stack, 60).await?;

    let id = create_and_start(&stack, &list_id, 0.0).await?;
    let counters = result(&stack, &id).await?;

    assert_eq!(counters.total, 60);
    assert_eq!(counters.accepted + counters.reconciled, 60, "{counters:?}");
    let by_to = ledger_counts(&stack).await?;
    for p in &phones {
        assert_eq!(by_to.get(p), Some(&1), "{p} received {:?}", by_to.get(p));
    }
    let ledger = stack.ledger(&phones[7]).await?;
    assert_eq!(ledger[0]["body"], json!("Hi Person 7, your code is C7"));
    let counts = eventually("every item delivered", WAIT, || async {
        let c = item_counts(&stack, &id).await?;
        Ok((c.get("delivered") == Some(&60)).then_some(c))
    })
    .await?;
    assert_eq!(counts.len(), 1, "{counts:?}");
    let campaign = api(
        &stack,
        reqwest::Method::GET,
        &format!("/api/campaigns/{id}"),
        None,
    )
    .await?
    .1;
    assert_eq!(campaign["status"], json!("completed"));
    assert_eq!(campaign["total_items"], json!(60));
    Ok(())
}

#[tokio::test]
async fn a_campaign_can_be_paused_resumed_sped_up_and_cancelled() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (list_id, phones) = make_list(&stack, 300).await?;
    let id = create_and_start(&stack, &list_id, 4.0).await?;

    eventually("the first messages", WAIT, || async {
        Ok((ledger_total(&stack).await? >= 3).then_some(()))
    })
    .await?;

    // Two api replicas; each keeps a running campaign's last query answer for a second, and
    // these reads fill them. `pass` comes from the workflow's answer (0 without one).
    let (_second_api, second_url) = stack.spawn_api().await?;
    let replicas = [stack.api_http.clone(), second_url];
    for base in &replicas {
        let before = progress_on(&stack, base, &id).await?;
        let seen = (&before["paused"], &before["pass"]);
        assert_eq!(seen, (&json!(false), &json!(1)), "{base}: {before}");
    }
    let (s, paused) = api(
        &stack,
        reqwest::Method::POST,
        &format!("/api/campaigns/{id}/pause"),
        None,
    )
    .await?;
    assert_eq!(s, 200, "{paused}");
    // The pause, sent through the first, shows at once on both.
    for base in &replicas {
        let after = progress_on(&stack, base, &id).await?;
        assert_eq!(after["paused"], json!(true), "{base}: {after}");
    }
    eventually("the campaign to pause", WAIT, || async {
        let c = api(
            &stack,
            reqwest::Method::GET,
            &format!("/api/campaigns/{id}"),
            None,
        )
        .await?
        .1;
        Ok((c["status"] == json!("paused")).then_some(()))
    })
    .await?;
    let at_pause = ledger_total(&stack).await?;
    // Absence of sends can only be observed over time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ledger_total(&stack).await?,
        at_pause,
        "nothing is sent while paused"
    );

    let (s, body) = api(
        &stack,
        reqwest::Method::PUT,
        &format!("/api/campaigns/{id}/rate"),
        Some(json!({"rate_per_second": 40.0})),
    )
    .await?;
    assert_eq!(s, 200, "{body}");
    let (s, body) = api(
        &stack,
        reqwest::Method::POST,
        &format!("/api/campaigns/{id}/resume"),
        None,
    )
    .await?;
    assert_eq!(s, 200, "{body}");
    eventually("sending to resume faster", WAIT, || async {
        Ok((ledger_total(&stack).await? >= at_pause + 60).then_some(()))
    })
    .await?;
    let progress = api(
        &stack,
        reqwest::Method::GET,
        &format!("/api/campaigns/{id}/progress"),
        None,
    )
    .await?
    .1;
    assert_eq!(progress["rate_limit"], json!(40.0), "{progress}");

    let (s, body) = api(
        &stack,
        reqwest::Method::POST,
        &format!("/api/campaigns/{id}/cancel"),
        None,
    )
    .await?;
    assert_eq!(s, 200, "{body}");
    let counters = result(&stack, &id).await?;
    assert!(counters.cancelled > 0, "{counters:?}");

    // Every item ends in exactly one final state, and matches what Twilio received.
    let items: Vec<Document> = {
        use futures::TryStreamExt;
        stack
            .mongo
            .collection::<Document>("campaign_items")
            .find(doc! { "campaign_id": &id })
            .await?
            .try_collect()
            .await?
    };
    assert_eq!(items.len(), 300);
    let by_to = ledger_counts(&stack).await?;
    for item in &items {
        let status = item.get_str("status")?;
        let phone = item.get_str("phone")?;
        let received = by_to.get(phone).copied().unwrap_or(0);
        match status {
            "sent" | "delivered" => assert_eq!(received, 1, "{item}"),
            "cancelled" => assert_eq!(received, 0, "{item}"),
            other => panic!("unexpected final status {other}: {item}"),
        }
    }
    assert!(by_to.values().all(|n| *n == 1));
    assert!(
        phones.iter().filter(|p| by_to.contains_key(*p)).count() as u64
            == counters.accepted + counters.reconciled
    );
    let campaign = api(
        &stack,
        reqwest::Method::GET,
        &format!("/api/campaigns/{id}"),
        None,
    )
    .await?
    .1;
    assert_eq!(campaign["status"], json!("cancelled"));
    stack
        .save_history::<CampaignWorkflow>(
            &format!("campaign-{id}"),
            "campaign-paused-resumed-cancelled",
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn stop_in_the_middle_of_a_campaign_skips_that_contact() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (list_id, phones) = make_list(&stack, 20).await?;
    let quitter = phones[15].clone();
    let id = create_and_start(&stack, &list_id, 4.0).await?;
    // At 4 per second, contact 15 is due after about 4 s; the STOP arrives well before.
    let stop = stack
        .admin(
            reqwest::Method::POST,
            "/admin/inbound",
            Some(json!({"from": quitter, "to": "+15005550006", "body": "Stop"})),
        )
        .await?;
    assert_eq!(stop["status"], json!(200), "{stop}");

    let counters = result(&stack, &id).await?;
    assert_eq!(counters.skipped, 1, "{counters:?}");
    assert!(
        stack.ledger(&quitter).await?.is_empty(),
        "an opted-out contact got the campaign"
    );
    let item = stack
        .mongo
        .collection::<Document>("campaign_items")
        .find_one(doc! { "campaign_id": &id, "phone": &quitter })
        .await?
        .expect("item");
    assert_eq!(item.get_str("status")?, "skipped");
    assert_eq!(item.get_str("reason")?, "opted out");
    for p in phones.iter().filter(|p| **p != quitter) {
        assert_eq!(stack.ledger(p).await?.len(), 1, "{p}");
    }

    // START lifts it: a single send goes through again.
    let start = stack
        .admin(
            reqwest::Method::POST,
            "/admin/inbound",
            Some(json!({"from": quitter, "to": "+15005550006", "body": "START"})),
        )
        .await?;
    assert_eq!(start["status"], json!(200));
    // The START is recorded (so a late repeat of the STOP cannot undo it), as not opted out.
    let suppressed = stack
        .mongo
        .collection::<Document>("suppressions")
        .count_documents(doc! { "_id": &quitter, "opted_out": { "$ne": false } })
        .await?;
    assert_eq!(suppressed, 0);
    Ok(())
}

#[tokio::test]
async fn help_gets_the_configured_reply_and_bad_campaigns_are_refused() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let help = stack
        .admin(
            reqwest::Method::POST,
            "/admin/inbound",
            Some(json!({"from": "+14155550110", "to": "+15005550006", "body": "help"})),
        )
        .await?;
    assert_eq!(help["status"], json!(200));
    assert!(
        help["body"]
            .as_str()
            .unwrap_or_default()
            .contains("<Message>Voice Agent: reply STOP"),
        "{help}"
    );

    for (body, field) in [
        (
            json!({"name": "x", "list_id": "cl_nope", "template": ""}),
            "template",
        ),
        (
            json!({"name": "", "list_id": "cl_nope", "template": "hi"}),
            "name",
        ),
        (
            json!({"name": "x", "list_id": "cl_nope", "template": "hi", "rate_per_second": -1}),
            "rate_per_second",
        ),
        (
            json!({"name": "x", "list_id": "cl_nope", "template": "hi", "channel": "fax"}),
            "channel",
        ),
    ] {
        let (status, err) =
            api(&stack, reqwest::Method::POST, "/api/campaigns", Some(body)).await?;
        assert_eq!(status, 400, "{err}");
        assert!(
            err["error"].as_str().unwrap_or_default().starts_with(field),
            "{err}"
        );
    }
    let (status, err) = api(
        &stack,
        reqwest::Method::POST,
        "/api/campaigns",
        Some(json!({"name": "x", "list_id": "cl_nope", "template": "hi"})),
    )
    .await?;
    assert_eq!(status, 404, "{err}");
    let (status, _) = api(
        &stack,
        reqwest::Method::POST,
        "/api/campaigns/cmp_00000000000000000000000000000000/start",
        None,
    )
    .await?;
    assert_eq!(status, 404);
    let (status, _) = api(
        &stack,
        reqwest::Method::POST,
        "/api/campaigns",
        Some(json!({"nonsense": true})),
    )
    .await?;
    assert_eq!(status, 400);
    Ok(())
}

#[tokio::test]
async fn the_sending_window_holds_in_each_recipients_local_time() -> anyhow::Result<()> {
    use chrono::Timelike;
    let stack = Stack::start().await?;
    let now = chrono::Utc::now();
    let minute = (now.hour() * 60 + now.minute()) as i64;
    let hhmm = |m: i64| {
        let m = m.rem_euclid(24 * 60);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    // Open now in UTC; opens within two minutes at UTC-1; closed for hours at UTC-6.
    let (open, soon, late) = ("+14155554000", "+14155554001", "+14155554002");
    let list_id = format!("cl_{}", uuid::Uuid::new_v4().simple());
    stack
        .mongo
        .collection::<Document>("contact_lists")
        .insert_one(doc! { "_id": &list_id, "name": "zones" })
        .await?;
    stack
        .mongo
        .collection::<Document>("contacts")
        .insert_many(vec![
            doc! { "_id": "ct_1", "list_id": &list_id, "phone": open, "name": "A", "time_zone": "UTC" },
            doc! { "_id": "ct_2", "list_id": &list_id, "phone": soon, "name": "B", "time_zone": "Etc/GMT+1" },
            doc! { "_id": "ct_3", "list_id": &list_id, "phone": late, "name": "C", "time_zone": "Etc/GMT+6" },
        ])
        .await?;
    let (status, created) = api(
        &stack,
        reqwest::Method::POST,
        "/api/campaigns",
        Some(json!({
            "name": "windowed", "list_id": list_id, "template": "Hi {{name}}",
            "window_start": hhmm(minute - 59), "window_end": hhmm(minute + 60),
            "end_at": (now + chrono::Duration::minutes(20)).to_rfc3339(),
        })),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    api(
        &stack,
        reqwest::Method::POST,
        &format!("/api/campaigns/{id}/start"),
        None,
    )
    .await?;

    let counters = result(&stack, &id).await?;
    assert_eq!(counters.skipped, 1, "{counters:?}");
    assert_eq!(stack.ledger(open).await?.len(), 1);
    assert_eq!(
        stack.ledger(soon).await?.len(),
        1,
        "sent once its window opened"
    );
    assert!(stack.ledger(late).await?.is_empty());
    let sent_soon = stack.ledger(soon).await?[0]["date_created"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let opened = chrono::DateTime::parse_from_rfc3339(&sent_soon)?;
    assert!(
        (opened.with_timezone(&chrono::Utc).hour() * 60 + opened.minute()) as i64
            >= (minute + 1).rem_euclid(24 * 60)
            || minute == 24 * 60 - 1,
        "sent at {sent_soon}, before its window opened"
    );
    let late_item = stack
        .mongo
        .collection::<Document>("campaign_items")
        .find_one(doc! { "campaign_id": &id, "phone": late })
        .await?
        .expect("item");
    assert_eq!(late_item.get_str("status")?, "skipped");
    assert!(
        late_item.get_str("reason")?.contains("window"),
        "{late_item}"
    );
    stack
        .save_history::<CampaignWorkflow>(&format!("campaign-{id}"), "campaign-window-deferred")
        .await?;
    Ok(())
}

#[tokio::test]
async fn an_uploaded_spreadsheet_feeds_a_campaign_with_its_columns() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (status, list) = api(
        &stack,
        reqwest::Method::POST,
        "/api/contact-lists",
        Some(json!({"name": "Spring leads"})),
    )
    .await?;
    assert!(status == 200 || status == 201, "{list}");
    let list_id = list["id"].as_str().expect("list id").to_owned();
    let csv = "Phone,Name,Renewal Date\n(415) 555-0131,Ada,May 1\n415.555.0132,Grace,June 2\n+1 415 555 0131,Ada L.,May 1\nnot a number,Bad,\n";
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("leads.csv"),
    );
    let uploaded: Value = stack
        .http
        .post(format!(
            "{}/api/contact-lists/{list_id}/uploads",
            stack.api_http
        ))
        .multipart(form)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(uploaded["imported"], json!(2), "{uploaded}");
    assert_eq!(uploaded["merged"], json!(1), "{uploaded}");
    assert_eq!(uploaded["rejected"], json!(1), "{uploaded}");

    let (status, created) = api(
        &stack,
        reqwest::Method::POST,
        "/api/campaigns",
        Some(json!({"name": "renewals", "list_id": list_id, "template": "Hi {{name}}, renewal on {{Renewal Date}}"})),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    api(
        &stack,
        reqwest::Method::POST,
        &format!("/api/campaigns/{id}/start"),
        None,
    )
    .await?;
    let counters = result(&stack, &id).await?;
    assert_eq!(counters.total, 2, "{counters:?}");
    let ada = stack.ledger("+14155550131").await?;
    assert_eq!(ada.len(), 1, "merged duplicates get one message: {ada:?}");
    assert_eq!(ada[0]["body"], json!("Hi Ada L., renewal on May 1"));
    let grace = stack.ledger("+14155550132").await?;
    assert_eq!(grace[0]["body"], json!("Hi Grace, renewal on June 2"));
    Ok(())
}
