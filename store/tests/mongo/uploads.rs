//! Previewed contact files kept for their import: read back whole across parts, only for
//! their list and before they expire, bounded in number, gone once deleted.

use std::time::Duration;

use voice_agent_store::uploads::PART_BYTES;

use crate::store;

#[tokio::test]
async fn a_kept_file_reads_back_whole_for_its_list_until_deleted() {
    let store = store().await;
    // Larger than one part, so it is split and put together again in order.
    let bytes: Vec<u8> = (0..PART_BYTES + 1234).map(|i| (i % 251) as u8).collect();
    let kept = store
        .save_pending_upload("cl_1", "contacts.xlsx", &bytes, Duration::from_secs(600), 5)
        .await
        .unwrap()
        .expect("room for it");
    assert!(kept.token.starts_with("pup_"));
    let (found, back) = store
        .pending_upload("cl_1", &kept.token)
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(found, kept);
    assert_eq!(back, bytes);
    assert!(
        store
            .pending_upload("cl_2", &kept.token)
            .await
            .unwrap()
            .is_none(),
        "another list's token is unknown here"
    );
    assert!(
        store
            .pending_upload("cl_1", "pup_x")
            .await
            .unwrap()
            .is_none()
    );

    store.delete_pending_upload(&kept.token).await.unwrap();
    assert!(
        store
            .pending_upload("cl_1", &kept.token)
            .await
            .unwrap()
            .is_none()
    );
    let parts = store
        .database()
        .collection::<mongodb::bson::Document>(voice_agent_store::schema::PENDING_UPLOAD_PARTS)
        .count_documents(mongodb::bson::doc! {})
        .await
        .unwrap();
    assert_eq!(parts, 0, "its parts are gone too");
}

#[tokio::test]
async fn kept_files_expire_and_are_bounded_in_number() {
    let store = store().await;
    let expired = store
        .save_pending_upload("cl_1", "a.csv", b"phone\n", Duration::ZERO, 2)
        .await
        .unwrap()
        .expect("room");
    assert!(
        store
            .pending_upload("cl_1", &expired.token)
            .await
            .unwrap()
            .is_none(),
        "expired: not importable"
    );
    // The expired one is dropped when the next is kept, so two fit.
    let a = store
        .save_pending_upload("cl_1", "b.csv", b"phone\n", Duration::from_secs(600), 2)
        .await
        .unwrap();
    let b = store
        .save_pending_upload("cl_1", "c.csv", b"phone\n", Duration::from_secs(600), 2)
        .await
        .unwrap();
    assert!(a.is_some() && b.is_some());
    let refused = store
        .save_pending_upload("cl_1", "d.csv", b"phone\n", Duration::from_secs(600), 2)
        .await
        .unwrap();
    assert!(refused.is_none(), "a third is refused while two wait");
    let uploads = store
        .database()
        .collection::<mongodb::bson::Document>(voice_agent_store::schema::PENDING_UPLOADS)
        .count_documents(mongodb::bson::doc! {})
        .await
        .unwrap();
    assert_eq!(
        uploads, 2,
        "the refused one stored nothing, the expired one is gone"
    );
}
