//! One sender number shared by two campaigns and single sends: together they keep to the
//! number's limit, measured where Twilio would see it (the simulator's ledger).

use std::time::Duration;

use chrono::{DateTime, Utc};
use mongodb::bson::{Document, doc};
use voice_agent_protos::v1::SendSmsRequest;

use crate::campaigns::{create_and_start, result};
use crate::helpers::{FROM, Stack, eventually};

const WAIT: Duration = Duration::from_secs(180);

/// A list of `n` contacts whose ids and numbers start with `prefix`, so several lists can share
/// one database.
async fn list(stack: &Stack, prefix: u32, n: u32) -> anyhow::Result<(String, Vec<String>)> {
    let list_id = format!("cl_{}", uuid::Uuid::new_v4().simple());
    stack
        .mongo
        .collection::<Document>("contact_lists")
        .insert_one(doc! { "_id": &list_id, "name": "shared sender" })
        .await?;
    let phones: Vec<String> = (0..n)
        .map(|i| format!("+1415555{:04}", prefix * 100 + i))
        .collect();
    let docs: Vec<Document> = phones
        .iter()
        .enumerate()
        .map(|(i, p)| {
            doc! {
                "_id": format!("ct_{prefix}_{i:04}"),
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

/// The most messages from `from` the ledger holds in any window of `window`.
fn busiest_window(ledger: &[serde_json::Value], from: &str, window: Duration) -> usize {
    let mut at: Vec<DateTime<Utc>> = ledger
        .iter()
        .filter(|m| m["from"].as_str() == Some(from))
        .filter_map(|m| m["date_created"].as_str()?.parse().ok())
        .collect();
    at.sort();
    let window = chrono::Duration::from_std(window).expect("window");
    (0..at.len())
        .map(|i| at[i..].iter().take_while(|t| **t < at[i] + window).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn two_campaigns_and_single_sends_on_one_number_keep_to_the_numbers_limit()
-> anyhow::Result<()> {
    // Arrange: the number takes 5 messages a second; each campaign alone asks for 5 a second.
    const LIMIT: usize = 5;
    let limits = format!("{FROM}={LIMIT}");
    let stack = Stack::start_with_env(&[("SENDER_LIMITS", limits.as_str())]).await?;
    let (first_list, first_phones) = list(&stack, 30, 40).await?;
    let (second_list, second_phones) = list(&stack, 40, 40).await?;
    let singles: Vec<String> = (0..10).map(|i| format!("+14155555{i:03}")).collect();

    // Act: both campaigns at once, and single sends while they run.
    let first = create_and_start(&stack, &first_list, LIMIT as f64).await?;
    let second = create_and_start(&stack, &second_list, LIMIT as f64).await?;
    let mut grpc = stack.grpc().await?;
    for to in &singles {
        grpc.send_sms(SendSmsRequest {
            to: to.clone(),
            body: "Your order has shipped".to_owned(),
            ..Default::default()
        })
        .await?;
    }
    let first_counters = result(&stack, &first).await?;
    let second_counters = result(&stack, &second).await?;
    eventually("every single send in the ledger", WAIT, || async {
        let counts = crate::campaigns::ledger_counts(&stack).await?;
        Ok(singles
            .iter()
            .all(|to| counts.contains_key(to))
            .then_some(()))
    })
    .await?;

    // Assert: every item and single send went out exactly once...
    for counters in [&first_counters, &second_counters] {
        assert_eq!(counters.total, 40, "{counters:?}");
        assert_eq!(counters.accepted + counters.reconciled, 40, "{counters:?}");
    }
    let counts = crate::campaigns::ledger_counts(&stack).await?;
    for to in first_phones.iter().chain(&second_phones).chain(&singles) {
        assert_eq!(
            counts.get(to),
            Some(&1),
            "{to} received {:?}",
            counts.get(to)
        );
    }
    // ...and never more than the number's limit in any second: the slots allow LIMIT + 1 in a
    // window; one more for the request's way to the provider. Two campaigns at their own rates
    // would reach twice the limit.
    let ledger = stack
        .admin(reqwest::Method::GET, "/admin/ledger", None)
        .await?;
    let ledger = ledger["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(ledger.len(), 90);
    let busiest = busiest_window(&ledger, FROM, Duration::from_secs(1));
    assert!(
        busiest <= LIMIT + 2,
        "{busiest} messages from one number within a second; its limit is {LIMIT}"
    );
    Ok(())
}
