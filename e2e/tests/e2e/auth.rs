//! Access control against the real api: every route and gRPC method refuses missing, wrong,
//! expired, revoked and underprivileged credentials; browser sessions (sign-in, CSRF,
//! content type, sign-out, expiry, password change); the Host allowlist; the sign-in rate
//! limits, per address and per account across two apis; and the audit log.

use std::time::Duration;

use anyhow::Context;
use mongodb::bson::{DateTime, Document, doc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use voice_agent_api::auth::policy::{Access, GRPC_METHODS, ROUTES};
use voice_agent_protos::v1::CreateContactListRequest;
use voice_agent_protos::v1::contact_service_client::ContactServiceClient;
use voice_agent_store::Role;

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, AuthedChannel, Stack, authed_channel, test_api_key,
};

/// A client with no credential and no cookie store.
fn anonymous() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Creates an API key with the stack's admin key; returns the key and its prefix.
async fn create_key(stack: &Stack, role: &str, extra: Value) -> anyhow::Result<(String, String)> {
    let mut body = json!({ "name": format!("e2e {role}"), "role": role });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let resp = stack
        .http
        .post(format!("{}/api/api-keys", stack.api_http))
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(
        resp.status() == StatusCode::CREATED,
        "{}",
        resp.text().await?
    );
    let created: Value = resp.json().await?;
    Ok((
        created["key"]
            .as_str()
            .context("the key is shown once")?
            .to_owned(),
        created["prefix"].as_str().context("a prefix")?.to_owned(),
    ))
}

async fn create_user(
    stack: &Stack,
    email: &str,
    password: &str,
    role: &str,
) -> anyhow::Result<Value> {
    let resp = stack
        .http
        .post(format!("{}/api/users", stack.api_http))
        .json(&json!({ "email": email, "password": password, "role": role }))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status() == StatusCode::CREATED,
        "{}",
        resp.text().await?
    );
    Ok(resp.json().await?)
}

/// One REST call with an optional bearer key; the status.
async fn call_route(
    stack: &Stack,
    client: &reqwest::Client,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> anyhow::Result<StatusCode> {
    // Ids that name nothing: a call that passes the auth layer ends in 400/404, changing
    // nothing.
    let concrete: String = path
        .split('/')
        .map(|s| if s.starts_with('{') { "nothing" } else { s })
        .collect::<Vec<_>>()
        .join("/");
    let method = Method::from_bytes(method.as_bytes())?;
    let mut req = client.request(method.clone(), format!("{}{concrete}", stack.api_http));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if method != Method::GET && !concrete.ends_with("/uploads") {
        req = req.json(&json!({}));
    }
    Ok(req.send().await?.status())
}

/// One gRPC call with an empty message (every field at its default); the status code.
async fn call_method(channel: AuthedChannel, path: &'static str) -> anyhow::Result<Code> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let result = grpc
        .unary(
            tonic::Request::new(()),
            PathAndQuery::from_static(path),
            codec,
        )
        .await;
    Ok(match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    })
}

#[tokio::test]
async fn every_route_and_grpc_method_refuses_missing_bad_and_underprivileged_credentials()
-> anyhow::Result<()> {
    // Arrange: keys of every kind.
    let stack = Stack::start().await?;
    let anon = anonymous()?;
    let (viewer, _) = create_key(&stack, "viewer", json!({})).await?;
    let (manager, _) = create_key(&stack, "manager", json!({})).await?;
    let (expired, _) = create_key(
        &stack,
        "admin",
        json!({ "expires_at": "2020-01-01T00:00:00Z" }),
    )
    .await?;
    let (revoked, revoked_prefix) = create_key(&stack, "admin", json!({})).await?;
    let resp = stack
        .http
        .delete(format!("{}/api/api-keys/{revoked_prefix}", stack.api_http))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let unknown = test_api_key();
    let bad: [(&str, Option<&str>); 5] = [
        ("no credential", None),
        ("a malformed key", Some("not-a-key")),
        ("an unknown key", Some(&unknown)),
        ("an expired key", Some(&expired)),
        ("a revoked key", Some(&revoked)),
    ];
    let roles: [(Role, &str); 3] = [
        (Role::Viewer, &viewer),
        (Role::Manager, &manager),
        (Role::Admin, &stack.api_key),
    ];

    // Act and assert: REST.
    let mut failures = Vec::new();
    for route in ROUTES {
        let Access::Role(needed) = route.access else {
            // Sign-in is public: it answers the body, not the credential.
            let status = call_route(&stack, &anon, route.method, route.path, None).await?;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{} {}",
                route.method,
                route.path
            );
            continue;
        };
        for (what, key) in bad {
            let status = call_route(&stack, &anon, route.method, route.path, key).await?;
            if status != StatusCode::UNAUTHORIZED {
                failures.push(format!(
                    "{} {} with {what}: {status}",
                    route.method, route.path
                ));
            }
        }
        for (role, key) in roles {
            let status = call_route(&stack, &anon, route.method, route.path, Some(key)).await?;
            let refused = status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED;
            let expected_refused = role < needed;
            if refused != expected_refused || (expected_refused && status != StatusCode::FORBIDDEN)
            {
                failures.push(format!(
                    "{} {} as {role:?} (needs {needed:?}): {status}",
                    route.method, route.path
                ));
            }
        }
    }
    // A path no route matches still wants a credential before it is told 404.
    assert_eq!(
        call_route(&stack, &anon, "GET", "/api/no-such-route", None).await?,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call_route(&stack, &anon, "GET", "/api/no-such-route", Some(&viewer)).await?,
        StatusCode::NOT_FOUND
    );

    // Act and assert: gRPC.
    for (path, needed) in GRPC_METHODS {
        for (what, key) in bad {
            let code = call_method(authed_channel(&stack.api_grpc, key).await?, path).await?;
            if code != Code::Unauthenticated {
                failures.push(format!("gRPC {path} with {what}: {code:?}"));
            }
        }
        for (role, key) in roles {
            let code = call_method(authed_channel(&stack.api_grpc, Some(key)).await?, path).await?;
            let refused = matches!(code, Code::PermissionDenied | Code::Unauthenticated);
            if refused != (role < *needed) || (refused && code != Code::PermissionDenied) {
                failures.push(format!(
                    "gRPC {path} as {role:?} (needs {needed:?}): {code:?}"
                ));
            }
        }
    }
    // Reflection only with a key.
    let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    let code = call_method(authed_channel(&stack.api_grpc, None).await?, reflection).await?;
    assert_eq!(code, Code::Unauthenticated);
    let code = call_method(
        authed_channel(&stack.api_grpc, Some(&viewer)).await?,
        reflection,
    )
    .await?;
    assert!(
        !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
        "{code:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// The `va_session=…` pair of a sign-in's `Set-Cookie`, and the whole header.
fn session_cookie(resp: &reqwest::Response) -> anyhow::Result<(String, String)> {
    let set = resp
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .context("a Set-Cookie header")?
        .to_str()?
        .to_owned();
    let pair = set.split(';').next().unwrap_or_default().trim().to_owned();
    Ok((pair, set))
}

async fn sign_in(
    stack: &Stack,
    client: &reqwest::Client,
    email: &str,
    password: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(client
        .post(format!("{}/api/auth/login", stack.api_http))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await?)
}

async fn me(stack: &Stack, client: &reqwest::Client, cookie: &str) -> anyhow::Result<StatusCode> {
    Ok(client
        .get(format!("{}/api/auth/me", stack.api_http))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await?
        .status())
}

#[tokio::test]
async fn a_browser_signs_in_works_with_its_csrf_token_and_signs_out() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let browser = anonymous()?;
    let password = "correct horse battery staple";
    create_user(&stack, "Ana@Example.com", password, "manager").await?;

    // A wrong password and an unknown email get the same answer.
    for (email, pw) in [
        ("ana@example.com", "wrong password!"),
        ("bob@example.com", password),
    ] {
        let resp = sign_in(&stack, &browser, email, pw).await?;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().get(reqwest::header::SET_COOKIE).is_none());
    }

    let resp = sign_in(&stack, &browser, "ana@example.com", password).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let (cookie, set_cookie) = session_cookie(&resp)?;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    // PUBLIC_BASE_URL is http here, so the cookie cannot be Secure.
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let signed_in: Value = resp.json().await?;
    assert_eq!(signed_in["kind"], "user");
    assert_eq!(signed_in["name"], "ana@example.com");
    assert_eq!(signed_in["role"], "manager");
    let csrf = signed_in["csrf_token"]
        .as_str()
        .context("a CSRF token")?
        .to_owned();

    let who: Value = browser
        .get(format!("{}/api/auth/me", stack.api_http))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(who["csrf_token"], csrf.as_str());

    // A state-changing request needs the CSRF token, and JSON.
    let create = |token: Option<&str>, content_type: &str, body: &str| {
        let mut req = browser
            .post(format!("{}/api/contact-lists", stack.api_http))
            .header(reqwest::header::COOKIE, &cookie)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.header("X-CSRF-Token", t);
        }
        req.send()
    };
    let json_body = r#"{"name": "Browser list"}"#;
    let resp = create(None, "application/json", json_body).await?;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.json::<Value>().await?["code"], "csrf");
    assert_eq!(
        create(Some("forged"), "application/json", json_body)
            .await?
            .status(),
        StatusCode::FORBIDDEN
    );
    for simple in ["text/plain", "application/x-www-form-urlencoded"] {
        let resp = create(Some(&csrf), simple, json_body).await?;
        assert_eq!(
            resp.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{simple}"
        );
    }
    // A program's key is not spared the content-type check either.
    let resp = stack
        .http
        .post(format!("{}/api/contact-lists", stack.api_http))
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body(json_body)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        create(Some(&csrf), "application/json", json_body)
            .await?
            .status(),
        StatusCode::CREATED
    );
    // A manager is not an admin.
    let resp = browser
        .get(format!("{}/api/users", stack.api_http))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Sign-out needs the token too, clears the cookie and ends the session.
    let logout = |token: Option<&str>| {
        let mut req = browser
            .post(format!("{}/api/auth/logout", stack.api_http))
            .header(reqwest::header::COOKIE, &cookie);
        if let Some(t) = token {
            req = req.header("X-CSRF-Token", t);
        }
        req.send()
    };
    assert_eq!(logout(None).await?.status(), StatusCode::FORBIDDEN);
    let resp = logout(Some(&csrf)).await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(session_cookie(&resp)?.1.contains("Max-Age=0"));
    assert_eq!(
        me(&stack, &browser, &cookie).await?,
        StatusCode::UNAUTHORIZED
    );

    // An expired session is refused even before MongoDB removes it.
    let resp = sign_in(&stack, &browser, "ana@example.com", password).await?;
    let (cookie, _) = session_cookie(&resp)?;
    assert_eq!(me(&stack, &browser, &cookie).await?, StatusCode::OK);
    stack
        .mongo
        .collection::<Document>("sessions")
        .update_many(
            doc! { "revoked_at": null },
            doc! { "$set": { "expires_at": DateTime::from_millis(DateTime::now().timestamp_millis() - 1000) } },
        )
        .await?;
    assert_eq!(
        me(&stack, &browser, &cookie).await?,
        StatusCode::UNAUTHORIZED
    );
    Ok(())
}

#[tokio::test]
async fn a_password_change_signs_out_the_users_other_sessions() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let browser = anonymous()?;
    let (old, new) = ("first password 123", "second password 456");
    create_user(&stack, "carl@example.com", old, "viewer").await?;
    let here = sign_in(&stack, &browser, "carl@example.com", old).await?;
    let (here_cookie, _) = session_cookie(&here)?;
    let csrf = here.json::<Value>().await?["csrf_token"]
        .as_str()
        .context("a CSRF token")?
        .to_owned();
    let (elsewhere_cookie, _) =
        session_cookie(&sign_in(&stack, &browser, "carl@example.com", old).await?)?;

    let change = |current: &str| {
        browser
            .post(format!("{}/api/auth/password", stack.api_http))
            .header(reqwest::header::COOKIE, &here_cookie)
            .header("X-CSRF-Token", &csrf)
            .json(&json!({ "current_password": current, "new_password": new }))
            .send()
    };
    assert_eq!(
        change("not my password").await?.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(change(old).await?.status(), StatusCode::NO_CONTENT);

    assert_eq!(me(&stack, &browser, &here_cookie).await?, StatusCode::OK);
    assert_eq!(
        me(&stack, &browser, &elsewhere_cookie).await?,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sign_in(&stack, &browser, "carl@example.com", old)
            .await?
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sign_in(&stack, &browser, "carl@example.com", new)
            .await?
            .status(),
        StatusCode::OK
    );
    // The bootstrap admin user signs in too (browser tests use it).
    let resp = sign_in(&stack, &browser, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await?["role"], "admin");
    Ok(())
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_address_and_other_hosts_are_refused() -> anyhow::Result<()> {
    let stack = Stack::start_with_env(&[
        ("API_LOGIN_ATTEMPTS_PER_MINUTE", "3"),
        ("API_PUBLIC_METRICS", "false"),
    ])
    .await?;
    let browser = anonymous()?;
    for _ in 0..3 {
        let resp = sign_in(&stack, &browser, "nobody@example.com", "guess guess guess").await?;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = sign_in(&stack, &browser, "nobody@example.com", "guess guess guess").await?;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .context("a Retry-After header")?
        .to_str()?
        .parse()?;
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // DNS rebinding: a page on evil.example resolving to our address gets nothing, not even
    // the app shell; health checks and Twilio's webhooks are not affected.
    for path in ["/api/auth/me", "/", "/some/client/route"] {
        let resp = stack
            .http
            .get(format!("{}{path}", stack.api_http))
            .header(reqwest::header::HOST, "evil.example")
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
    }
    let resp = anonymous()?
        .get(format!("{}/healthz", stack.api_http))
        .header(reqwest::header::HOST, "evil.example")
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = stack
        .http
        .get(format!("{}/api/auth/me", stack.api_http))
        .header(reqwest::header::HOST, "localhost")
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);

    // With API_PUBLIC_METRICS=false, /metrics wants a credential like the API.
    let metrics = format!("{}/metrics", stack.api_http);
    assert_eq!(
        anonymous()?.get(&metrics).send().await?.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        stack.http.get(&metrics).send().await?.status(),
        StatusCode::OK
    );
    Ok(())
}

/// A sign-in attempt at `api`, from `address` as the balancer in front reports it
/// (`X-Forwarded-For`, trusted with `API_TRUST_FORWARDED_FOR`).
async fn attempt(
    client: &reqwest::Client,
    api: &str,
    address: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(client
        .post(format!("{api}/api/auth/login"))
        .header("x-forwarded-for", address)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await?)
}

fn retry_after(resp: &reqwest::Response) -> anyhow::Result<u64> {
    Ok(resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .context("a Retry-After header")?
        .to_str()?
        .parse()?)
}

#[tokio::test]
async fn sign_in_limits_per_address_and_per_account_hold_across_two_apis() -> anyhow::Result<()> {
    // Arrange: two api replicas on one database, each trusting the balancer's address header.
    let stack = Stack::start_with_env(&[
        ("API_LOGIN_ATTEMPTS_PER_MINUTE", "4"),
        ("API_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE", "6"),
        ("API_TRUST_FORWARDED_FOR", "true"),
    ])
    .await?;
    let (_second, second_url) = stack.spawn_api().await?;
    let apis = [stack.api_http.clone(), second_url];
    let browser = anonymous()?;
    let guess = "guess guess guess";

    // Per address: its four attempts are spread over both apis; the fifth is refused by either.
    for i in 0..4 {
        let resp = attempt(
            &browser,
            &apis[i % 2],
            "203.0.113.7",
            "a@example.com",
            guess,
        )
        .await?;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    for api in &apis {
        let resp = attempt(&browser, api, "203.0.113.7", "b@example.com", guess).await?;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "{api}");
        assert!((1..=60).contains(&retry_after(&resp)?));
    }

    // Per account: six guesses from six addresses over both apis; the seventh, from yet
    // another address, is refused by either api, even with the right password.
    for i in 0..6 {
        let from = format!("198.51.100.{i}");
        let resp = attempt(&browser, &apis[i % 2], &from, ADMIN_EMAIL, guess).await?;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    for (i, api) in apis.iter().enumerate() {
        let from = format!("198.51.100.{}", 50 + i);
        let resp = attempt(&browser, api, &from, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "{api}");
        assert!((1..=60).contains(&retry_after(&resp)?));
    }

    // Other accounts and addresses are not affected.
    let resp = attempt(&browser, &apis[1], "192.0.2.99", "a@example.com", guess).await?;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn state_changing_requests_are_audited_and_admins_page_through_the_log() -> anyhow::Result<()>
{
    // Arrange
    let stack = Stack::start().await?;
    let admin_prefix = stack
        .api_key
        .split('_')
        .nth(1)
        .context("a prefix")?
        .to_owned();
    // The viewer key comes from vactl, as an operator would make it.
    let vactl = std::path::PathBuf::from(std::env::var("VA_BIN_DIR")?).join("vactl");
    let out = tokio::process::Command::new(&vactl)
        .env("VOICE_AGENT_API_KEY", &stack.api_key)
        .args(["--http", &stack.api_http, "keys", "create"])
        .args([
            "--name",
            "dashboard",
            "--role",
            "viewer",
            "--expires-in-days",
            "1",
        ])
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout)?;
    let viewer = created["key"].as_str().context("the key")?.to_owned();
    let viewer_prefix = created["prefix"].as_str().context("the prefix")?.to_owned();
    assert_eq!(created["state"], "active");

    // Act: one accepted, one forbidden and one anonymous REST change, a gRPC change, a read.
    let created: Value = stack
        .http
        .post(format!("{}/api/contact-lists", stack.api_http))
        .json(&json!({ "name": "Audited" }))
        .send()
        .await?
        .json()
        .await?;
    let list_id = created["id"].as_str().context("a list id")?.to_owned();
    let resp = anonymous()?
        .delete(format!("{}/api/contact-lists/{list_id}", stack.api_http))
        .bearer_auth(&viewer)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = anonymous()?
        .post(format!("{}/api/campaigns/cmp_x/start", stack.api_http))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    ContactServiceClient::new(stack.grpc_channel().await?)
        .create_contact_list(CreateContactListRequest {
            name: "Audited over gRPC".to_owned(),
        })
        .await?;
    stack
        .http
        .get(format!("{}/api/contact-lists", stack.api_http))
        .send()
        .await?;

    // Assert: viewers cannot read the log; pages are bounded and chained.
    let resp = anonymous()?
        .get(format!("{}/api/audit", stack.api_http))
        .bearer_auth(&viewer)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = stack
        .http
        .get(format!("{}/api/audit?limit=1000", stack.api_http))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let mut entries = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = stack
            .http
            .get(format!(
                "{}/api/audit?limit=2&cursor={cursor}",
                stack.api_http
            ))
            .send()
            .await?
            .json()
            .await?;
        let got = page["entries"].as_array().context("entries")?;
        assert!(got.len() <= 2);
        entries.extend(got.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let find = |method: &str, route: &str, status: i64| {
        entries
            .iter()
            .find(|e| e["method"] == method && e["route"] == route && e["status"] == status)
            .cloned()
    };
    let accepted = find("POST", "/api/contact-lists", 201).context("the accepted change")?;
    assert_eq!(accepted["actor_kind"], "api_key");
    assert_eq!(accepted["actor_id"], admin_prefix.as_str());
    assert_eq!(accepted["ip"], "127.0.0.1");
    assert_eq!(accepted["transport"], "http");
    let forbidden =
        find("DELETE", "/api/contact-lists/{id}", 403).context("the forbidden change")?;
    assert_eq!(forbidden["actor_id"], viewer_prefix.as_str());
    assert_eq!(forbidden["target"], list_id.as_str());
    let anonymous_entry =
        find("POST", "/api/campaigns/{id}/start", 401).context("the anonymous change")?;
    assert_eq!(anonymous_entry["actor_kind"], "anonymous");
    assert_eq!(anonymous_entry["target"], "cmp_x");
    let grpc = find("POST", "/voiceagent.v1.ContactService/CreateContactList", 0)
        .context("the gRPC change")?;
    assert_eq!(grpc["transport"], "grpc");
    assert_eq!(grpc["actor_id"], admin_prefix.as_str());
    // Reads are not audited; key creation (a change) is, newest first.
    assert!(find("GET", "/api/contact-lists", 200).is_none());
    assert!(entries.iter().any(|e| e["route"] == "/api/api-keys"));
    assert_eq!(
        entries[0]["route"],
        "/voiceagent.v1.ContactService/CreateContactList"
    );
    Ok(())
}

#[tokio::test]
async fn each_key_has_its_own_request_budget_and_is_told_when_to_retry() -> anyhow::Result<()> {
    // Arrange: a budget of 3 requests at once, refilled at one every 5 seconds (slow enough
    // that a busy machine does not refill it between two steps of the test).
    let stack = Stack::start_with_env(&[
        ("API_RATE_LIMIT_PER_MINUTE", "12"),
        ("API_RATE_LIMIT_BURST", "3"),
        ("API_ANON_RATE_LIMIT_PER_MINUTE", "60"),
    ])
    .await?;
    // Creating the keys spends two of the admin key's three.
    let (viewer, _) = create_key(&stack, "viewer", json!({})).await?;
    let (other, _) = create_key(&stack, "viewer", json!({})).await?;
    let client = anonymous()?;
    let lists = format!("{}/api/contact-lists", stack.api_http);

    // Act and assert: the viewer's burst passes, the next request is refused with a wait.
    for _ in 0..3 {
        let status = client
            .get(&lists)
            .bearer_auth(&viewer)
            .send()
            .await?
            .status();
        assert_eq!(status, StatusCode::OK);
    }
    let refused = client.get(&lists).bearer_auth(&viewer).send().await?;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .context("a Retry-After header")?
        .to_str()?
        .parse()?;
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await?;
    assert_eq!(body["code"], "rate_limited");

    // gRPC spends the same budget and says RESOURCE_EXHAUSTED.
    let code = call_method(
        authed_channel(&stack.api_grpc, Some(&viewer)).await?,
        "/voiceagent.v1.ContactService/ListContactLists",
    )
    .await?;
    assert_eq!(code, Code::ResourceExhausted);

    // Another key is not affected by the first one's spending.
    let status = client
        .get(&lists)
        .bearer_auth(&other)
        .send()
        .await?
        .status();
    assert_eq!(status, StatusCode::OK);

    // Refused credentials spend nothing: a wrong key keeps getting 401, not 429.
    for _ in 0..5 {
        let status = client
            .get(&lists)
            .bearer_auth(test_api_key())
            .send()
            .await?
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    // The budget refills: after the wait the viewer is served again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let status = client
        .get(&lists)
        .bearer_auth(&viewer)
        .send()
        .await?
        .status();
    assert_eq!(status, StatusCode::OK);
    Ok(())
}
