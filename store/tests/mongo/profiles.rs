//! Agent profiles: a new version per change, refused when saved from a stale version, the
//! history complete even when a save stopped half-way.

use mongodb::bson::{DateTime, doc};
use voice_agent_store::{ProfileVersionDoc, SaveOutcome};

use crate::store;

fn change(name: &str, greeting: &str, numbers: &[&str]) -> ProfileVersionDoc {
    ProfileVersionDoc {
        id: String::new(),
        name: name.to_owned(),
        version: 0,
        profile: doc! { "greeting": greeting },
        numbers: numbers.iter().map(|n| (*n).to_owned()).collect(),
        source: "api".to_owned(),
        file_hash: None,
        created_by: "ada@example.com".to_owned(),
        created_at: DateTime::now(),
    }
}

fn saved(outcome: SaveOutcome) -> ProfileVersionDoc {
    match outcome {
        SaveOutcome::Saved(head) => *head,
        other => panic!("expected a save, got {other:?}"),
    }
}

#[tokio::test]
async fn each_change_is_a_new_version_and_old_versions_stay_as_they_were() {
    let store = store().await;
    let v1 = saved(
        store
            .save_profile(change("reception", "Hello!", &["+15005550006"]), None)
            .await
            .unwrap(),
    );
    assert_eq!(v1.version, 1);
    let v2 = saved(
        store
            .save_profile(change("reception", "Hi there!", &["+15005550006"]), Some(1))
            .await
            .unwrap(),
    );
    assert_eq!(v2.version, 2);

    let head = store.get_profile("reception").await.unwrap().unwrap();
    assert_eq!(head.version, 2);
    assert_eq!(head.profile.get_str("greeting").unwrap(), "Hi there!");
    let by_number = store
        .profile_for_number("+15005550006")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (by_number.name.as_str(), by_number.version),
        ("reception", 2)
    );

    let history = store.profile_versions("reception", None, 20).await.unwrap();
    let versions: Vec<i64> = history.iter().map(|v| v.version).collect();
    assert_eq!(versions, [2, 1]);
    assert_eq!(history[1].profile.get_str("greeting").unwrap(), "Hello!");
    let older = store
        .profile_versions("reception", Some(2), 20)
        .await
        .unwrap();
    assert_eq!(older.len(), 1, "paged by version");
    let one = store
        .profile_version("reception", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.profile.get_str("greeting").unwrap(), "Hello!");
}

#[tokio::test]
async fn a_change_from_a_stale_version_or_a_second_create_is_refused() {
    let store = store().await;
    saved(
        store
            .save_profile(change("sales", "A", &[]), None)
            .await
            .unwrap(),
    );
    saved(
        store
            .save_profile(change("sales", "B", &[]), Some(1))
            .await
            .unwrap(),
    );
    // Someone else saved version 2 while this editor still had version 1.
    let stale = store
        .save_profile(change("sales", "C", &[]), Some(1))
        .await
        .unwrap();
    assert_eq!(stale, SaveOutcome::Conflict { current: Some(2) });
    let again = store
        .save_profile(change("sales", "D", &[]), None)
        .await
        .unwrap();
    assert_eq!(again, SaveOutcome::Conflict { current: Some(2) });
    let missing = store
        .save_profile(change("nobody", "E", &[]), Some(3))
        .await
        .unwrap();
    assert_eq!(missing, SaveOutcome::Conflict { current: None });
    let head = store.get_profile("sales").await.unwrap().unwrap();
    assert_eq!(
        head.profile.get_str("greeting").unwrap(),
        "B",
        "nothing lost, nothing overwritten"
    );
    assert_eq!(
        store
            .profile_versions("sales", None, 20)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_version_lost_between_the_head_and_its_document_is_still_in_the_history() {
    let store = store().await;
    saved(
        store
            .save_profile(change("support", "A", &[]), None)
            .await
            .unwrap(),
    );
    saved(
        store
            .save_profile(change("support", "B", &[]), Some(1))
            .await
            .unwrap(),
    );
    // A save that moved the head and stopped before writing its version document.
    store
        .database()
        .collection::<mongodb::bson::Document>(voice_agent_store::schema::AGENT_PROFILE_VERSIONS)
        .delete_one(doc! { "_id": "support@2" })
        .await
        .unwrap();
    let history = store.profile_versions("support", None, 20).await.unwrap();
    assert_eq!(
        history.iter().map(|v| v.version).collect::<Vec<_>>(),
        [2, 1]
    );
    // The next save writes it back for good.
    saved(
        store
            .save_profile(change("support", "C", &[]), Some(2))
            .await
            .unwrap(),
    );
    let two = store
        .database()
        .collection::<mongodb::bson::Document>(voice_agent_store::schema::AGENT_PROFILE_VERSIONS)
        .find_one(doc! { "_id": "support@2" })
        .await
        .unwrap()
        .expect("version 2 written by the next save");
    assert_eq!(
        two.get_document("profile")
            .unwrap()
            .get_str("greeting")
            .unwrap(),
        "B"
    );
}

#[tokio::test]
async fn a_file_import_is_recognised_by_its_hash() {
    let store = store().await;
    let mut from_file = change("reception", "From the file", &[]);
    from_file.source = "file".to_owned();
    from_file.file_hash = Some("abc".to_owned());
    saved(store.save_profile(from_file, None).await.unwrap());
    saved(
        store
            .save_profile(change("reception", "Edited", &[]), Some(1))
            .await
            .unwrap(),
    );
    assert!(
        store
            .profile_has_file_hash("reception", "abc")
            .await
            .unwrap()
    );
    assert!(
        !store
            .profile_has_file_hash("reception", "def")
            .await
            .unwrap()
    );
}
