//! The web app in a real browser: the api serves the built app (`web/dist`) and
//! `web/e2e/run.mjs` drives Debian's headless Chromium through it (playwright-core). The
//! browser tests check the pages; this test then checks what they did from the outside: each
//! contact got the campaign's message exactly once, rendered for them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::campaigns::ledger_counts;
use crate::helpers::Stack;

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
    let stack = Stack::start_with_env(&[("WEB_DIR", dist.to_str().context("utf-8 path")?)]).await?;
    let screenshots = web.join("../.data/screenshots");
    let run = tokio::process::Command::new("node")
        .arg("e2e/run.mjs")
        .current_dir(&web)
        .env("VA_WEB_URL", &stack.api_http)
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
    // The campaign the browser created and started: one message per good row of its upload.
    let by_to = ledger_counts(&stack).await?;
    for n in 1..=5 {
        let to = format!("+1415555010{n}");
        assert_eq!(by_to.get(&to).copied(), Some(1), "{to} in {by_to:?}");
    }
    assert_eq!(
        by_to.len(),
        5,
        "only the list's numbers got a message: {by_to:?}"
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
