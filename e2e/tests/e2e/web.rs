//! The web app in a real browser: the api serves the built app (`web/dist`) and
//! `web/e2e/run.mjs` drives Debian's headless Chromium through it (playwright-core). The
//! browser tests check the pages; this test then checks what they did from the outside: each
//! contact got the campaign's message exactly once, rendered for them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use serde_json::json;

use crate::campaigns::ledger_counts;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, AUTH_TOKEN, FROM, Stack, eventually};

/// A number of its own per run: conversation workflow ids are global on the Temporal server,
/// and a conversation of an earlier run on the same server may still be open there.
fn person() -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    format!("+1415{}{:04}", 200 + n % 800, (n >> 16) % 10_000)
}

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web")
}

#[tokio::test]
async fn a_campaign_manager_works_in_the_web_app() -> anyhow::Result<()> {
    let web = web_dir();
    let dist = web.join("dist");
    anyhow::ensure!(
        dist.join("index.html").is_file(),
        "the web app is not built: run `npm ci && npm run build` in web/ (scripts/test.sh does)"
    );
    let agents = web.join("../agent/agents.example.toml");
    // Who asks the example agent for a person before the browser tests start, and who texts
    // while the browser watches the conversations page.
    let (waiting, newcomer, profile_tester) = (person(), person(), person());
    let stack = Stack::start_with_env(&[
        ("WEB_DIR", dist.to_str().context("utf-8 path")?),
        ("AGENTS_FILE", agents.to_str().context("utf-8 path")?),
        // Every browser test signs in afresh, as the one admin from one address: more than
        // the default ten a minute.
        ("API_LOGIN_ATTEMPTS_PER_MINUTE", "120"),
        ("API_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE", "120"),
    ])
    .await?;
    // A conversation waiting for a person, for the hand-over test.
    let r = stack
        .admin(
            reqwest::Method::POST,
            "/admin/inbound",
            Some(json!({"from": waiting, "to": FROM, "body": "can I talk to a human please"})),
        )
        .await?;
    anyhow::ensure!(r["status"] == json!(200), "webhook answered {r}");
    let waiting_id = format!(
        "conversation-{}-{}",
        FROM.trim_start_matches('+'),
        waiting.trim_start_matches('+')
    );
    eventually("the hand-over", Duration::from_secs(60), || async {
        let c = stack
            .http
            .get(format!("{}/api/conversations/{waiting_id}", stack.api_http))
            .send()
            .await?
            .json::<serde_json::Value>()
            .await?;
        Ok((c["agent"]["needs_human"] == json!(true)).then_some(()))
    })
    .await?;
    let screenshots = web.join("../.data/screenshots");
    let run = tokio::process::Command::new("node")
        .arg("e2e/run.mjs")
        .current_dir(&web)
        .env("VA_WEB_URL", &stack.api_http)
        .env("VA_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("VA_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("VA_WAITING_NUMBER", &waiting)
        .env("VA_NEW_NUMBER", &newcomer)
        .env("VA_PROFILE_NUMBER", &profile_tester)
        .env("VA_SIMULATOR_URL", &stack.simulator_url)
        // Signs the status callbacks the browser tests post as Twilio would.
        .env("VA_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("VA_SCREENSHOTS", &screenshots)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .context("the browser tests took over 10 minutes")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    anyhow::ensure!(
        out.status.success(),
        "browser tests failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    if std::env::var_os("VA_WEB_ONLY").is_some() {
        // Some browser tests were left out (web/e2e/run.mjs): what they did cannot be checked.
        println!("VA_WEB_ONLY is set: the checks after the browser tests are skipped");
        return Ok(());
    }
    // The campaign the browser created and started: one message per good row of its upload.
    let by_to = ledger_counts(&stack).await?;
    for n in 1..=5 {
        let to = format!("+1415555010{n}");
        assert_eq!(by_to.get(&to).copied(), Some(1), "{to} in {by_to:?}");
    }
    // The person waiting got the agent's hand-over message and the reply typed in the browser,
    // once (the browser test pressed Send twice on one reply).
    let waiting = stack.ledger(&waiting).await?;
    let bodies: Vec<&str> = waiting
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        bodies
            .iter()
            .filter(|b| **b == "Hello, this is Sam. How can I help?")
            .count(),
        1,
        "the reply typed by hand went once: {bodies:?}"
    );
    assert_eq!(
        by_to.len(),
        8,
        "only the list's numbers, the waiting person, the newcomer and the profile tester got messages: {by_to:?}"
    );
    // The profile edited in the browser answered the conversation that started after the
    // edit, and the conversation records that version.
    let tester = stack.ledger(&profile_tester).await?;
    assert!(
        tester.iter().any(|m| m["body"]
            .as_str()
            .is_some_and(|b| b.starts_with("Edited in the browser"))),
        "the edited rule replied: {tester:?}"
    );
    let conversation = stack
        .http
        .get(format!(
            "{}/api/conversations/conversation-{}-{}",
            stack.api_http,
            FROM.trim_start_matches('+'),
            profile_tester.trim_start_matches('+')
        ))
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?;
    assert_eq!(conversation["agent"]["profile"], json!("reception"));
    assert_eq!(conversation["agent"]["profile_version"], json!(2));
    let versions = stack
        .http
        .get(format!("{}/api/agent-profiles/reception", stack.api_http))
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?;
    assert_eq!(versions["profile"]["version"], json!(2));
    assert_eq!(
        versions["versions"].as_array().map(Vec::len),
        Some(2),
        "both versions kept: {versions}"
    );
    let ledger = stack
        .admin(reqwest::Method::GET, "/admin/ledger", None)
        .await?;
    let bodies = ledger.to_string();
    assert!(
        bodies.contains("Hi Grace, your silver plan renews soon."),
        "each message rendered for its contact: {bodies}"
    );
    Ok(())
}
