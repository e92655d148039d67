//! Voice: an inbound call of several turns, forged webhooks, outbound calls to people,
//! machines, busy and unanswered numbers with retries, and a worker killed mid-call.

use std::time::Duration;

use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

use voice_agent_workflows::CallWorkflow;

use crate::campaigns::start_campaign;
use crate::helpers::{Stack, TemporalServer, eventually};

const WAIT: Duration = Duration::from_secs(90);
pub(crate) const OURS: &str = "+15005550006";

/// A number of its own per test run (call workflow ids of earlier runs may still exist).
pub(crate) fn person() -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    format!("+1628{}{:04}", 200 + n % 800, (n >> 16) % 10_000)
}

pub(crate) fn enc(number: &str) -> String {
    number.replace('+', "%2B")
}

/// Points our number's voice webhooks at the API, as one configures a Twilio number.
pub(crate) async fn route_our_number(stack: &Stack) -> anyhow::Result<()> {
    stack
        .admin(
            reqwest::Method::PUT,
            &format!("/admin/numbers/{}", enc(OURS)),
            Some(json!({
                "sms_url": format!("{}/twilio/sms", stack.api_http),
                "voice_url": format!("{}/twilio/voice", stack.api_http),
                "voice_status_callback": format!("{}/twilio/voice/status", stack.api_http),
            })),
        )
        .await?;
    Ok(())
}

/// Scripts how the simulator's callee at `number` behaves.
pub(crate) async fn script_callee(
    stack: &Stack,
    number: &str,
    script: Value,
) -> anyhow::Result<()> {
    stack
        .admin(
            reqwest::Method::PUT,
            &format!("/admin/callees/{}", enc(number)),
            Some(script),
        )
        .await?;
    Ok(())
}

/// A contact list of `(number, name)` (no name when empty); returns its id.
pub(crate) async fn voice_list(
    stack: &Stack,
    contacts: &[(&String, &str)],
) -> anyhow::Result<String> {
    let list_id = format!("cl_{}", uuid::Uuid::new_v4().simple());
    stack
        .mongo
        .collection::<Document>("contact_lists")
        .insert_one(doc! { "_id": &list_id, "name": "voice list" })
        .await?;
    let docs: Vec<Document> = contacts
        .iter()
        .enumerate()
        .map(|(i, (phone, name))| {
            let mut d = doc! { "_id": format!("ct_{i:06}"), "list_id": &list_id, "phone": phone.as_str(), "variables": {} };
            if !name.is_empty() {
                d.insert("name", *name);
            }
            d
        })
        .collect();
    stack
        .mongo
        .collection::<Document>("contacts")
        .insert_many(docs)
        .await?;
    Ok(list_id)
}

pub(crate) async fn ring_in(
    stack: &Stack,
    from: &str,
    lines: &[&str],
    think_ms: u64,
) -> anyhow::Result<String> {
    let r = stack
        .admin(
            reqwest::Method::POST,
            "/admin/calls/inbound",
            Some(json!({"from": from, "to": OURS, "lines": lines, "think_ms": think_ms})),
        )
        .await?;
    Ok(r["call_sid"].as_str().expect("call sid").to_owned())
}

pub(crate) async fn simulator_call(stack: &Stack, sid: &str) -> anyhow::Result<Value> {
    stack
        .admin(reqwest::Method::GET, &format!("/admin/calls/{sid}"), None)
        .await
}

/// The call logs of a call workflow once `n` attempts are logged with a final status.
pub(crate) async fn call_logs(
    stack: &Stack,
    call_id: &str,
    n: usize,
) -> anyhow::Result<Vec<Document>> {
    eventually(&format!("{n} call logs of {call_id}"), WAIT, || async {
        let logs: Vec<Document> = futures::TryStreamExt::try_collect(
            stack
                .mongo
                .collection::<Document>("call_logs")
                .find(doc! { "call_id": call_id, "outcome": { "$exists": true } })
                .sort(doc! { "attempt": 1 })
                .await?,
        )
        .await?;
        Ok((logs.len() >= n).then_some(logs))
    })
    .await
}

pub(crate) fn transcript(log: &Document) -> Vec<(String, String)> {
    log.get_array("transcript")
        .map(|t| {
            t.iter()
                .filter_map(|e| e.as_document())
                .map(|e| {
                    (
                        e.get_str("speaker").unwrap_or_default().to_owned(),
                        e.get_str("text").unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn expected_conversation() -> Vec<(String, String)> {
    [
        (
            "agent",
            "Hello there! This is the Voice Agent assistant. How can I help you today?",
        ),
        ("caller", "Hello"),
        ("agent", "Hello there! How can I help you today?"),
        ("caller", "my name is Grace"),
        ("agent", "Nice to meet you, Grace! How can I help?"),
        ("caller", "what's my name?"),
        ("agent", "You told me your name is Grace."),
        ("caller", "bye"),
        ("agent", "Thanks for talking with us. Goodbye!"),
    ]
    .iter()
    .map(|(s, t)| ((*s).to_owned(), (*t).to_owned()))
    .collect()
}

#[tokio::test]
async fn an_inbound_call_of_several_turns_ends_with_its_transcript_in_call_logs()
-> anyhow::Result<()> {
    let stack = Stack::start().await?;
    route_our_number(&stack).await?;
    let caller = person();
    let sid = ring_in(
        &stack,
        &caller,
        &["Hello", "my name is Grace", "what's my name?", "bye"],
        0,
    )
    .await?;

    let logs = call_logs(&stack, &format!("call-{sid}"), 1).await?;
    stack
        .save_history::<CallWorkflow>(&format!("call-{sid}"), "call-inbound-turns")
        .await?;
    let log = &logs[0];
    assert_eq!(transcript(log), expected_conversation());
    assert_eq!(log.get_str("direction")?, "inbound");
    assert_eq!(log.get_str("from")?, caller);
    assert_eq!(log.get_str("to")?, OURS);
    assert_eq!(log.get_str("status")?, "completed");
    assert_eq!(log.get_str("outcome")?, "completed");
    assert_eq!(log.get_str("call_sid")?, sid);
    assert!(
        log.get("started_at").is_some() && log.get("ended_at").is_some(),
        "{log}"
    );
    assert!(log.get("duration_secs").is_some(), "{log}");
    assert!(log.get_str("summary").is_ok(), "{log}");

    // The simulator heard the same conversation, and the call ended with our hang-up.
    let call = simulator_call(&stack, &sid).await?;
    assert_eq!(call["status"], json!("completed"), "{call}");
    let said: Vec<&str> = call["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == json!("say"))
        .map(|e| e["text"].as_str().unwrap_or_default())
        .collect();
    let agent_lines: Vec<String> = expected_conversation()
        .into_iter()
        .filter(|(s, _)| s == "agent")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(said, agent_lines);
    Ok(())
}

#[tokio::test]
async fn a_forged_voice_webhook_gets_403_and_starts_nothing() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    route_our_number(&stack).await?;
    let caller = person();
    let r = stack
        .admin(
            reqwest::Method::POST,
            "/admin/calls/inbound",
            Some(json!({"from": caller, "to": OURS, "lines": ["hi"], "bad_signature": true})),
        )
        .await?;
    let sid = r["call_sid"].as_str().unwrap().to_owned();
    let call = eventually("the forged call to end", WAIT, || async {
        let c = simulator_call(&stack, &sid).await?;
        Ok((c["status"] != json!("ringing") && c["status"] != json!("in-progress")).then_some(c))
    })
    .await?;
    assert_eq!(call["error_code"], json!(11200), "{call}");

    // Unsigned, straight to the API.
    let resp = stack
        .http
        .post(format!("{}/twilio/voice", stack.api_http))
        .form(&[
            ("CallSid", sid.as_str()),
            ("From", caller.as_str()),
            ("To", OURS),
        ])
        .send()
        .await?;
    assert_eq!(resp.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(
        stack
            .mongo
            .collection::<Document>("call_logs")
            .count_documents(doc! {})
            .await?,
        0
    );
    let temporal = stack.temporal().await?;
    let described = temporal
        .get_workflow_handle::<CallWorkflow>(format!("call-{sid}"))
        .describe(Default::default())
        .await;
    assert!(described.is_err(), "a forged webhook started a workflow");
    Ok(())
}

#[tokio::test]
async fn outbound_calls_end_with_the_right_outcome_voicemail_and_retries() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    route_our_number(&stack).await?;
    let (human, machine, busy, silent) = (person(), person(), person(), person());
    for (number, script) in [
        (
            &human,
            json!({"behaviour": "human", "lines": ["tell me more", "bye"]}),
        ),
        (&machine, json!({"behaviour": "machine"})),
        (&busy, json!({"behaviour": "busy"})),
        (&silent, json!({"behaviour": "no_answer"})),
    ] {
        script_callee(&stack, number, script).await?;
    }
    let voicemail = "Hi, this is Acme. Please call us back.";
    let mut ids = Vec::new();
    for number in [&human, &machine, &busy, &silent] {
        let resp = stack
            .http
            .post(format!("{}/api/calls", stack.api_http))
            .json(&json!({
                "to": number, "voicemail": voicemail, "max_attempts": 2, "retry_after_secs": 1
            }))
            .send()
            .await?;
        assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
        let body: Value = resp.json().await?;
        ids.push(body["call_id"].as_str().unwrap().to_owned());
    }

    let human_log = &call_logs(&stack, &ids[0], 1).await?[0];
    assert_eq!(human_log.get_str("outcome")?, "human");
    let t = transcript(human_log);
    assert_eq!(t[1], ("caller".to_owned(), "tell me more".to_owned()));
    assert_eq!(t.last().unwrap().0, "agent");

    let machine_log = &call_logs(&stack, &ids[1], 1).await?[0];
    assert_eq!(machine_log.get_str("outcome")?, "voicemail_left");
    let sid = machine_log.get_str("call_sid")?;
    let call = simulator_call(&stack, sid).await?;
    assert_eq!(call["voicemail"], json!(voicemail), "{call}");

    // Busy and unanswered: retried once, as configured; each attempt is its own call.
    for (id, outcome) in [(&ids[2], "busy"), (&ids[3], "no_answer")] {
        let logs = call_logs(&stack, id, 2).await?;
        assert_eq!(logs.len(), 2);
        for log in &logs {
            assert_eq!(log.get_str("outcome")?, outcome);
        }
        assert_ne!(logs[0].get_str("call_sid")?, logs[1].get_str("call_sid")?);
    }
    stack
        .save_history::<CallWorkflow>(&ids[2], "call-outbound-busy-retried")
        .await?;
    stack
        .save_history::<CallWorkflow>(&ids[1], "call-outbound-voicemail")
        .await?;
    // Someone who opted out (on any channel) is not dialled, even by a single call.
    let opted_out = person();
    stack
        .mongo
        .collection::<Document>("suppressions")
        .insert_one(doc! { "_id": &opted_out, "keyword": "STOP", "channel": "sms" })
        .await?;
    let resp: Value = stack
        .http
        .post(format!("{}/api/calls", stack.api_http))
        .json(&json!({"to": opted_out}))
        .send()
        .await?
        .json()
        .await?;
    let logs = call_logs(&stack, resp["call_id"].as_str().unwrap(), 1).await?;
    assert_eq!(logs[0].get_str("outcome")?, "opted_out");
    let calls = stack
        .admin(
            reqwest::Method::GET,
            &format!("/admin/calls?to={}", enc(&opted_out)),
            None,
        )
        .await?;
    assert_eq!(calls["total"], json!(0), "{calls}");

    // Nobody was dialled more than the attempts allow.
    for (number, most) in [(&human, 1), (&machine, 1), (&busy, 2), (&silent, 2)] {
        let calls = stack
            .admin(
                reqwest::Method::GET,
                &format!("/admin/calls?to={}", enc(number)),
                None,
            )
            .await?;
        assert_eq!(calls["total"], json!(most), "{number}: {calls}");
    }
    Ok(())
}

#[tokio::test]
async fn a_worker_killed_mid_call_loses_no_turn() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    route_our_number(&stack).await?;
    let caller = person();
    // Two seconds between the caller's lines leave room to kill and restart the worker.
    let sid = ring_in(
        &stack,
        &caller,
        &["Hello", "my name is Grace", "what's my name?", "bye"],
        2_000,
    )
    .await?;
    eventually("the first turn", WAIT, || async {
        let call = simulator_call(&stack, &sid).await?;
        let said = call["events"].as_array().map_or(0, |e| {
            e.iter().filter(|e| e["kind"] == json!("say")).count()
        });
        Ok((said >= 2).then_some(()))
    })
    .await?;
    stack.kill_worker().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.start_worker()?;

    let logs = call_logs(&stack, &format!("call-{sid}"), 1).await?;
    assert_eq!(transcript(&logs[0]), expected_conversation());
    let call = simulator_call(&stack, &sid).await?;
    let errors: Vec<&Value> = call["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == json!("error"))
        .collect();
    assert!(errors.is_empty(), "the caller heard an error: {errors:?}");
    Ok(())
}

#[tokio::test]
async fn a_voice_campaign_calls_each_contact_with_the_right_outcome() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    route_our_number(&stack).await?;
    let (human, machine, busy, silent, opted_out) =
        (person(), person(), person(), person(), person());
    for (number, script) in [
        (
            &human,
            json!({"behaviour": "human", "lines": ["yes, tell me more", "bye"]}),
        ),
        (&machine, json!({"behaviour": "machine"})),
        (&busy, json!({"behaviour": "busy"})),
        (&silent, json!({"behaviour": "no_answer"})),
    ] {
        script_callee(&stack, number, script).await?;
    }
    let list_id = voice_list(
        &stack,
        &[
            (&human, "Hana"),
            (&machine, "Max"),
            (&busy, "Bea"),
            (&silent, "Sid"),
            (&opted_out, "Otto"),
        ],
    )
    .await?;
    stack
        .mongo
        .collection::<Document>("suppressions")
        .insert_one(doc! { "_id": &opted_out, "keyword": "STOP", "channel": "sms" })
        .await?;

    let id = start_campaign(
        &stack,
        json!({
            "name": "Voice check-in",
            "channel": "voice",
            "list_id": list_id,
            "template": "Hi {{name}}, this is Acme. Please call us back.",
            "rate_per_second": 5,
            "max_attempts": 2,
            "retry_after_secs": 1,
            "max_in_flight": 2,
        }),
    )
    .await?;

    let counters = stack
        .temporal()
        .await?
        .get_workflow_handle::<voice_agent_workflows::CampaignWorkflow>(format!("campaign-{id}"))
        .get_result(temporalio_client::WorkflowGetResultOptions::default())
        .await?;
    assert_eq!(counters.calls_started, 4, "{counters:?}");
    assert_eq!(counters.skipped, 1, "{counters:?}");
    let outcomes: Vec<(&str, u64)> = counters
        .outcomes
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("busy", 1),
            ("human", 1),
            ("no_answer", 1),
            ("voicemail_left", 1)
        ]
    );

    // Every item in exactly one final state, and the progress endpoint agrees.
    let progress: Value = stack
        .http
        .get(format!("{}/api/campaigns/{id}/progress", stack.api_http))
        .send()
        .await?
        .json()
        .await?;
    let counts = &progress["counts"];
    for (status, n) in [
        ("answered", 1),
        ("voicemail_left", 1),
        ("busy", 1),
        ("no_answer", 1),
        ("skipped", 1),
    ] {
        assert_eq!(counts[status], json!(n), "{status}: {progress}");
    }

    // The machine got its own voicemail; busy and unanswered numbers were dialled twice;
    // the opted-out contact never.
    let calls = |number: &String| {
        let path = format!("/admin/calls?to={}", enc(number));
        let stack = &stack;
        async move { stack.admin(reqwest::Method::GET, &path, None).await }
    };
    let machine_calls = calls(&machine).await?;
    assert_eq!(
        machine_calls["calls"][0]["voicemail"],
        json!("Hi Max, this is Acme. Please call us back."),
        "{machine_calls}"
    );
    for (number, n) in [
        (&human, 1),
        (&machine, 1),
        (&busy, 2),
        (&silent, 2),
        (&opted_out, 0),
    ] {
        assert_eq!(calls(number).await?["total"], json!(n), "{number}");
    }
    stack
        .save_history::<voice_agent_workflows::CampaignWorkflow>(
            &format!("campaign-{id}"),
            // A tick's calls started together (`voice-calls-started-together`); the fixtures
            // of the same campaign from before that patch are `campaign-voice-outcomes-bursts`
            // (one start at a time) and `campaign-voice-outcomes` (one timer per call).
            "campaign-voice-outcomes-together",
        )
        .await?;
    Ok(())
}

/// Forty calls in one tick: each dialled once, started in workflow tasks of
/// `MAX_STARTS_PER_TASK` starts. (A first version joined a tick's 100 starts with
/// `futures::join_all`, which past 30 futures polls through wakers of its own; the workflow
/// runtime refused them as nondeterministic and the campaign's first task failed forever. With
/// tasks of 20 this test would no longer catch that; the workflows crate has no `futures`
/// dependency, so the combinator cannot come back there.)
#[tokio::test]
async fn a_voice_campaign_starts_a_ticks_forty_calls_together_and_each_once() -> anyhow::Result<()>
{
    const CALLS: usize = 40;
    let stack = Stack::start_with_env(&[("SENDER_LIMIT_CALLS_PER_SECOND", "0")]).await?;
    route_our_number(&stack).await?;
    stack
        .admin(
            reqwest::Method::PUT,
            "/admin/faults",
            Some(json!({"calls_per_second": 1000})),
        )
        .await?;
    let numbers: Vec<String> = (0..CALLS).map(|_| person()).collect();
    for number in &numbers {
        // Answers, hears the greeting, hangs up.
        script_callee(
            &stack,
            number,
            json!({"behaviour": "hangup_mid_call", "hangup_after_turns": 0}),
        )
        .await?;
    }
    let contacts: Vec<(&String, &str)> = numbers.iter().map(|n| (n, "")).collect();
    let list_id = voice_list(&stack, &contacts).await?;
    let id = start_campaign(
        &stack,
        json!({
            "name": "Forty at once",
            "channel": "voice",
            "list_id": list_id,
            "template": "Hi, this is Acme.",
            "rate_per_second": 100,
            "max_attempts": 1,
            "max_in_flight": CALLS,
        }),
    )
    .await?;

    let temporal = stack.temporal().await?;
    let campaign = temporal
        .get_workflow_handle::<voice_agent_workflows::CampaignWorkflow>(format!("campaign-{id}"));
    let counters = tokio::time::timeout(
        WAIT,
        campaign.get_result(temporalio_client::WorkflowGetResultOptions::default()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the campaign did not finish within {WAIT:?}"))??;
    assert_eq!(counters.calls_started, CALLS as u64, "{counters:?}");
    assert_eq!(
        counters.outcomes.values().sum::<u64>(),
        CALLS as u64,
        "{counters:?}"
    );
    for number in &numbers {
        let path = format!("/admin/calls?to={}", enc(number));
        let calls = stack.admin(reqwest::Method::GET, &path, None).await?;
        assert_eq!(calls["total"], json!(1), "{number} dialled once");
    }

    // They started together: workflow tasks of the most starts one may issue.
    let history: Value = serde_json::from_slice(
        &campaign
            .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?,
    )?;
    let (mut most, mut in_task) = (0, 0);
    for event in history["events"].as_array().into_iter().flatten() {
        match event["event_type"].as_i64() {
            // Workflow task completed: the commands of the next task follow.
            Some(7) => in_task = 0,
            // Start child workflow execution initiated.
            Some(29) => {
                in_task += 1;
                most = most.max(in_task);
            }
            _ => {}
        }
    }
    assert_eq!(
        most,
        voice_agent_workflows::MAX_STARTS_PER_TASK,
        "the most starts one workflow task issued"
    );
    Ok(())
}

#[tokio::test]
async fn a_call_placed_over_grpc_reads_back_with_its_transcript() -> anyhow::Result<()> {
    use voice_agent_protos::v1::call_service_client::CallServiceClient;
    use voice_agent_protos::v1::{GetCallRequest, PlaceCallRequest};

    let stack = Stack::start().await?;
    route_our_number(&stack).await?;
    let callee = person();
    script_callee(
        &stack,
        &callee,
        json!({"behaviour": "human", "lines": ["hello", "bye"]}),
    )
    .await?;
    let mut grpc = CallServiceClient::new(stack.grpc_channel().await?);
    let bad = grpc
        .place_call(PlaceCallRequest {
            to: "12".to_owned(),
            ..PlaceCallRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    let no_profile = grpc
        .place_call(PlaceCallRequest {
            to: callee.clone(),
            agent_profile: "nobody".to_owned(),
            ..PlaceCallRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        no_profile.code(),
        tonic::Code::InvalidArgument,
        "{no_profile:?}"
    );
    assert!(no_profile.message().contains("nobody"), "{no_profile:?}");
    let http_no_profile = stack
        .http
        .post(format!("{}/api/campaigns", stack.api_http))
        .json(
            &json!({"name": "x", "channel": "voice", "list_id": "cl_x", "agent_profile": "nobody"}),
        )
        .send()
        .await?;
    assert_eq!(http_no_profile.status(), reqwest::StatusCode::BAD_REQUEST);
    let unknown = grpc
        .get_call(GetCallRequest {
            call_id: "call-nothing-here".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");

    let call_id = grpc
        .place_call(PlaceCallRequest {
            to: callee.clone(),
            ..PlaceCallRequest::default()
        })
        .await?
        .into_inner()
        .call_id;
    let call = eventually("the call to finish", WAIT, || {
        let mut grpc = grpc.clone();
        let call_id = call_id.clone();
        async move {
            let c = grpc
                .get_call(GetCallRequest { call_id })
                .await?
                .into_inner();
            Ok((!c.running && !c.attempts.is_empty()).then_some(c))
        }
    })
    .await?;
    let attempt = &call.attempts[0];
    assert_eq!(attempt.outcome, "human");
    let said: Vec<(&str, &str)> = attempt
        .transcript
        .iter()
        .map(|t| (t.speaker.as_str(), t.text.as_str()))
        .collect();
    assert_eq!(said[1], ("caller", "hello"));
    assert_eq!(said[3], ("caller", "bye"));
    Ok(())
}

#[tokio::test]
async fn silence_gets_reprompts_then_a_polite_end_and_recordings_are_logged() -> anyhow::Result<()>
{
    let stack = Stack::start().await?;
    route_our_number(&stack).await?;
    let caller = person();
    let r = stack
        .admin(
            reqwest::Method::POST,
            "/admin/calls/inbound",
            Some(json!({"from": caller, "to": OURS, "lines": [
                {"silence": true}, {"silence": true}, {"silence": true}, "never heard"
            ]})),
        )
        .await?;
    let sid = r["call_sid"].as_str().unwrap().to_owned();
    let logs = call_logs(&stack, &format!("call-{sid}"), 1).await?;
    let said: Vec<String> = transcript(&logs[0]).into_iter().map(|(_, t)| t).collect();
    let profile = voice_agent_agent::AgentProfile::default();
    assert_eq!(
        said,
        [
            "Hello there! This is the Voice Agent assistant. How can I help you today?".to_owned(),
            profile.reprompt.clone(),
            profile.reprompt.clone(),
            profile.closing.clone(),
        ]
    );

    // An outbound call with recording on: the recording URL is in the call log.
    let callee = person();
    script_callee(
        &stack,
        &callee,
        json!({"behaviour": "human", "lines": ["bye"]}),
    )
    .await?;
    let resp: Value = stack
        .http
        .post(format!("{}/api/calls", stack.api_http))
        .json(&json!({"to": callee, "record": true}))
        .send()
        .await?
        .json()
        .await?;
    let call_id = resp["call_id"].as_str().unwrap().to_owned();
    let logs = call_logs(&stack, &call_id, 1).await?;
    let url = logs[0].get_str("recording_url")?;
    assert!(url.starts_with("http"), "{url}");
    Ok(())
}

#[tokio::test]
async fn a_voice_campaign_can_be_paused_resumed_and_cancelled() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    route_our_number(&stack).await?;
    let numbers: Vec<String> = (0..6).map(|_| person()).collect();
    for n in &numbers {
        // Each call lasts a few seconds, so the campaign is still going when we act.
        script_callee(
            &stack,
            n,
            json!({"behaviour": "human", "lines": ["hello", "bye"], "think_ms": 700}),
        )
        .await?;
    }
    let named: Vec<(&String, &str)> = numbers.iter().map(|n| (n, "")).collect();
    let list_id = voice_list(&stack, &named).await?;
    let created: Value = stack
        .http
        .post(format!("{}/api/campaigns", stack.api_http))
        .json(&json!({"name": "Pausable", "channel": "voice", "list_id": list_id, "max_in_flight": 1}))
        .send()
        .await?
        .json()
        .await?;
    let id = created["id"].as_str().unwrap().to_owned();
    let post = |action: &str| {
        let url = format!("{}/api/campaigns/{id}/{action}", stack.api_http);
        let http = stack.http.clone();
        async move {
            let r = http.post(url).send().await?;
            anyhow::ensure!(r.status().is_success(), "{}", r.text().await?);
            Ok::<_, anyhow::Error>(())
        }
    };
    let dialled = || async {
        let mut n = 0;
        for number in &numbers {
            let calls = stack
                .admin(
                    reqwest::Method::GET,
                    &format!("/admin/calls?to={}", enc(number)),
                    None,
                )
                .await?;
            n += calls["total"].as_u64().unwrap_or(0);
        }
        Ok::<_, anyhow::Error>(n)
    };
    post("start").await?;
    eventually("the first call", WAIT, || async {
        Ok((dialled().await? >= 1).then_some(()))
    })
    .await?;
    post("pause").await?;
    // The call in flight finishes; no new call starts while paused.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let while_paused = dialled().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        dialled().await?,
        while_paused,
        "a call started while paused"
    );
    assert!(
        while_paused < 6,
        "everyone was called before the pause took effect"
    );

    post("resume").await?;
    eventually("a call after resuming", WAIT, || async {
        Ok((dialled().await? > while_paused).then_some(()))
    })
    .await?;
    post("cancel").await?;
    let counters = stack
        .temporal()
        .await?
        .get_workflow_handle::<voice_agent_workflows::CampaignWorkflow>(format!("campaign-{id}"))
        .get_result(temporalio_client::WorkflowGetResultOptions::default())
        .await?;
    // Every contact is either called (and ends with an outcome) or cancelled, never both.
    let called = dialled().await?;
    let progress: Value = eventually("every item to be final", WAIT, || async {
        let p: Value = stack
            .http
            .get(format!("{}/api/campaigns/{id}/progress", stack.api_http))
            .send()
            .await?
            .json()
            .await?;
        let counts = p["counts"].as_object().cloned().unwrap_or_default();
        let open = ["pending", "sending"]
            .iter()
            .map(|s| counts.get(*s).and_then(Value::as_i64).unwrap_or(0))
            .sum::<i64>();
        Ok((open == 0).then_some(p))
    })
    .await?;
    // A call still ringing when the cancel came is cancelled too, so it may be dialled and
    // still end cancelled; an answered one goes on to its end.
    let counts = &progress["counts"];
    let answered = counts["answered"].as_u64().unwrap_or(0);
    assert!(answered >= 1 && answered <= called, "{progress}");
    assert_eq!(
        answered + counts["cancelled"].as_u64().unwrap_or(0),
        6,
        "{progress} {counters:?}"
    );
    assert!(called < 6, "the cancel came too late to matter: {progress}");
    Ok(())
}

#[tokio::test]
async fn a_call_lost_while_the_api_was_down_is_reconciled_with_twilio() -> anyhow::Result<()> {
    // Simulated call time runs at real speed here, so the call's time limit means seconds.
    let mut stack = Stack::start_with_simulator_args(&["--call-second-ms", "1000"]).await?;
    route_our_number(&stack).await?;
    let callee = person();
    script_callee(
        &stack,
        &callee,
        json!({"behaviour": "human", "lines": ["hello", "bye"], "think_ms": 1500}),
    )
    .await?;
    let resp: Value = stack
        .http
        .post(format!("{}/api/calls", stack.api_http))
        .json(&json!({"to": callee, "max_duration_secs": 5, "ring_timeout_secs": 5}))
        .send()
        .await?
        .json()
        .await?;
    let call_id = resp["call_id"].as_str().unwrap().to_owned();
    // Answered and greeted; then the API goes down: the next webhook and the final status
    // callback never reach us.
    let sid = eventually("the greeting", WAIT, || async {
        let calls = stack
            .admin(
                reqwest::Method::GET,
                &format!("/admin/calls?to={}", enc(&callee)),
                None,
            )
            .await?;
        let call = &calls["calls"][0];
        let greeted = call["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == json!("say")));
        Ok(greeted.then(|| call["sid"].as_str().unwrap_or_default().to_owned()))
    })
    .await?;
    stack.kill_api().await?;
    let ended = eventually("the call to end at Twilio", WAIT, || async {
        let c = simulator_call(&stack, &sid).await?;
        Ok((c["status"] == json!("completed")).then_some(c))
    })
    .await?;
    // The workflow asks Twilio once the call cannot be going on any more, and records it;
    // the API stays down meanwhile, so no status callback can be what settles it.
    let logs = call_logs(&stack, &call_id, 1).await?;
    stack.start_api().await?;
    assert_eq!(logs[0].get_str("status")?, "completed");
    assert_eq!(logs[0].get_str("call_sid")?, sid);
    assert_eq!(
        transcript(&logs[0])[0],
        (
            "agent".to_owned(),
            "Hello there! This is the Voice Agent assistant. How can I help you today?".to_owned()
        )
    );
    assert_eq!(ended["error_code"], json!(11200), "{ended}");
    let calls = stack
        .admin(
            reqwest::Method::GET,
            &format!("/admin/calls?to={}", enc(&callee)),
            None,
        )
        .await?;
    assert_eq!(calls["total"], json!(1), "dialled twice: {calls}");
    stack
        .save_history::<CallWorkflow>(&call_id, "call-lost-reconciled-with-twilio")
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_final_status_that_arrives_while_temporal_is_down_settles_the_call_when_it_is_back()
-> anyhow::Result<()> {
    let mut temporal = TemporalServer::start().await?;
    let stack = Stack::start_with(&temporal.address).await?;
    route_our_number(&stack).await?;
    let callee = person();
    script_callee(
        &stack,
        &callee,
        json!({"behaviour": "human", "lines": ["hello", "tell me more", "bye"], "think_ms": 4000}),
    )
    .await?;
    // An hour's time limit: without the status callback, the workflow would ask Twilio only
    // after ringing plus that hour plus a grace.
    let resp: Value = stack
        .http
        .post(format!("{}/api/calls", stack.api_http))
        .json(&json!({"to": callee, "max_duration_secs": 3600}))
        .send()
        .await?
        .json()
        .await?;
    let call_id = resp["call_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{resp}"))
        .to_owned();
    let sid = eventually("the greeting", WAIT, || async {
        let calls = stack
            .admin(
                reqwest::Method::GET,
                &format!("/admin/calls?to={}", enc(&callee)),
                None,
            )
            .await?;
        let call = &calls["calls"][0];
        let greeted = call["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == json!("say")));
        Ok(greeted.then(|| call["sid"].as_str().unwrap_or_default().to_owned()))
    })
    .await?;
    // Temporal goes away: the next turn cannot be answered, the call ends at Twilio, and its
    // final status callback arrives while nothing can signal the workflow.
    temporal.stop().await?;
    eventually("the call to end at Twilio", WAIT, || async {
        let c = simulator_call(&stack, &sid).await?;
        Ok((c["status"] == json!("completed")).then_some(()))
    })
    .await?;
    eventually("the final status to wait in the inbox", WAIT, || async {
        let n = stack
            .mongo
            .collection::<Document>("inbox")
            .count_documents(doc! { "kind": "call_status", "target": &call_id, "_id": { "$regex": ":completed:" } })
            .await?;
        Ok((n == 1).then_some(()))
    })
    .await?;

    temporal.start_again().await?;
    let logs = call_logs(&stack, &call_id, 1).await?;
    assert_eq!(logs[0].get_str("status")?, "completed");
    assert_eq!(logs[0].get_str("call_sid")?, sid);
    let calls = stack
        .admin(
            reqwest::Method::GET,
            &format!("/admin/calls?to={}", enc(&callee)),
            None,
        )
        .await?;
    assert_eq!(calls["total"], json!(1), "dialled twice: {calls}");
    Ok(())
}

#[tokio::test]
async fn vactl_places_a_call_and_prints_its_transcript() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    route_our_number(&stack).await?;
    let callee = person();
    script_callee(
        &stack,
        &callee,
        json!({"behaviour": "human", "lines": ["hello", "bye"]}),
    )
    .await?;
    let vactl = std::path::PathBuf::from(std::env::var("VA_BIN_DIR")?).join("vactl");
    let out = tokio::process::Command::new(&vactl)
        .env("VOICE_AGENT_API_KEY", &stack.api_key)
        .args([
            "--api",
            &stack.api_grpc,
            "calls",
            "place",
            "--to",
            &callee,
            "--wait",
        ])
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    // Two JSON documents: the placed call, then the finished one.
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()?;
    assert_eq!(docs.len(), 2, "{text}");
    let call = &docs[1];
    assert_eq!(call["running"], json!(false), "{call}");
    assert_eq!(call["attempts"][0]["outcome"], json!("human"), "{call}");
    assert_eq!(
        call["attempts"][0]["transcript"][1]["text"],
        json!("hello"),
        "{call}"
    );
    Ok(())
}

#[tokio::test]
async fn repeated_voice_webhooks_are_answered_once() -> anyhow::Result<()> {
    use voice_agent_twilio::signature::compute_signature;

    let stack = Stack::start().await?;
    route_our_number(&stack).await?;
    let caller = person();
    // The caller waits before speaking, leaving time to repeat webhooks mid-call.
    let sid = ring_in(&stack, &caller, &["Hello", "bye"], 2_000).await?;
    eventually("the greeting", WAIT, || async {
        let call = simulator_call(&stack, &sid).await?;
        Ok(call["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == json!("say")))
            .then_some(()))
    })
    .await?;

    let post = |path: String, params: Vec<(String, String)>, token: Option<&'static str>| {
        let url = format!("{}{path}", stack.api_http);
        let signature = compute_signature(crate::helpers::AUTH_TOKEN, &url, &params);
        let mut req = stack
            .http
            .post(url)
            .header("X-Twilio-Signature", signature)
            .form(&params);
        if let Some(t) = token {
            req = req.header("I-Twilio-Idempotency-Token", t);
        }
        async move {
            let r = req.send().await?;
            anyhow::ensure!(r.status().is_success(), "{}", r.status());
            Ok::<_, anyhow::Error>(r.text().await?)
        }
    };
    let pairs = |extra: &[(&str, &str)]| {
        let mut p: Vec<(String, String)> = [
            ("CallSid", sid.as_str()),
            ("From", caller.as_str()),
            ("To", OURS),
            ("AccountSid", crate::helpers::ACCOUNT_SID),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        p.sort();
        p
    };
    // The call's first webhook again: the same greeting, not a second one.
    let again = post(
        "/twilio/voice".to_owned(),
        pairs(&[("CallStatus", "ringing"), ("Direction", "inbound")]),
        None,
    )
    .await?;
    assert!(
        again.contains("This is the Voice Agent assistant"),
        "{again}"
    );
    // A Gather result retried by Twilio (same idempotency token): one turn.
    let gather = format!("/twilio/voice/gather?wf=call-{sid}");
    let params = pairs(&[("SpeechResult", "tell me more"), ("Confidence", "0.9")]);
    let first = post(gather.clone(), params.clone(), Some("retry-token-1")).await?;
    let second = post(gather, params, Some("retry-token-1")).await?;
    assert_eq!(first, second);

    let logs = call_logs(&stack, &format!("call-{sid}"), 1).await?;
    let t = transcript(&logs[0]);
    let count = |text: &str| t.iter().filter(|(_, x)| x.contains(text)).count();
    assert_eq!(count("This is the Voice Agent assistant"), 1, "{t:?}");
    assert_eq!(count("tell me more"), 1, "{t:?}");
    Ok(())
}

/// A Chat Completions endpoint that never answers a reply (the connection stays open) but
/// answers summaries at once, so the call's log is written without waiting on it.
async fn hanging_model() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|body: String| async move {
            if !body.contains("record_summary") {
                std::future::pending::<()>().await;
            }
            axum::Json(json!({
                "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": "record_summary", "arguments": "{\"summary\":\"The caller got no answer.\",\"disposition\":\"other\"}"},
                }]}}],
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

#[tokio::test]
async fn a_hanging_model_gets_the_fallback_said_within_twilios_wait() -> anyhow::Result<()> {
    // The profile allows the model 20 s (the default), more than Twilio waits for a webhook.
    let fallback = "Sorry, I can't answer that right now.";
    let dir = std::env::temp_dir().join(format!("va-agents-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("agents.toml");
    std::fs::write(
        &file,
        format!(
            "[profiles.support]\ninstructions = \"Help people.\"\ngreeting = \"Hello, how can I help?\"\ntimeout_secs = 20\nfallback_reply = \"{fallback}\"\n\n[numbers]\n\"{OURS}\" = \"support\"\n"
        ),
    )?;
    let model_url = hanging_model().await?;
    let stack = Stack::start_with_env(&[
        ("AGENTS_FILE", file.to_str().unwrap()),
        ("AGENT_MODEL_BASE_URL", &model_url),
        ("AGENT_MODEL", "test-model"),
        ("AGENT_MODEL_MAX_RETRIES", "0"),
    ])
    .await?;
    route_our_number(&stack).await?;
    let caller = person();
    let sid = ring_in(&stack, &caller, &["What are your opening hours?"], 0).await?;

    let logs = call_logs(&stack, &format!("call-{sid}"), 1).await?;
    let call = simulator_call(&stack, &sid).await?;
    // Twilio got an answer to every webhook: no application error.
    assert_eq!(call["error_code"], Value::Null, "{call}");
    let events = call["events"].as_array().unwrap();
    let at = |e: &Value| {
        chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap_or_default())
            .expect("event time")
    };
    let spoke = events
        .iter()
        .position(|e| e["kind"] == json!("speech"))
        .expect("the caller spoke");
    let answer = events[spoke..]
        .iter()
        .find(|e| e["kind"] == json!("say"))
        .expect("an answer was said");
    assert_eq!(answer["text"], json!(fallback), "{call}");
    let waited = (at(answer) - at(&events[spoke])).to_std()?;
    println!("the gather webhook was answered after {waited:?}");
    assert!(
        waited < Duration::from_secs(15),
        "the answer took {waited:?}, longer than Twilio waits"
    );

    // The transcript holds what the caller heard, no more: the fallback, not a late reply.
    let heard: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == json!("say"))
        .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    let t = transcript(&logs[0]);
    let agent_lines: Vec<String> = t
        .iter()
        .filter(|(s, _)| s == "agent")
        .map(|(_, x)| x.clone())
        .collect();
    assert_eq!(agent_lines, heard, "{t:?}");
    assert_eq!(
        t[..3],
        [
            ("agent".to_owned(), "Hello, how can I help?".to_owned()),
            (
                "caller".to_owned(),
                "What are your opening hours?".to_owned()
            ),
            ("agent".to_owned(), fallback.to_owned()),
        ],
        "{t:?}"
    );
    Ok(())
}

/// Issue 10: each call records the profile version it used, and a call that starts after the
/// profile is edited uses (and records) the new version, inbound and outbound alike.
#[tokio::test]
async fn a_call_records_its_profile_version_and_one_after_an_edit_uses_the_new_version()
-> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("va-agents-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("agents.toml");
    std::fs::write(
        &file,
        format!(
            "[profiles.support]\ninstructions = \"Help people.\"\ngreeting = \"Hello from version one.\"\n\n[numbers]\n\"{OURS}\" = \"support\"\n"
        ),
    )?;
    let stack = Stack::start_with_env(&[("AGENTS_FILE", file.to_str().unwrap())]).await?;
    route_our_number(&stack).await?;
    let profile_of = |log: &Document| {
        (
            log.get_str("profile").ok().map(str::to_owned),
            log.get_i64("profile_version").ok(),
        )
    };
    let first_agent_line = |log: &Document| {
        transcript(log)
            .into_iter()
            .find(|(s, _)| s == "agent")
            .map(|(_, t)| t)
            .unwrap_or_default()
    };
    // The log carries the profile once the agent answered; wait for it, not only the outcome.
    let logged = |call_id: String| {
        let stack = &stack;
        async move {
            eventually(&format!("the profile on {call_id}"), WAIT, || async {
                let log = stack
                    .mongo
                    .collection::<Document>("call_logs")
                    .find_one(doc! { "call_id": &call_id, "outcome": { "$exists": true }, "profile": { "$exists": true } })
                    .await?;
                Ok(log)
            })
            .await
        }
    };

    let inbound = ring_in(&stack, &person(), &["bye"], 0).await?;
    let log = logged(format!("call-{inbound}")).await?;
    assert_eq!(profile_of(&log), (Some("support".to_owned()), Some(1)));
    assert_eq!(first_agent_line(&log), "Hello from version one.");

    // An edit, as the Settings page makes it: the whole profile, from the version it read.
    let url = format!("{}/api/agent-profiles/support", stack.api_http);
    let current: Value = stack.http.get(&url).send().await?.json().await?;
    let mut settings = current["profile"]["settings"].clone();
    settings["greeting"] = json!("Hello from version two.");
    let r = stack
        .http
        .put(&url)
        .json(&json!({"expected_version": 1, "numbers": [OURS], "settings": settings}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "the edit answered {}", r.status());

    let inbound = ring_in(&stack, &person(), &["bye"], 0).await?;
    let log = logged(format!("call-{inbound}")).await?;
    assert_eq!(profile_of(&log), (Some("support".to_owned()), Some(2)));
    assert_eq!(first_agent_line(&log), "Hello from version two.");

    let callee = person();
    script_callee(
        &stack,
        &callee,
        json!({"behaviour": "human", "lines": ["bye"]}),
    )
    .await?;
    let resp: Value = stack
        .http
        .post(format!("{}/api/calls", stack.api_http))
        .json(&json!({"to": callee, "profile": "support"}))
        .send()
        .await?
        .json()
        .await?;
    let call_id = resp["call_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no call id in {resp}"))?
        .to_owned();
    let log = logged(call_id).await?;
    assert_eq!(profile_of(&log), (Some("support".to_owned()), Some(2)));
    Ok(())
}
