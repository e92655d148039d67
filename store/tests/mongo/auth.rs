//! Users, API keys, sessions and the audit log: lookups refuse what is expired or revoked, and
//! the audit log pages newest first without gaps.

use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use voice_agent_store::{ApiKeyDoc, AuditDoc, Role, SessionDoc, UserDoc};

use super::store;

fn at(offset_ms: i64) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + offset_ms)
}

fn user(email: &str) -> UserDoc {
    UserDoc {
        id: format!("usr_{email}"),
        email: email.to_owned(),
        password_hash: "$argon2id$…".to_owned(),
        role: Role::Admin,
        disabled: false,
        created_at: DateTime::now(),
        updated_at: DateTime::now(),
    }
}

fn session(hash: &str, user_id: &str, expires_at: DateTime) -> SessionDoc {
    SessionDoc {
        token_hash: hash.to_owned(),
        user_id: user_id.to_owned(),
        csrf_token: "csrf".to_owned(),
        created_at: DateTime::now(),
        expires_at,
        revoked_at: None,
    }
}

#[tokio::test]
async fn emails_are_unique_and_the_last_admin_is_counted() {
    let store = store().await;
    store.ensure_auth_schema().await.unwrap();
    assert!(store.create_user(&user("a@example.com")).await.unwrap());
    let mut again = user("a@example.com");
    again.id = "usr_other".to_owned();
    assert!(!store.create_user(&again).await.unwrap());
    assert_eq!(store.count_active_admins().await.unwrap(), 1);
    assert!(
        store
            .update_user("usr_a@example.com", Some(Role::Viewer), None)
            .await
            .unwrap()
    );
    assert_eq!(store.count_active_admins().await.unwrap(), 0);
    assert!(
        !store
            .update_user("usr_nobody", None, Some(true))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn only_live_sessions_are_found_and_a_user_can_be_signed_out_elsewhere() {
    let store = store().await;
    store.ensure_auth_schema().await.unwrap();
    for (hash, expires) in [("here", at(60_000)), ("there", at(60_000)), ("old", at(-1))] {
        store
            .insert_session(&session(hash, "usr_1", expires))
            .await
            .unwrap();
    }
    assert!(store.live_session("here").await.unwrap().is_some());
    assert!(store.live_session("old").await.unwrap().is_none());
    assert_eq!(
        store
            .revoke_user_sessions("usr_1", Some("here"))
            .await
            .unwrap(),
        2,
        "the other live session and the expired one"
    );
    assert!(store.live_session("here").await.unwrap().is_some());
    assert!(store.live_session("there").await.unwrap().is_none());
    store.revoke_session("here").await.unwrap();
    assert!(store.live_session("here").await.unwrap().is_none());
}

#[tokio::test]
async fn keys_are_revoked_once_and_a_new_bootstrap_key_revokes_the_old_one() {
    let store = store().await;
    let key = |prefix: &str, bootstrap: bool| ApiKeyDoc {
        prefix: prefix.to_owned(),
        name: prefix.to_owned(),
        role: Role::Admin,
        hash: "00".to_owned(),
        created_by: None,
        created_at: DateTime::now(),
        expires_at: None,
        revoked_at: None,
        bootstrap,
    };
    assert!(
        store
            .insert_api_key(&key("aaaaaaaaaaaa", false))
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_api_key(&key("aaaaaaaaaaaa", false))
            .await
            .unwrap()
    );
    assert!(store.revoke_api_key("aaaaaaaaaaaa").await.unwrap());
    let first = store
        .api_key("aaaaaaaaaaaa")
        .await
        .unwrap()
        .unwrap()
        .revoked_at;
    assert!(store.revoke_api_key("aaaaaaaaaaaa").await.unwrap());
    assert_eq!(
        store
            .api_key("aaaaaaaaaaaa")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        first
    );
    assert!(!store.revoke_api_key("bbbbbbbbbbbb").await.unwrap());

    store
        .install_bootstrap_key(&key("cccccccccccc", true))
        .await
        .unwrap();
    store
        .install_bootstrap_key(&key("cccccccccccc", true))
        .await
        .unwrap();
    store
        .install_bootstrap_key(&key("dddddddddddd", true))
        .await
        .unwrap();
    let old = store.api_key("cccccccccccc").await.unwrap().unwrap();
    let new = store.api_key("dddddddddddd").await.unwrap().unwrap();
    assert!(old.revoked_at.is_some() && new.revoked_at.is_none());
    assert_eq!(store.list_api_keys().await.unwrap().len(), 3);
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_without_gaps() {
    let store = store().await;
    for i in 0..5 {
        store
            .record_audit(&AuditDoc {
                id: ObjectId::new(),
                at: DateTime::now(),
                actor_kind: "api_key".to_owned(),
                actor_id: "aaaaaaaaaaaa".to_owned(),
                actor_name: "ci".to_owned(),
                transport: "http".to_owned(),
                method: "POST".to_owned(),
                route: format!("/api/r{i}"),
                target: None,
                status: 200,
                ip: "127.0.0.1".to_owned(),
            })
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_audit(before, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id);
        seen.extend(page.into_iter().map(|e| e.route));
    }
    assert_eq!(
        seen,
        ["/api/r4", "/api/r3", "/api/r2", "/api/r1", "/api/r0"]
    );
}

#[tokio::test]
async fn sign_in_attempts_add_up_across_stores_until_the_window_ends() {
    // Two stores on one database stand for two api replicas.
    let first = store().await;
    first.ensure_auth_schema().await.unwrap();
    let second = voice_agent_store::MongoStore::connect(
        &std::env::var("VA_TEST_MONGODB_URI").unwrap(),
        first.database().name(),
    )
    .await
    .unwrap();
    let window = std::time::Duration::from_secs(60);
    let t0 = at(0);

    let mut counts = Vec::new();
    for (i, replica) in [&first, &second, &first, &second].into_iter().enumerate() {
        let now = DateTime::from_millis(t0.timestamp_millis() + i as i64 * 1_000);
        let (count, ends) = replica
            .count_login_attempt("ip:192.0.2.1", now, window)
            .await
            .unwrap();
        assert_eq!(ends.timestamp_millis(), t0.timestamp_millis() + 60_000);
        counts.push(count);
    }
    assert_eq!(counts, [1, 2, 3, 4]);

    // Another key has its own count; the first one starts over once its window has ended.
    let (other, _) = second
        .count_login_attempt("ip:192.0.2.2", t0, window)
        .await
        .unwrap();
    assert_eq!(other, 1);
    let later = DateTime::from_millis(t0.timestamp_millis() + 60_000);
    let (again, ends) = second
        .count_login_attempt("ip:192.0.2.1", later, window)
        .await
        .unwrap();
    assert_eq!(
        (again, ends.timestamp_millis()),
        (1, later.timestamp_millis() + 60_000)
    );

    // Attempts at once from both replicas are each counted once.
    let key = "account:0123";
    let attempts = (0..20).map(|i| {
        let replica = if i % 2 == 0 { &first } else { &second };
        replica.count_login_attempt(key, t0, window)
    });
    let mut seen: Vec<u64> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().0)
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=20).collect::<Vec<u64>>());
}
