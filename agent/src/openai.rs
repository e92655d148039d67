//! An OpenAI-compatible Chat Completions provider.
//!
//! Speaks the wire format that OpenAI, Azure OpenAI (through its `/openai/v1` base), Groq,
//! vLLM, Ollama and llama.cpp's server share: `POST <base>/chat/completions` with `messages`
//! and `tools`, answered by a JSON completion or, with `stream: true`, by server-sent events
//! carrying deltas. Actions are tool calls. 429, 5xx, timeouts, connection failures and
//! malformed answers are retried with jittered exponential backoff (honouring `Retry-After`).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use rand::Rng;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tracing::warn;

use crate::directory::ModelSettings;
use crate::types::{
    AgentAction, AgentChannel, AgentReply, AgentRequest, Disposition, Speaker, Summary, Usage,
};
use crate::{Agent, AgentError};

/// Longest backoff between two attempts, whatever `Retry-After` says: a person is waiting.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How much of an error body is kept in [`AgentError::Rejected`].
const ERROR_SNIPPET: usize = 300;
/// Callback delay when the model asks for one without saying when.
const DEFAULT_CALLBACK_DELAY: u64 = 3600;
/// Longest callback delay a model may ask for, in minutes (30 days); longer asks are cut to
/// it. The value comes from the model, so it is bounded before it becomes a timer.
const MAX_CALLBACK_MINUTES: u64 = 30 * 24 * 60;

/// The agent backed by a Chat Completions endpoint.
#[derive(Debug, Clone)]
pub struct ChatCompletionsAgent {
    http: reqwest::Client,
    endpoint: url::Url,
    settings: ModelSettings,
    request_timeout: Duration,
}

/// One completion, streamed or not, before it becomes a reply.
#[derive(Debug, Default)]
struct Completion {
    content: String,
    /// (name, arguments JSON text) in the order the model gave them.
    tool_calls: Vec<(String, String)>,
    usage: Usage,
}

impl ChatCompletionsAgent {
    /// An agent for `settings`; `request_timeout` bounds each HTTP attempt.
    pub fn new(settings: ModelSettings, request_timeout: Duration) -> Result<Self, AgentError> {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .build()
            .map_err(|e| AgentError::Transport(e.to_string()))?;
        let mut endpoint = settings.base_url.clone();
        if !endpoint.path().ends_with('/') {
            endpoint.set_path(&format!("{}/", endpoint.path()));
        }
        let endpoint = endpoint
            .join("chat/completions")
            .map_err(|e| AgentError::Transport(format!("bad model base URL: {e}")))?;
        Ok(Self {
            http,
            endpoint,
            settings,
            request_timeout,
        })
    }

    /// The next reply, calling `on_delta` with each piece of text as it streams in (once with
    /// the whole text when streaming is off), so a browser or a speech synthesiser can start
    /// before the model has finished.
    pub async fn reply_streaming(
        &self,
        request: &AgentRequest,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<AgentReply, AgentError> {
        self.reply_with(request, self.settings.stream, on_delta)
            .await
    }

    async fn reply_with(
        &self,
        request: &AgentRequest,
        stream: bool,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<AgentReply, AgentError> {
        if request.history.is_empty()
            && let Some(greeting) = &request.profile.greeting
        {
            on_delta(greeting);
            return Ok(AgentReply {
                text: greeting.clone(),
                ..AgentReply::default()
            });
        }
        let body = self.reply_body(request);
        let completion = self.complete(&body, stream, on_delta).await?;
        if !stream {
            on_delta(&completion.content);
        }
        Ok(into_reply(completion, request))
    }

    fn base_body(&self, messages: Vec<Value>) -> serde_json::Map<String, Value> {
        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!(self.settings.model));
        body.insert("messages".into(), Value::Array(messages));
        if let Some(t) = self.settings.temperature {
            body.insert("temperature".into(), json!(t));
        }
        body
    }

    fn reply_body(&self, request: &AgentRequest) -> serde_json::Map<String, Value> {
        let mut messages = vec![json!({"role": "system", "content": system_prompt(request)})];
        for turn in &request.history {
            let role = match turn.speaker {
                Speaker::Person => "user",
                Speaker::Agent => "assistant",
            };
            messages.push(json!({"role": role, "content": turn.text}));
        }
        if request.history.is_empty() {
            messages.push(json!({"role": "user", "content": "(The conversation starts now. Greet the person briefly.)"}));
        }
        let mut body = self.base_body(messages);
        body.insert("tools".into(), tools());
        body.insert("tool_choice".into(), json!("auto"));
        body
    }

    /// Sends `body` with retries; streamed when `stream`.
    async fn complete(
        &self,
        body: &serde_json::Map<String, Value>,
        stream: bool,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, AgentError> {
        let mut body = body.clone();
        if stream {
            body.insert("stream".into(), json!(true));
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        let mut attempt = 0;
        loop {
            let result = self.attempt(&body, stream, on_delta).await;
            match result {
                Ok(c) => return Ok(c),
                Err(e) if e.is_retryable() && attempt < self.settings.max_retries => {
                    let delay = self.backoff(attempt, &e);
                    warn!(attempt = attempt + 1, error = %e, ?delay, "model call failed, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn backoff(&self, attempt: u32, error: &AgentError) -> Duration {
        if let AgentError::RateLimited {
            retry_after: Some(after),
        } = error
        {
            return (*after).min(MAX_BACKOFF);
        }
        let base = self
            .settings
            .initial_backoff
            .saturating_mul(1 << attempt.min(10));
        let jitter = rand::rng().random_range(0.8..1.2);
        base.mul_f64(jitter).min(MAX_BACKOFF)
    }

    async fn attempt(
        &self,
        body: &serde_json::Map<String, Value>,
        stream: bool,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, AgentError> {
        let mut req = self.http.post(self.endpoint.clone()).json(body);
        if let Some(key) = &self.settings.api_key {
            req = req.bearer_auth(key.expose_secret());
        }
        let transport = |e: reqwest::Error| transport(e, self.request_timeout);
        let mut response = req.send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = response.text().await.unwrap_or_default();
            return Err(match status.as_u16() {
                429 => AgentError::RateLimited { retry_after },
                s if s >= 500 => AgentError::Server { status: s },
                s => AgentError::Rejected {
                    status: s,
                    message: error_message(&text),
                },
            });
        }
        if !stream {
            let text = response.text().await.map_err(transport)?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| AgentError::Malformed(format!("not JSON: {e}")))?;
            return parse_completion(&value);
        }
        let mut sse = SseParser::default();
        let mut acc = StreamAccumulator::default();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            for data in sse.push(&chunk) {
                if acc.apply(&data, on_delta)? {
                    return Ok(acc.finish());
                }
            }
        }
        for data in sse.finish() {
            if acc.apply(&data, on_delta)? {
                break;
            }
        }
        if !acc.seen_any {
            return Err(AgentError::Malformed(
                "the stream ended without any completion chunk".to_owned(),
            ));
        }
        Ok(acc.finish())
    }
}

impl Agent for ChatCompletionsAgent {
    fn name(&self) -> String {
        format!("model:{}", self.settings.model)
    }

    fn reply<'a>(
        &'a self,
        request: &'a AgentRequest,
    ) -> BoxFuture<'a, Result<AgentReply, AgentError>> {
        async move { self.reply_streaming(request, &mut |_| {}).await }.boxed()
    }

    /// Always streamed, whatever `AGENT_MODEL_STREAM` says: the caller wants the tokens.
    fn reply_streaming<'a>(
        &'a self,
        request: &'a AgentRequest,
        on_delta: &'a mut (dyn FnMut(&str) + Send),
    ) -> BoxFuture<'a, Result<AgentReply, AgentError>> {
        async move { self.reply_with(request, true, on_delta).await }.boxed()
    }

    fn summarize<'a>(
        &'a self,
        request: &'a AgentRequest,
    ) -> BoxFuture<'a, Result<Summary, AgentError>> {
        async move {
            let transcript: String = request
                .history
                .iter()
                .map(|t| {
                    let who = match t.speaker {
                        Speaker::Person => "Person",
                        Speaker::Agent => "Agent",
                    };
                    format!("{who}: {}\n", t.text)
                })
                .collect();
            let messages = vec![
                json!({"role": "system", "content": "You summarise customer conversations for a campaign manager. Call record_summary with at most three sentences and the outcome."}),
                json!({"role": "user", "content": if transcript.is_empty() { "(no messages)".to_owned() } else { transcript }}),
            ];
            let mut body = self.base_body(messages);
            body.insert("tools".into(), json!([summary_tool()]));
            body.insert(
                "tool_choice".into(),
                json!({"type": "function", "function": {"name": "record_summary"}}),
            );
            let completion = self.complete(&body, false, &mut |_| {}).await?;
            let from_tool = completion
                .tool_calls
                .iter()
                .find(|(name, _)| name == "record_summary")
                .and_then(|(_, args)| serde_json::from_str::<Value>(args).ok());
            let (summary, disposition) = match from_tool {
                Some(args) => (
                    args["summary"].as_str().unwrap_or_default().to_owned(),
                    args["disposition"]
                        .as_str()
                        .and_then(Disposition::parse)
                        .unwrap_or(Disposition::Other),
                ),
                None => (completion.content.trim().to_owned(), Disposition::Other),
            };
            if summary.is_empty() {
                return Err(AgentError::Malformed(
                    "the summary came back empty".to_owned(),
                ));
            }
            Ok(Summary {
                summary,
                disposition,
                usage: completion.usage,
            })
        }
        .boxed()
    }
}

fn transport(e: reqwest::Error, timeout: Duration) -> AgentError {
    if e.is_timeout() {
        AgentError::Timeout(timeout)
    } else if e.is_decode() || e.is_body() {
        AgentError::Malformed(e.to_string())
    } else {
        AgentError::Transport(e.to_string())
    }
}

fn error_message(body: &str) -> String {
    let msg = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    crate::truncate_reply(&msg, ERROR_SNIPPET)
}

fn system_prompt(request: &AgentRequest) -> String {
    let p = &request.profile;
    let mut s = p.instructions.trim().to_owned();
    s.push_str(&format!(
        "\n\nYou are talking with a person over {}. Answer in the language {} in at most {} characters.",
        match request.channel {
            AgentChannel::Voice => "a phone call; your words are spoken aloud, so use no markdown, lists, links or emojis",
            AgentChannel::Sms => "SMS; plain text only",
            AgentChannel::Whatsapp => "WhatsApp",
            AgentChannel::Web => "a chat in their browser",
        },
        p.language,
        p.max_reply_chars
    ));
    if !p.facts.is_empty() {
        s.push_str("\n\nFacts you may use (claim nothing beyond them):");
        for fact in &p.facts {
            s.push_str("\n- ");
            s.push_str(fact);
        }
    }
    let known: BTreeMap<&String, &String> = request
        .contact
        .iter()
        .chain(request.memory.iter())
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    if !known.is_empty() {
        s.push_str("\n\nWhat we know about the person:");
        for (k, v) in known {
            s.push_str(&format!("\n- {k}: {v}"));
        }
    }
    s.push_str("\n\nUse the tools to end the conversation, opt the person out when they ask not to be contacted, transfer them to a human, or schedule a callback.");
    s
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "end_conversation",
            "description": "End the conversation (hang up on a call) after your reply.",
            "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}}
        }},
        {"type": "function", "function": {
            "name": "opt_out",
            "description": "The person asked not to be contacted again: stop all messages and calls to them.",
            "parameters": {"type": "object", "properties": {}}
        }},
        {"type": "function", "function": {
            "name": "transfer_to_human",
            "description": "Hand the person over to a human colleague.",
            "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}}
        }},
        {"type": "function", "function": {
            "name": "schedule_callback",
            "description": "Contact the person again later.",
            "parameters": {"type": "object", "properties": {
                "delay_minutes": {"type": "integer", "minimum": 1, "maximum": MAX_CALLBACK_MINUTES, "description": "How many minutes from now."},
                "note": {"type": "string"}
            }, "required": ["delay_minutes"]}
        }}
    ])
}

fn summary_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "record_summary",
        "description": "Record the conversation's summary and outcome.",
        "parameters": {"type": "object", "properties": {
            "summary": {"type": "string"},
            "disposition": {"type": "string", "enum": Disposition::ALL.map(Disposition::as_str)}
        }, "required": ["summary", "disposition"]}
    }})
}

fn parse_completion(value: &Value) -> Result<Completion, AgentError> {
    let message = value
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("message"))
        .ok_or_else(|| AgentError::Malformed("no choices[0].message".to_owned()))?;
    let content = match message.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(AgentError::Malformed(format!(
                "message.content is {other}, not a string"
            )));
        }
    };
    let mut tool_calls = Vec::new();
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            let name = call["function"]["name"]
                .as_str()
                .ok_or_else(|| AgentError::Malformed("a tool call has no name".to_owned()))?;
            let args = call["function"]["arguments"].as_str().unwrap_or("{}");
            tool_calls.push((name.to_owned(), args.to_owned()));
        }
    }
    Ok(Completion {
        content,
        tool_calls,
        usage: parse_usage(value.get("usage")),
    })
}

/// The callback delay a `schedule_callback` call asks for, in seconds: `delay_minutes` between
/// 1 and [`MAX_CALLBACK_MINUTES`] (a larger number is cut, a smaller one raised), or the
/// default when it is missing or not a whole number.
fn callback_delay_secs(args: &Value) -> u64 {
    args.get("delay_minutes")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_CALLBACK_DELAY, |m| {
            m.clamp(1, MAX_CALLBACK_MINUTES) * 60
        })
}

fn parse_usage(usage: Option<&Value>) -> Usage {
    usage
        .map(|u| Usage {
            prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
        })
        .unwrap_or_default()
}

/// Tool calls become actions; an empty text gets the profile's line for the action, so the
/// person always hears or reads something.
fn into_reply(completion: Completion, request: &AgentRequest) -> AgentReply {
    let p = &request.profile;
    let mut actions = Vec::new();
    for (name, args) in &completion.tool_calls {
        let args: Value = serde_json::from_str(args).unwrap_or(Value::Null);
        let text_arg = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_owned);
        match name.as_str() {
            "end_conversation" => actions.push(AgentAction::EndConversation {
                reason: text_arg("reason"),
            }),
            "opt_out" => actions.push(AgentAction::OptOut),
            "transfer_to_human" => actions.push(AgentAction::Transfer {
                reason: text_arg("reason"),
            }),
            "schedule_callback" => actions.push(AgentAction::ScheduleCallback {
                delay_seconds: callback_delay_secs(&args),
                note: text_arg("note"),
            }),
            other => warn!(tool = other, "the model called an unknown tool; ignored"),
        }
    }
    let mut text = completion.content.trim().to_owned();
    if text.is_empty() {
        text = match actions.first() {
            Some(AgentAction::Transfer { .. }) => p.transfer_message.clone(),
            Some(AgentAction::EndConversation { .. }) => p.closing.clone(),
            Some(AgentAction::OptOut) => "Understood, we won't contact you again.".to_owned(),
            Some(AgentAction::ScheduleCallback { .. }) => {
                "Sure, we'll get back to you later.".to_owned()
            }
            None => p.fallback_reply.clone(),
        };
    }
    AgentReply {
        text,
        actions,
        usage: completion.usage,
        ..AgentReply::default()
    }
}

/// Splits a server-sent event stream into the `data` of each event.
#[derive(Debug, Default)]
struct SseParser {
    buffer: Vec<u8>,
    data: Vec<String>,
}

impl SseParser {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(pos) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(rest) = line.strip_prefix("data:") {
                self.data
                    .push(rest.strip_prefix(' ').unwrap_or(rest).to_owned());
            }
            // Comments (`:`), `event:`, `id:` and `retry:` lines carry nothing we use.
        }
        events
    }

    fn finish(&mut self) -> Vec<String> {
        let mut events = self.push(b"\n");
        if !self.data.is_empty() {
            events.push(self.data.join("\n"));
            self.data.clear();
        }
        events
    }
}

/// Builds a completion out of streamed chunks.
#[derive(Debug, Default)]
struct StreamAccumulator {
    completion: Completion,
    /// Tool calls by their `index`.
    tools: BTreeMap<u64, (String, String)>,
    seen_any: bool,
}

impl StreamAccumulator {
    /// Applies one event's data; true at `[DONE]`.
    fn apply(
        &mut self,
        data: &str,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<bool, AgentError> {
        if data.trim() == "[DONE]" {
            return Ok(true);
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| AgentError::Malformed(format!("a stream chunk is not JSON: {e}")))?;
        if let Some(err) = chunk.get("error") {
            return Err(AgentError::Server {
                status: err["code"]
                    .as_u64()
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(500),
            });
        }
        self.seen_any = true;
        if chunk.get("usage").is_some_and(|u| !u.is_null()) {
            self.completion.usage = parse_usage(chunk.get("usage"));
        }
        let Some(delta) = chunk
            .get("choices")
            .and_then(|c| c.get(0))
            .and_then(|c| c.get("delta"))
        else {
            return Ok(false);
        };
        if let Some(text) = delta.get("content").and_then(Value::as_str)
            && !text.is_empty()
        {
            self.completion.content.push_str(text);
            on_delta(text);
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                let index = call["index"].as_u64().unwrap_or(0);
                let entry = self.tools.entry(index).or_default();
                if let Some(name) = call["function"]["name"].as_str() {
                    entry.0.push_str(name);
                }
                if let Some(args) = call["function"]["arguments"].as_str() {
                    entry.1.push_str(args);
                }
            }
        }
        Ok(false)
    }

    fn finish(mut self) -> Completion {
        self.completion.tool_calls = self.tools.into_values().collect();
        self.completion
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_delays_from_the_model_are_bounded() {
        let delay = |v: Value| callback_delay_secs(&v);
        assert_eq!(delay(json!({"delay_minutes": 15})), 900);
        assert_eq!(delay(json!({"delay_minutes": 0})), 60);
        assert_eq!(
            delay(json!({"delay_minutes": u64::MAX})),
            MAX_CALLBACK_MINUTES * 60
        );
        assert_eq!(delay(json!({"delay_minutes": -5})), DEFAULT_CALLBACK_DELAY);
        assert_eq!(
            delay(json!({"delay_minutes": 1e300})),
            DEFAULT_CALLBACK_DELAY
        );
        assert_eq!(delay(json!({})), DEFAULT_CALLBACK_DELAY);
    }

    #[test]
    fn token_counts_from_the_model_saturate() {
        let mut total = Usage {
            prompt_tokens: u64::MAX - 1,
            completion_tokens: 1,
        };
        total.add(Usage {
            prompt_tokens: 10,
            completion_tokens: u64::MAX,
        });
        assert_eq!(
            (total.prompt_tokens, total.completion_tokens),
            (u64::MAX, u64::MAX)
        );
    }

    #[test]
    fn sse_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: {\"a\"").is_empty());
        assert_eq!(
            p.push(b":1}\r\n\r\n: keep-alive\n\ndata: [DONE]\n"),
            vec!["{\"a\":1}"]
        );
        assert_eq!(p.finish(), vec!["[DONE]"]);
    }

    #[test]
    fn streamed_tool_call_arguments_are_joined() {
        let mut acc = StreamAccumulator::default();
        let mut seen = String::new();
        let mut on = |d: &str| seen.push_str(d);
        for data in [
            r#"{"choices":[{"delta":{"role":"assistant","content":"Sure"}}]}"#,
            r#"{"choices":[{"delta":{"content":", later."}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"schedule_callback","arguments":"{\"delay_"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"minutes\": 30}"}}]}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5}}"#,
        ] {
            assert!(!acc.apply(data, &mut on).unwrap());
        }
        assert!(acc.apply("[DONE]", &mut on).unwrap());
        let c = acc.finish();
        assert_eq!(seen, "Sure, later.");
        assert_eq!(c.content, "Sure, later.");
        assert_eq!(
            c.tool_calls,
            vec![(
                "schedule_callback".to_owned(),
                "{\"delay_minutes\": 30}".to_owned()
            )]
        );
        assert_eq!(c.usage.prompt_tokens, 12);
    }
}
