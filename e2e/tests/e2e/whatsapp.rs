//! WhatsApp campaigns: free text inside the 24-hour session window, a content template
//! outside it, a clear reason when neither is possible, and 63016 explained.

use std::time::Duration;

use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use temporalio_client::WorkflowGetResultOptions;
use voice_agent_workflows::CampaignWorkflow;

use crate::campaigns::start_campaign;
use crate::helpers::{Stack, eventually};

const SENDER: &str = "+15005550006";
const TEMPLATE: &str = "HX0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(120);

async fn list_of(stack: &Stack, phones: &[&str]) -> anyhow::Result<String> {
    let list_id = format!("cl_{}", uuid::Uuid::new_v4().simple());
    stack
        .mongo
        .collection::<Document>("contact_lists")
        .insert_one(doc! { "_id": &list_id, "name": "wa" })
        .await?;
    let docs: Vec<Document> = phones
        .iter()
        .enumerate()
        .map(|(i, p)| doc! { "_id": format!("ct_{i:04}"), "list_id": &list_id, "phone": *p, "name": format!("Person {i}") })
        .collect();
    stack
        .mongo
        .collection::<Document>("contacts")
        .insert_many(docs)
        .await?;
    Ok(list_id)
}

async fn run_campaign(stack: &Stack, body: Value) -> anyhow::Result<String> {
    let id = start_campaign(stack, body).await?;
    stack
        .temporal()
        .await?
        .get_workflow_handle::<CampaignWorkflow>(format!("campaign-{id}"))
        .get_result(WorkflowGetResultOptions::default())
        .await?;
    Ok(id)
}

async fn item(stack: &Stack, campaign: &str, phone: &str) -> anyhow::Result<Document> {
    Ok(stack
        .mongo
        .collection::<Document>("campaign_items")
        .find_one(doc! { "campaign_id": campaign, "phone": phone })
        .await?
        .expect("item exists"))
}

async fn wa_ledger(stack: &Stack, phone: &str) -> anyhow::Result<Vec<Value>> {
    stack.ledger(&format!("whatsapp:{phone}")).await
}

#[tokio::test]
async fn whatsapp_campaigns_respect_the_session_window() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (open, closed, closed_too) = ("+14155553000", "+14155553001", "+14155553002");
    let list_id = list_of(&stack, &[open, closed, closed_too]).await?;
    stack
        .admin(
            reqwest::Method::PUT,
            &format!("/admin/content/{TEMPLATE}"),
            Some(json!({"body": "Hello {{1}}, we have news"})),
        )
        .await?;
    // One person wrote to us: their window is open.
    let inbound = stack
        .admin(
            reqwest::Method::POST,
            "/admin/inbound",
            Some(json!({"from": format!("whatsapp:{open}"), "to": format!("whatsapp:{SENDER}"), "body": "hi!"})),
        )
        .await?;
    assert_eq!(inbound["status"], json!(200), "{inbound}");

    // With a template: free text inside the window, the template outside it.
    let with_template = run_campaign(
        &stack,
        json!({"name": "wa", "channel": "whatsapp", "from": SENDER, "list_id": list_id,
               "template": "Hi {{name}}, thanks for writing", "content_sid": TEMPLATE,
               "content_variables": {"1": "{{name}}"}}),
    )
    .await?;
    let to_open = wa_ledger(&stack, open).await?;
    assert_eq!(to_open.len(), 1, "{to_open:?}");
    assert_eq!(to_open[0]["body"], json!("Hi Person 0, thanks for writing"));
    assert!(to_open[0]["content_sid"].is_null(), "{to_open:?}");
    let to_closed = wa_ledger(&stack, closed).await?;
    assert_eq!(to_closed.len(), 1, "{to_closed:?}");
    assert_eq!(to_closed[0]["content_sid"], json!(TEMPLATE));
    assert_eq!(to_closed[0]["body"], json!("Hello Person 1, we have news"));
    eventually("every WhatsApp message read", WAIT, || async {
        let mut all = true;
        for p in [open, closed, closed_too] {
            all &= item(&stack, &with_template, p).await?.get_str("status")? == "read";
        }
        Ok(all.then_some(()))
    })
    .await?;

    // Without a template, people outside their window are skipped, saying why.
    let text_only = run_campaign(
        &stack,
        json!({"name": "wa2", "channel": "whatsapp", "from": SENDER, "list_id": list_id, "template": "Second note"}),
    )
    .await?;
    for p in [closed, closed_too] {
        let it = item(&stack, &text_only, p).await?;
        assert_eq!(it.get_str("status")?, "skipped", "{it}");
        assert!(it.get_str("reason")?.contains("24-hour"), "{it}");
        assert_eq!(
            wa_ledger(&stack, p).await?.len(),
            1,
            "no second message to {p}"
        );
    }
    assert_eq!(wa_ledger(&stack, open).await?.len(), 2);

    // If WhatsApp's own window closed meanwhile, 63016 comes back and the item says why.
    stack
        .admin(
            reqwest::Method::PUT,
            "/admin/whatsapp/sessions",
            Some(json!({"from": format!("whatsapp:{open}"), "to": format!("whatsapp:{SENDER}"), "last_inbound_at": null})),
        )
        .await?;
    let late = run_campaign(
        &stack,
        json!({"name": "wa3", "channel": "whatsapp", "from": SENDER, "list_id": list_id, "template": "Third note"}),
    )
    .await?;
    let failed = eventually("the 63016 failure", WAIT, || async {
        let it = item(&stack, &late, open).await?;
        Ok((it.get_str("status")? == "failed").then_some(it))
    })
    .await?;
    assert_eq!(failed.get_i64("error_code")?, 63016, "{failed}");
    assert!(failed.get_str("reason")?.contains("ContentSid"), "{failed}");
    Ok(())
}
