//! The live-session engine's overhead before the first token: SESSIONS concurrent browser
//! chats (`/api/live/chat`) each say TURNS lines; for each turn it measures, at the client over
//! loopback, the prompt leaving to the first `token` arriving, to the `reply` (all tokens), and
//! the `reply` to the `settled` frame (the signal-with-start that makes the turn durable, after
//! the reply, off the hot path). With the scripted agent the model takes no time, so the first
//! figure is the engine's whole overhead. Run by `scripts/bench-live.sh`.

#[path = "../shared.rs"]
mod shared;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use shared::Percentiles;

#[derive(Parser, Debug)]
struct Args {
    /// The api's HTTP URL.
    #[arg(long)]
    api: String,
    /// An API key with the manager role (the chat needs one).
    #[arg(long, env = "VOICE_AGENT_API_KEY")]
    key: String,
    /// The agent profile.
    #[arg(long, default_value = "default")]
    profile: String,
    /// Chats open at once.
    #[arg(long, default_value_t = 20)]
    sessions: usize,
    /// Turns per chat (the first of each chat is a warm-up, not measured).
    #[arg(long, default_value_t = 20)]
    turns: usize,
    /// The person's think time between turns.
    #[arg(long, default_value_t = 200)]
    think_ms: u64,
}

const LINES: [&str; 5] = [
    "Hello",
    "my name is Grace",
    "what is my name",
    "tell me more about the offer",
    "what are your opening hours",
];

#[derive(Default)]
struct Samples {
    first_token: Vec<Duration>,
    reply: Vec<Duration>,
    settle: Vec<Duration>,
}

async fn chat(args: &Args, index: usize) -> anyhow::Result<Samples> {
    let url = format!(
        "{}/api/live/chat?profile={}",
        args.api.replacen("http://", "ws://", 1),
        args.profile
    );
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", args.key).parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("Failed to open a chat")?;
    let mut samples = Samples::default();
    let ready = read(&mut socket).await?;
    anyhow::ensure!(ready["type"] == "ready", "expected ready, got {ready}");
    // Chats start out of phase, as people do.
    tokio::time::sleep(Duration::from_millis(
        (index as u64 * args.think_ms) / args.sessions.max(1) as u64,
    ))
    .await;
    for turn in 0..args.turns {
        let line = LINES[turn % LINES.len()];
        let t0 = Instant::now();
        socket
            .send(Message::Text(
                json!({"type": "prompt", "text": line}).to_string().into(),
            ))
            .await?;
        let mut first = None;
        let replied = loop {
            let f = read(&mut socket).await?;
            match f["type"].as_str() {
                Some("token") => {
                    first.get_or_insert_with(|| t0.elapsed());
                }
                Some("reply") => break t0.elapsed(),
                _ => anyhow::bail!("unexpected frame {f}"),
            }
        };
        let t2 = Instant::now();
        let settled = read(&mut socket).await?;
        anyhow::ensure!(
            settled["type"] == "settled",
            "expected settled, got {settled}"
        );
        if turn > 0 {
            samples
                .first_token
                .push(first.context("a reply without tokens")?);
            samples.reply.push(replied);
            samples.settle.push(t2.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(args.think_ms)).await;
    }
    Ok(samples)
}

async fn read(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> anyhow::Result<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .context("no frame in 30 s")?
            .context("the socket closed")??
        {
            Message::Text(t) => return Ok(serde_json::from_str(&t)?),
            Message::Close(_) => anyhow::bail!("the api closed the chat"),
            _ => {}
        }
    }
}

fn report(name: &str, d: Vec<Duration>) {
    let Some(p) = Percentiles::of(d) else {
        println!("{name:<34} no samples");
        return;
    };
    println!(
        "{name:<34} n={:<6} p50={:>7.2} ms  p90={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms",
        p.n, p.p50, p.p90, p.p99, p.max
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.turns >= 2,
        "--turns: at least 2 (the first is a warm-up)"
    );
    let started = Instant::now();
    let runs = futures::future::join_all((0..args.sessions).map(|i| chat(&args, i))).await;
    let mut all = Samples::default();
    for r in runs {
        let s = r?;
        all.first_token.extend(s.first_token);
        all.reply.extend(s.reply);
        all.settle.extend(s.settle);
    }
    println!(
        "{} chats x {} turns ({} measured) in {:.1} s, think {} ms, profile {}",
        args.sessions,
        args.turns,
        all.first_token.len(),
        started.elapsed().as_secs_f64(),
        args.think_ms,
        args.profile
    );
    report("prompt -> first token (overhead)", all.first_token);
    report("prompt -> whole reply", all.reply);
    report("reply -> settled (durable, async)", all.settle);
    Ok(())
}
