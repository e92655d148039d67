//! Hostile uploads against the real api process: each gets a clear 4xx, nothing is stored,
//! the api keeps serving, and its peak memory stays within a bound set by the upload limit.

use std::time::Duration;

use mongodb::bson::doc;
use rust_xlsxwriter::Workbook;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::campaigns::api;
use crate::helpers::{Stack, eventually};

/// The upload limit the api runs with here; every file below fits in it.
const LIMIT: usize = 2 << 20;
/// How far the api's peak resident memory may rise over the whole corpus. The limits scale
/// with the upload limit (a cell per 4 bytes, 4 bytes of text per byte), so at 2 MiB an
/// accepted file of the worst shape costs well under this; the dotted header alone took the
/// api before the fix from 66 MiB to 6 GB.
const MAX_GROWTH_KIB: u64 = 160 * 1024;

fn xlsx(write: impl FnOnce(&mut rust_xlsxwriter::Worksheet)) -> Vec<u8> {
    let mut wb = Workbook::new();
    write(wb.add_worksheet());
    wb.save_to_buffer().expect("an in-memory workbook")
}

/// (name, file, expected HTTP status, expected error code).
fn corpus() -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let mut dots = ".".repeat(1 << 20);
    dots.push_str("phone\n");
    for i in 0..2_000 {
        dots.push_str(&format!("garbage {i}\n"));
    }

    let mut long_header = format!("Name,{}phone\n", ".".repeat(1_500));
    long_header.push_str(&"Ann,nope\n".repeat(20_000));

    let huge_cell = format!("Phone,Note\n4155550100,{}\n", "x".repeat(LIMIT - 100));

    // 256 columns with long headers, each row 256 one-character cells: every cell would
    // become a variable keyed by its header in every contact.
    let mut wide = String::from("Phone");
    for c in 1..256 {
        wide.push_str(&format!(",{c:03}{}", "h".repeat(197)));
    }
    wide.push('\n');
    let mut i = 0;
    while wide.len() < LIMIT - 1_024 {
        wide.push_str(&format!("+1415555{:04}{}\n", i % 10_000, ",1".repeat(255)));
        i += 1;
    }

    let far = xlsx(|ws| {
        ws.write_string(0, 0, "Phone").unwrap();
        ws.write_string(1, 0, "4155550100").unwrap();
        ws.write_string(1, 15_999, "far").unwrap();
    });

    let long = "y".repeat(2_000);
    let repeated = xlsx(|ws| {
        ws.write_string(0, 0, "Phone").unwrap();
        ws.write_string(0, 1, "Note").unwrap();
        for r in 1..60_000 {
            ws.write_string(r, 1, &long).unwrap();
        }
    });

    let tail = "z".repeat(1_990);
    let strings = xlsx(|ws| {
        ws.write_string(0, 0, "Phone").unwrap();
        for r in 1..10_000 {
            ws.write_string(r, 1, format!("{r:08}{tail}")).unwrap();
        }
    });

    let mut deep = String::from("Phone\n");
    while deep.len() < LIMIT - 2 {
        deep.push_str("1\n");
    }

    let files = vec![
        ("dots.csv", dots.into_bytes(), 422, "cell_too_long"),
        (
            "long-header.csv",
            long_header.into_bytes(),
            422,
            "header_too_long",
        ),
        (
            "huge-cell.csv",
            huge_cell.into_bytes(),
            422,
            "cell_too_long",
        ),
        ("wide.csv", wide.into_bytes(), 413, "too_many_cells"),
        ("far.xlsx", far, 422, "too_many_columns"),
        ("repeated.xlsx", repeated, 413, "too_much_text"),
        ("strings.xlsx", strings, 413, "file_too_large"),
        ("deep.csv", deep.into_bytes(), 413, "too_many_cells"),
    ];
    for (name, bytes, _, _) in &files {
        assert!(bytes.len() <= LIMIT, "{name} has {} bytes", bytes.len());
    }
    files
}

async fn upload(
    stack: &Stack,
    list_id: &str,
    name: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<(u16, Value)> {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
    );
    let resp = stack
        .http
        .post(format!(
            "{}/api/contact-lists/{list_id}/uploads",
            stack.api_http
        ))
        .multipart(form)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

#[tokio::test]
async fn hostile_uploads_get_a_clear_error_store_nothing_and_stay_small() -> anyhow::Result<()> {
    let stack = Stack::start_with_env(&[("CONTACTS_MAX_UPLOAD_BYTES", &LIMIT.to_string())]).await?;
    let (status, list) = api(
        &stack,
        reqwest::Method::POST,
        "/api/contact-lists",
        Some(json!({"name": "hostile"})),
    )
    .await?;
    assert_eq!(status, 201, "{list}");
    let list_id = list["id"].as_str().expect("list id").to_owned();
    let corpus = corpus();
    let start_kib = stack.api_memory_kib("VmHWM")?;

    for (name, bytes, want_status, want_code) in corpus {
        let (status, body) = upload(&stack, &list_id, name, bytes).await?;
        assert_eq!(
            (status, body["code"].as_str()),
            (want_status, Some(want_code)),
            "{name}: {body}"
        );
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.len() < 300,
            "{name}: a short message, not the file: {message}"
        );
        let health = stack
            .http
            .get(format!("{}/healthz", stack.api_http))
            .send()
            .await?;
        assert!(health.status().is_success(), "{name}: the api still serves");
        let peak_kib = stack.api_memory_kib("VmHWM")?;
        eprintln!(
            "{name}: api peak {} MiB (start {} MiB)",
            peak_kib / 1024,
            start_kib / 1024
        );
    }
    let grown_kib = stack.api_memory_kib("VmHWM")?.saturating_sub(start_kib);
    assert!(
        grown_kib <= MAX_GROWTH_KIB,
        "the api's peak memory grew by {} MiB over the corpus",
        grown_kib / 1024
    );

    let stored = stack
        .mongo
        .collection::<mongodb::bson::Document>("contacts")
        .count_documents(doc! { "list_id": &list_id })
        .await?;
    let reports = stack
        .mongo
        .collection::<mongodb::bson::Document>("contact_imports")
        .count_documents(doc! { "list_id": &list_id })
        .await?;
    assert_eq!(
        (stored, reports),
        (0, 0),
        "nothing is stored for refused files"
    );

    let (status, body) = upload(
        &stack,
        &list_id,
        "fine.csv",
        b"Phone,Name\n(415) 555-0141,Ada\n".to_vec(),
    )
    .await?;
    assert_eq!((status, &body["imported"]), (200, &json!(1)), "{body}");
    Ok(())
}

/// Starts an upload whose body never finishes: the headers and the start of the file, then
/// nothing, the connection held open until the stream is dropped.
async fn stalled_upload(stack: &Stack, list_id: &str) -> anyhow::Result<tokio::net::TcpStream> {
    let addr = stack.api_http.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let key = &stack.api_key;
    let head = format!(
        "POST /api/contact-lists/{list_id}/uploads HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {key}\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 1000000\r\n\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.csv\"\r\n\r\n\
         Phone\n4155550100\n"
    );
    conn.write_all(head.as_bytes()).await?;
    Ok(conn)
}

#[tokio::test]
async fn uploads_beyond_the_import_slots_are_refused_busy_before_their_body_is_read()
-> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (_, list) = api(
        &stack,
        reqwest::Method::POST,
        "/api/contact-lists",
        Some(json!({"name": "busy"})),
    )
    .await?;
    let list_id = list["id"].as_str().expect("list id").to_owned();
    // Uploads whose bodies never finish take the slots; each round adds one (one that came
    // in while a finished upload held a slot was itself answered busy), until a small upload
    // is answered busy at once.
    let mut stalled = Vec::new();
    let mut busy = None;
    for _ in 0..50 {
        stalled.push(stalled_upload(&stack, &list_id).await?);
        let resp = stack
            .http
            .post(format!(
                "{}/api/contact-lists/{list_id}/uploads",
                stack.api_http
            ))
            .multipart(
                reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(b"Phone\n4155550100\n".to_vec())
                        .file_name("third.csv"),
                ),
            )
            .send()
            .await?;
        if resp.status().as_u16() == 503 {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            busy = Some((503, resp.json::<Value>().await?, retry_after));
            break;
        }
    }
    let (status, body, retry_after) = busy.expect("a busy answer once the slots are held");
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("busy")),
        "{body}"
    );
    assert_eq!(retry_after.as_deref(), Some("5"));

    // The stalled clients go away; their slots come back and uploads work again.
    drop(stalled);
    let (status, body) = eventually("a free slot", Duration::from_secs(30), || async {
        let (status, body) = upload(
            &stack,
            &list_id,
            "fine.csv",
            b"Phone\n(415) 555-0142\n".to_vec(),
        )
        .await?;
        Ok((status != 503).then_some((status, body)))
    })
    .await?;
    assert_eq!((status, &body["imported"]), (200, &json!(1)), "{body}");
    Ok(())
}

#[tokio::test]
async fn numbers_out_of_range_are_refused_at_the_api_with_the_field_named() -> anyhow::Result<()> {
    use voice_agent_protos::v1::PlaceCallRequest;
    use voice_agent_protos::v1::call_service_client::CallServiceClient;

    let stack = Stack::start().await?;
    let mut grpc = CallServiceClient::new(stack.grpc_channel().await?);
    for (field, request) in [
        (
            "max_attempts",
            PlaceCallRequest {
                max_attempts: -1,
                ..Default::default()
            },
        ),
        (
            "retry_after_secs",
            PlaceCallRequest {
                retry_after_secs: -600,
                ..Default::default()
            },
        ),
        (
            "max_duration_secs",
            PlaceCallRequest {
                max_duration_secs: i64::MAX,
                ..Default::default()
            },
        ),
        (
            "ring_timeout_secs",
            PlaceCallRequest {
                ring_timeout_secs: u32::MAX,
                ..Default::default()
            },
        ),
    ] {
        let request = PlaceCallRequest {
            to: "+14155550143".to_owned(),
            ..request
        };
        let err = grpc.place_call(request).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(field), "{field}: {err:?}");
    }

    for (field, body) in [
        (
            "max_duration_secs",
            json!({"to": "+14155550143", "max_duration_secs": u64::MAX}),
        ),
        (
            "max_attempts",
            json!({"to": "+14155550143", "max_attempts": 11}),
        ),
        (
            "retry_after_secs",
            json!({"to": "+14155550143", "retry_after_secs": 0}),
        ),
    ] {
        let (status, answer) = api(&stack, reqwest::Method::POST, "/api/calls", Some(body)).await?;
        assert_eq!(status, 400, "{field}: {answer}");
        assert!(answer.to_string().contains(field), "{field}: {answer}");
    }
    let (status, answer) = api(
        &stack,
        reqwest::Method::GET,
        "/api/conversations?limit=0",
        None,
    )
    .await?;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = api(
        &stack,
        reqwest::Method::GET,
        "/api/conversations?limit=99999999999999999999",
        None,
    )
    .await?;
    assert_eq!(status, 400, "{answer}");
    Ok(())
}

#[tokio::test]
async fn the_logs_of_a_run_hold_no_whole_phone_number_or_secret() -> anyhow::Result<()> {
    use voice_agent_protos::v1::SendSmsRequest;

    // Outbound SMS to delivery, an inbound SMS through the inbox to its conversation, a
    // contact added and uploaded, an outbound call.
    let stack = Stack::start_with_env(&[("RUST_LOG", "info")]).await?;
    let (sms_to, contact, uploaded, called, texter) = (
        "+14155550151",
        "+14155550152",
        "+14155550153",
        "+14155550154",
        "+14155550155",
    );
    let inbound = stack
        .admin(
            reqwest::Method::POST,
            "/admin/inbound",
            Some(json!({"from": texter, "to": crate::helpers::FROM, "body": "hello there"})),
        )
        .await?;
    assert_eq!(inbound["status"], json!(200), "{inbound}");
    stack
        .handed_over(inbound["message_sid"].as_str().unwrap_or_default())
        .await?;
    stack
        .grpc()
        .await?
        .send_sms(SendSmsRequest {
            to: sms_to.to_owned(),
            body: "log scan".to_owned(),
            ..Default::default()
        })
        .await?;
    let (_, list) = api(
        &stack,
        reqwest::Method::POST,
        "/api/contact-lists",
        Some(json!({"name": "logs"})),
    )
    .await?;
    let list_id = list["id"].as_str().expect("list id").to_owned();
    let (status, body) = api(
        &stack,
        reqwest::Method::POST,
        &format!("/api/contact-lists/{list_id}/contacts"),
        Some(json!({"phone": contact})),
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    let (status, body) = upload(
        &stack,
        &list_id,
        "one.csv",
        format!("Phone\n{uploaded}\n").into_bytes(),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api(
        &stack,
        reqwest::Method::POST,
        "/api/calls",
        Some(json!({"to": called})),
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    // Delivered means the worker sent it and the status callback came back.
    eventually("the SMS in the ledger", Duration::from_secs(60), || async {
        Ok((!stack.ledger(sms_to).await?.is_empty()).then_some(()))
    })
    .await?;
    eventually(
        "the worker to log the dial",
        Duration::from_secs(60),
        || async {
            let logs = stack.logs.lock().expect("log lock");
            Ok(logs.contains("call placed").then_some(()))
        },
    )
    .await?;

    let logs = stack.logs.lock().expect("log lock").clone();
    // The numbers are logged, masked: the scan below looks at the lines that matter.
    assert!(
        logs.contains("+1******0151"),
        "the api's send log is captured:\n{logs}"
    );
    for secret in [
        sms_to,
        texter,
        contact,
        uploaded,
        called,
        crate::helpers::FROM,
        crate::helpers::AUTH_TOKEN,
    ] {
        let digits = secret.trim_start_matches('+');
        let leaked: Vec<&str> = logs.lines().filter(|l| l.contains(digits)).collect();
        assert!(
            leaked.is_empty(),
            "{secret} in the logs:\n{}",
            leaked.join("\n")
        );
    }
    Ok(())
}
