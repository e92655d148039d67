//! Relay-mode overhead before the first token: N concurrent ConversationRelay calls against a
//! streaming fake model whose first token comes after a set delay, and beside them `gather`
//! calls on the same model (the whole reply at once, today's mode).
//!
//! Run by `scripts/bench-relay.sh`, which starts Temporal, the MongoDB-wire server, the api
//! and the worker with an agents file of two profiles on two numbers (one `relay`, one
//! `gather`) whose model is the one this binary serves on `--model-listen`. This binary plays
//! Twilio: it rings each call in with a signed voice webhook, and then
//! - **relay**: opens the `<ConversationRelay url>` WebSocket with a signed handshake, sends
//!   `setup`, and says each line as a `prompt`, reading the `text` tokens to `last`;
//! - **gather**: posts each line to the `<Gather action>` as `SpeechResult`, the reply being
//!   the TwiML that comes back.
//!
//! Every reply is checked to be the model's, word for word. The fake model notes when each
//! request arrived and when its first token left, so the api's overhead is measured without
//! the model's own time and without clocks in two processes:
//! `(request at the model - prompt sent) + (first text received - first token sent)`, an upper
//! bound (it includes two loopback hops and this process's scheduling). The first turn of each
//! call is a warm-up, not counted. Prints its figures; asserts nothing about time.

#[path = "../shared.rs"]
mod shared;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use voice_agent_twilio::signature::compute_signature;

use shared::{Percentiles, loadavg};

#[derive(Parser, Debug)]
struct Args {
    /// The api's HTTP URL (its PUBLIC_BASE_URL).
    #[arg(long)]
    api: String,
    /// The Twilio auth token the api checks signatures with.
    #[arg(long, env = "BENCH_TWILIO_AUTH_TOKEN")]
    auth_token: String,
    /// The Twilio account SID the api is configured with.
    #[arg(long)]
    account_sid: String,
    /// Where to serve the fake model (the api's and worker's AGENT_MODEL_BASE_URL).
    #[arg(long)]
    model_listen: SocketAddr,
    /// Our number whose profile is in voice mode `relay`.
    #[arg(long)]
    relay_number: String,
    /// Our number whose profile is in voice mode `gather`.
    #[arg(long)]
    gather_number: String,
    /// Concurrent relay calls, one phase per figure (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [20, 100])]
    calls: Vec<usize>,
    /// Concurrent gather calls (0: no gather phase).
    #[arg(long, default_value_t = 20)]
    gather_calls: usize,
    /// Lines each caller says (the first is a warm-up).
    #[arg(long, default_value_t = 12)]
    turns: usize,
    /// The caller's pause after a reply before the next line.
    #[arg(long, default_value_t = 500)]
    think_ms: u64,
    /// The fake model's delay before its first token.
    #[arg(long, default_value_t = 300)]
    first_token_ms: u64,
    /// The fake model's delay between tokens.
    #[arg(long, default_value_t = 15)]
    token_gap_ms: u64,
}

/// The fake model's reply, one token per word (no characters TwiML would escape).
const REPLY: [&str; 12] = [
    "Sure,", " here", " is", " what", " I", " can", " tell", " you", " about", " that", " plan",
    " today.",
];

const MAX_CALLS: usize = 400;
const MAX_TURNS: usize = 200;

/// When the model saw a request and sent its first token.
#[derive(Clone, Copy)]
struct Seen {
    arrived: Instant,
    first_out: Option<Instant>,
}

/// An OpenAI-compatible model that answers every line with [`REPLY`]: its first token after
/// `first_token`, then one token every `gap`; a request without `stream` gets the whole reply
/// when the stream would have ended.
struct Model {
    first_token: Duration,
    gap: Duration,
    /// By the request's last user message (each line the benchmark says is unique).
    seen: Mutex<HashMap<String, Seen>>,
}

impl Model {
    fn seen(&self, line: &str) -> Option<Seen> {
        self.seen.lock().expect("not poisoned").get(line).copied()
    }

    fn note(&self, line: &str, f: impl FnOnce(&mut Seen)) {
        if let Some(s) = self.seen.lock().expect("not poisoned").get_mut(line) {
            f(s);
        }
    }
}

fn last_user_message(request: &Value) -> String {
    request["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

async fn completions(model: Arc<Model>, body: Bytes) -> Response {
    let arrived = Instant::now();
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let line = last_user_message(&request);
    model.seen.lock().expect("not poisoned").insert(
        line.clone(),
        Seen {
            arrived,
            first_out: None,
        },
    );
    let whole = REPLY.concat();
    if request["stream"] != json!(true) {
        tokio::time::sleep(model.first_token + model.gap * (REPLY.len() as u32 - 1)).await;
        return axum::Json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": whole}, "finish_reason": "stop"}],
        }))
        .into_response();
    }
    let stream = futures::stream::unfold(0usize, move |i| {
        let model = model.clone();
        let line = line.clone();
        async move {
            if i > REPLY.len() {
                return None;
            }
            if i == REPLY.len() {
                return Some((
                    Ok::<_, std::io::Error>(Bytes::from("data: [DONE]\n\n")),
                    i + 1,
                ));
            }
            tokio::time::sleep(if i == 0 { model.first_token } else { model.gap }).await;
            if i == 0 {
                model.note(&line, |s| s.first_out = Some(Instant::now()));
            }
            let chunk = json!({"choices": [{"index": 0, "delta": {"content": REPLY[i]}}]});
            Some((Ok(Bytes::from(format!("data: {chunk}\n\n"))), i + 1))
        }
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Twilio's side of the calls.
struct Twilio {
    http: reqwest::Client,
    api: String,
    auth_token: String,
    account_sid: String,
}

impl Twilio {
    /// Posts a webhook as Twilio does (form body, `X-Twilio-Signature`) and returns the TwiML.
    async fn post(&self, url: &str, params: &[(&str, &str)]) -> anyhow::Result<String> {
        let mut form: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        form.push(("AccountSid".to_owned(), self.account_sid.clone()));
        let signature = compute_signature(&self.auth_token, url, &form);
        let r = self
            .http
            .post(url)
            .header("x-twilio-signature", signature)
            .form(&form)
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        ensure!(status.is_success(), "{url} answered {status}: {body}");
        Ok(body)
    }

    async fn ring_in(&self, call_sid: &str, from: &str, to: &str) -> anyhow::Result<String> {
        let url = format!("{}/twilio/voice", self.api);
        self.post(
            &url,
            &[
                ("CallSid", call_sid),
                ("From", from),
                ("To", to),
                ("CallStatus", "ringing"),
                ("Direction", "inbound"),
            ],
        )
        .await
    }
}

/// The first `attribute` of an element named `element` in a TwiML document.
fn twiml_attribute(twiml: &str, element: &str, attribute: &str) -> anyhow::Result<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(twiml);
    loop {
        match reader.read_event()? {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == element => {
                for a in e.attributes() {
                    let a = a?;
                    if a.key.as_ref() == attribute {
                        return Ok(a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)?
                            .into_owned());
                    }
                }
                bail!("<{element}> has no {attribute}: {twiml}");
            }
            Event::Eof => bail!("no <{element}> in {twiml}"),
            _ => {}
        }
    }
}

fn new_call_sid() -> String {
    format!("CA{}", uuid::Uuid::new_v4().simple())
}

/// A caller's number of its own per call.
fn caller(phase: usize, index: usize) -> String {
    format!("+1415{}{:04}", 300 + phase, index)
}

#[derive(Default)]
struct Samples {
    /// The api's time before the first token, the model's own excluded.
    overhead: Vec<Duration>,
    /// Prompt sent to first token received, minus the model's set first-token delay.
    naive: Vec<Duration>,
    /// Prompt sent to first token received.
    first_token: Vec<Duration>,
    /// Prompt sent to the whole reply received.
    whole: Vec<Duration>,
}

impl Samples {
    fn extend(&mut self, other: Samples) {
        self.overhead.extend(other.overhead);
        self.naive.extend(other.naive);
        self.first_token.extend(other.first_token);
        self.whole.extend(other.whole);
    }
}

struct Phase<'a> {
    args: &'a Args,
    twilio: &'a Twilio,
    model: &'a Model,
    number: usize,
    calls: usize,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn read(socket: &mut Socket) -> anyhow::Result<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .context("no message from the api in 30 s")?
            .context("the api closed the session")??
        {
            Message::Text(t) => return Ok(serde_json::from_str(&t)?),
            Message::Close(_) => bail!("the api closed the session"),
            _ => {}
        }
    }
}

/// Out of phase, as callers are: call `index` starts this far into one turn's time.
fn stagger(p: &Phase<'_>, index: usize) -> Duration {
    let turn = p.args.think_ms + p.args.first_token_ms;
    Duration::from_millis(turn * index as u64 / p.calls.max(1) as u64)
}

async fn relay_call(p: &Phase<'_>, index: usize) -> anyhow::Result<Samples> {
    let sid = new_call_sid();
    let from = caller(p.number, index);
    let twiml = p.twilio.ring_in(&sid, &from, &p.args.relay_number).await?;
    let url = twiml_attribute(&twiml, "ConversationRelay", "url")
        .context("the relay profile's call was not answered with a ConversationRelay session")?;
    let mut request = url.as_str().into_client_request()?;
    let signature = compute_signature(&p.twilio.auth_token, &url, &[]);
    request
        .headers_mut()
        .insert("x-twilio-signature", signature.parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("Failed to open the ConversationRelay WebSocket")?;
    let setup = json!({
        "type": "setup", "sessionId": format!("VX{}", uuid::Uuid::new_v4().simple()),
        "accountSid": p.twilio.account_sid, "callSid": sid, "from": from,
        "to": p.args.relay_number, "direction": "inbound", "callStatus": "IN-PROGRESS",
        "callType": "PSTN", "customParameters": {},
    });
    socket.send(Message::Text(setup.to_string().into())).await?;
    tokio::time::sleep(stagger(p, index)).await;
    let mut samples = Samples::default();
    let set_delay = Duration::from_millis(p.args.first_token_ms);
    for turn in 0..p.args.turns {
        let line = format!("question {turn} from caller {index} in phase {}", p.number);
        let prompt = json!({"type": "prompt", "voicePrompt": line, "lang": "en-US", "last": true});
        let sent = Instant::now();
        socket
            .send(Message::Text(prompt.to_string().into()))
            .await?;
        let mut first = None;
        let mut heard = String::new();
        loop {
            let m = read(&mut socket).await?;
            match m["type"].as_str() {
                Some("text") => {
                    let token = m["token"].as_str().unwrap_or_default();
                    if !token.is_empty() {
                        first.get_or_insert_with(Instant::now);
                        heard.push_str(token);
                    }
                    if m["last"] == json!(true) {
                        break;
                    }
                }
                _ => bail!("expected text tokens, got {m}"),
            }
        }
        let done = Instant::now();
        ensure!(
            heard == REPLY.concat(),
            "the caller heard {heard:?}, not the model's reply (a fallback?)"
        );
        let first = first.context("a reply without tokens")?;
        let seen = p
            .model
            .seen(&line)
            .with_context(|| format!("the model never saw {line:?}"))?;
        let first_out = seen.first_out.context("the model sent no first token")?;
        if turn > 0 {
            samples.overhead.push(
                seen.arrived.saturating_duration_since(sent)
                    + first.saturating_duration_since(first_out),
            );
            samples.naive.push((first - sent).saturating_sub(set_delay));
            samples.first_token.push(first - sent);
            samples.whole.push(done - sent);
        }
        tokio::time::sleep(Duration::from_millis(p.args.think_ms)).await;
    }
    // The caller hangs up: the session ends with the socket.
    let _ = socket.close(None).await;
    Ok(samples)
}

async fn gather_call(p: &Phase<'_>, index: usize) -> anyhow::Result<Samples> {
    let sid = new_call_sid();
    let from = caller(p.number, index);
    let mut twiml = p.twilio.ring_in(&sid, &from, &p.args.gather_number).await?;
    tokio::time::sleep(stagger(p, index)).await;
    let mut samples = Samples::default();
    let reply = REPLY.concat();
    let model_time = Duration::from_millis(
        p.args.first_token_ms + p.args.token_gap_ms * (REPLY.len() as u64 - 1),
    );
    for turn in 0..p.args.turns {
        let action = twiml_attribute(&twiml, "Gather", "action")
            .context("the gather profile's call has no <Gather>")?;
        let line = format!("question {turn} from caller {index} in phase {}", p.number);
        let sent = Instant::now();
        twiml = p
            .twilio
            .post(
                &action,
                &[
                    ("CallSid", &sid),
                    ("From", &from),
                    ("To", &p.args.gather_number),
                    ("CallStatus", "in-progress"),
                    ("Direction", "inbound"),
                    ("SpeechResult", &line),
                    ("Confidence", "0.93"),
                ],
            )
            .await?;
        let took = sent.elapsed();
        ensure!(
            twiml.contains(&reply),
            "the gather reply is not the model's (a fallback?): {twiml}"
        );
        if turn > 0 {
            samples.whole.push(took);
            samples.naive.push(took.saturating_sub(model_time));
        }
        tokio::time::sleep(Duration::from_millis(p.args.think_ms)).await;
    }
    Ok(samples)
}

fn report(name: &str, d: Vec<Duration>) {
    match Percentiles::of(d) {
        Some(p) => println!(
            "  {name:<46} n={:<5} p50={:>8.2}  p90={:>8.2}  p99={:>8.2}  max={:>8.2} ms",
            p.n, p.p50, p.p90, p.p99, p.max
        ),
        None => println!("  {name:<46} no samples"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    ensure!(
        (2..=MAX_TURNS).contains(&args.turns),
        "--turns: 2 to {MAX_TURNS} (the first is a warm-up)"
    );
    ensure!(
        args.calls.iter().all(|c| (1..=MAX_CALLS).contains(c)) && args.gather_calls <= MAX_CALLS,
        "--calls and --gather-calls: 1 to {MAX_CALLS} each"
    );
    ensure!(
        args.first_token_ms <= 10_000 && args.token_gap_ms <= 1_000 && args.think_ms <= 60_000,
        "--first-token-ms at most 10000, --token-gap-ms at most 1000, --think-ms at most 60000"
    );
    let model = Arc::new(Model {
        first_token: Duration::from_millis(args.first_token_ms),
        gap: Duration::from_millis(args.token_gap_ms),
        seen: Mutex::new(HashMap::new()),
    });
    let listener = tokio::net::TcpListener::bind(args.model_listen)
        .await
        .with_context(|| format!("Failed to serve the fake model on {}", args.model_listen))?;
    let served = model.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: Bytes| completions(served.clone(), body)),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let twilio = Twilio {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        api: args.api.trim_end_matches('/').to_owned(),
        auth_token: args.auth_token.clone(),
        account_sid: args.account_sid.clone(),
    };
    println!(
        "fake model: first token after {} ms, then {} tokens {} ms apart ({} ms to the whole reply); \
         each caller says {} lines ({} measured), {} ms after each reply",
        args.first_token_ms,
        REPLY.len() - 1,
        args.token_gap_ms,
        args.first_token_ms + args.token_gap_ms * (REPLY.len() as u64 - 1),
        args.turns,
        args.turns - 1,
        args.think_ms
    );
    let mut phases: Vec<(&str, usize)> = args.calls.iter().map(|c| ("relay", *c)).collect();
    if args.gather_calls > 0 {
        phases.push(("gather", args.gather_calls));
    }
    for (number, (mode, calls)) in phases.into_iter().enumerate() {
        let phase = Phase {
            args: &args,
            twilio: &twilio,
            model: &model,
            number,
            calls,
        };
        let started = Instant::now();
        let runs = if mode == "relay" {
            futures::future::join_all((0..calls).map(|i| relay_call(&phase, i))).await
        } else {
            futures::future::join_all((0..calls).map(|i| gather_call(&phase, i))).await
        };
        let mut all = Samples::default();
        for r in runs {
            all.extend(r?);
        }
        println!(
            "\n{mode}, {calls} concurrent calls: {} turns measured in {:.1} s (load average {})",
            all.whole.len(),
            started.elapsed().as_secs_f64(),
            loadavg()
        );
        if mode == "relay" {
            report("overhead before the first token (the target)", all.overhead);
            report("first token at the caller - model's set delay", all.naive);
            report("prompt -> first token at the caller", all.first_token);
            report("prompt -> whole reply at the caller", all.whole);
        } else {
            report("line -> whole reply (TwiML) at the caller", all.whole);
            report("  minus the model's time to the whole reply", all.naive);
        }
    }
    Ok(())
}
