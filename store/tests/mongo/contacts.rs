//! Contact lists and contacts against the MongoDB-wire server (a module of the `mongo` test
//! target, so it shares its server and `store()` helper).

use std::collections::BTreeMap;

use voice_agent_store::contacts::{
    ContactPatch, ContactQuery, ContactWrite, ImportCounts, ImportReportDoc, NewContact,
    RejectedRowDoc, new_id,
};

use super::store;

fn contact(phone: &str, name: &str, tags: &[&str], vars: &[(&str, &str)]) -> NewContact {
    NewContact {
        phone: phone.to_owned(),
        name: (!name.is_empty()).then(|| name.to_owned()),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        variables: vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..NewContact::default()
    }
}

fn query(list_id: &str) -> ContactQuery {
    ContactQuery {
        list_id: list_id.to_owned(),
        limit: 100,
        ..ContactQuery::default()
    }
}

#[tokio::test]
async fn lists_are_created_renamed_listed_and_deleted_with_their_contacts() {
    let store = store().await;
    let a = store.create_contact_list("Leads").await.unwrap();
    let b = store.create_contact_list("Customers").await.unwrap();
    assert!(a.id.starts_with("cl_"));
    store
        .import_contacts(&a.id, vec![contact("+14155550100", "Ann", &[], &[])])
        .await
        .unwrap();

    let renamed = store.rename_contact_list(&a.id, "Hot leads").await.unwrap();
    assert_eq!(renamed.unwrap().name, "Hot leads");
    assert!(
        store
            .rename_contact_list("cl_missing", "x")
            .await
            .unwrap()
            .is_none()
    );

    // Newest first; lists created in the same millisecond come in id order, so compare sets.
    let all = store.list_contact_lists(None, 10).await.unwrap();
    let mut ids: Vec<&str> = all.iter().map(|l| l.id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = [a.id.as_str(), b.id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let page1 = store.list_contact_lists(None, 1).await.unwrap();
    let page2 = store
        .list_contact_lists(Some((page1[0].created_at, page1[0].id.clone())), 10)
        .await
        .unwrap();
    assert_eq!(page2.len(), 1);
    assert_ne!(page2[0].id, page1[0].id);

    assert!(store.delete_contact_list(&a.id).await.unwrap());
    assert!(!store.delete_contact_list(&a.id).await.unwrap());
    assert!(store.get_contact_list(&a.id).await.unwrap().is_none());
    assert!(store.list_contacts(&query(&a.id)).await.unwrap().is_empty());
}

#[tokio::test]
async fn importing_merges_into_existing_contacts_and_keeps_the_count_right() {
    let store = store().await;
    let list = store.create_contact_list("L").await.unwrap();
    let first = store
        .import_contacts(
            &list.id,
            vec![
                contact(
                    "+14155550100",
                    "Ann",
                    &["a"],
                    &[("plan", "gold"), ("city", "Oslo")],
                ),
                contact("+14155550101", "Bob", &[], &[]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        first,
        ImportCounts {
            inserted: 2,
            updated: 0
        }
    );

    let second = store
        .import_contacts(
            &list.id,
            vec![
                contact("+14155550100", "", &["b", "a"], &[("plan", "platinum")]),
                contact("+14155550102", "Cy", &[], &[]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        second,
        ImportCounts {
            inserted: 1,
            updated: 1
        }
    );
    let ann = store
        .find_contact_by_phone(&list.id, "+14155550100")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann.name.as_deref(), Some("Ann"), "empty fields never erase");
    assert_eq!(ann.tags, ["a", "b"]);
    assert_eq!(ann.variables["plan"], "platinum");
    assert_eq!(ann.variables["city"], "Oslo");

    let list = store.get_contact_list(&list.id).await.unwrap().unwrap();
    assert_eq!(list.contact_count, 3);
    assert_eq!(store.recount_contacts(&list.id).await.unwrap(), 3);
}

#[tokio::test]
async fn a_big_import_inserts_in_batches_and_a_repeat_only_updates() {
    let store = store().await;
    let list = store.create_contact_list("Big").await.unwrap();
    let contacts: Vec<NewContact> = (0..12_000)
        .map(|i| contact(&format!("+1415{:07}", 5_000_000 + i), "N", &["t"], &[]))
        .collect();
    let counts = store
        .import_contacts(&list.id, contacts.clone())
        .await
        .unwrap();
    assert_eq!(counts.inserted, 12_000);
    let again = store.import_contacts(&list.id, contacts).await.unwrap();
    assert_eq!(
        again,
        ImportCounts {
            inserted: 0,
            updated: 12_000
        }
    );
    let list = store.get_contact_list(&list.id).await.unwrap().unwrap();
    assert_eq!(list.contact_count, 12_000);
}

#[tokio::test]
async fn contacts_page_by_phone_and_search_by_phone_name_and_tag() {
    let store = store().await;
    let list = store.create_contact_list("S").await.unwrap();
    let other = store.create_contact_list("Other").await.unwrap();
    store
        .import_contacts(
            &list.id,
            vec![
                contact("+14155550102", "Ann Lee", &["vip"], &[]),
                contact("+14155550100", "Bob (Jr.)", &[], &[]),
                contact("+442079460958", "ann smith", &["vip", "uk"], &[]),
                contact("+14155550101", "Cy", &[], &[]),
            ],
        )
        .await
        .unwrap();
    store
        .import_contacts(
            &other.id,
            vec![contact("+14155550199", "Ann", &["vip"], &[])],
        )
        .await
        .unwrap();
    let phones = |docs: Vec<voice_agent_store::contacts::ContactDoc>| {
        docs.into_iter().map(|d| d.phone).collect::<Vec<_>>()
    };

    let mut q = query(&list.id);
    q.limit = 2;
    let page1 = store.list_contacts(&q).await.unwrap();
    assert_eq!(phones(page1.clone()), ["+14155550100", "+14155550101"]);
    q.after_phone = Some(page1[1].phone.clone());
    assert_eq!(
        phones(store.list_contacts(&q).await.unwrap()),
        ["+14155550102", "+442079460958"]
    );

    let mut q = query(&list.id);
    q.phone_prefix = Some("+44".to_owned());
    assert_eq!(
        phones(store.list_contacts(&q).await.unwrap()),
        ["+442079460958"]
    );
    let mut q = query(&list.id);
    q.phone_contains = Some("5550101".to_owned());
    assert_eq!(
        phones(store.list_contacts(&q).await.unwrap()),
        ["+14155550101"]
    );
    let mut q = query(&list.id);
    q.name = Some("ANN".to_owned());
    assert_eq!(
        phones(store.list_contacts(&q).await.unwrap()),
        ["+14155550102", "+442079460958"]
    );
    let mut q = query(&list.id);
    q.name = Some("(jr.)".to_owned());
    assert_eq!(
        phones(store.list_contacts(&q).await.unwrap()),
        ["+14155550100"]
    );
    let mut q = query(&list.id);
    q.tag = Some("uk".to_owned());
    assert_eq!(
        phones(store.list_contacts(&q).await.unwrap()),
        ["+442079460958"]
    );
}

#[tokio::test]
async fn single_contacts_are_added_edited_and_removed() {
    let store = store().await;
    let list = store.create_contact_list("One").await.unwrap();
    let ContactWrite::Written(ann) = store
        .add_contact(
            &list.id,
            contact("+14155550100", "Ann", &["a"], &[("x", "1")]),
        )
        .await
        .unwrap()
    else {
        panic!("not added")
    };
    let ContactWrite::Written(bob) = store
        .add_contact(&list.id, contact("+14155550101", "Bob", &[], &[]))
        .await
        .unwrap()
    else {
        panic!("not added")
    };
    assert_eq!(
        store
            .add_contact(&list.id, contact("+14155550100", "Again", &[], &[]))
            .await
            .unwrap(),
        ContactWrite::PhoneTaken {
            existing_id: ann.id.clone()
        }
    );
    assert_eq!(
        store
            .add_contact("cl_missing", contact("+14155550100", "", &[], &[]))
            .await
            .unwrap(),
        ContactWrite::NotFound
    );

    let patch = ContactPatch {
        name: Some(String::new()),
        email: Some("ann@example.com".to_owned()),
        tags: Some(vec!["z".to_owned()]),
        variables: Some(BTreeMap::from([("y".to_owned(), "2".to_owned())])),
        ..ContactPatch::default()
    };
    let ContactWrite::Written(edited) = store
        .update_contact(&list.id, &ann.id, patch)
        .await
        .unwrap()
    else {
        panic!("not edited")
    };
    assert_eq!(edited.name, None);
    assert_eq!(edited.email.as_deref(), Some("ann@example.com"));
    assert_eq!(edited.tags, ["z"]);
    assert_eq!(edited.variables.keys().collect::<Vec<_>>(), ["y"]);

    let clash = ContactPatch {
        phone: Some("+14155550101".to_owned()),
        ..ContactPatch::default()
    };
    assert_eq!(
        store
            .update_contact(&list.id, &ann.id, clash)
            .await
            .unwrap(),
        ContactWrite::PhoneTaken {
            existing_id: bob.id.clone()
        }
    );
    assert_eq!(
        store
            .update_contact(&other_list(), &ann.id, ContactPatch::default())
            .await
            .unwrap(),
        ContactWrite::NotFound
    );

    assert!(store.remove_contact(&list.id, &bob.id).await.unwrap());
    assert!(!store.remove_contact(&list.id, &bob.id).await.unwrap());
    let list = store.get_contact_list(&list.id).await.unwrap().unwrap();
    assert_eq!(list.contact_count, 1);
}

fn other_list() -> String {
    new_id("cl")
}

#[tokio::test]
async fn import_reports_are_kept_per_list() {
    let store = store().await;
    let list = store.create_contact_list("R").await.unwrap();
    let report = ImportReportDoc {
        id: new_id("imp"),
        list_id: list.id.clone(),
        file_name: "a.csv".to_owned(),
        sheet: None,
        rows: 3,
        imported: 1,
        merged: 1,
        rejected: 1,
        rejected_rows: vec![RejectedRowDoc {
            row: 4,
            column: "Phone".to_owned(),
            value: "=1+1".to_owned(),
            reason: "not a phone number".to_owned(),
        }],
        created_at: mongodb::bson::DateTime::now(),
    };
    store.save_import_report(&report).await.unwrap();
    let got = store
        .get_import_report(&list.id, &report.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.rejected_rows, report.rejected_rows);
    assert!(
        store
            .get_import_report(&other_list(), &report.id)
            .await
            .unwrap()
            .is_none()
    );
    store.delete_contact_list(&list.id).await.unwrap();
    assert!(
        store
            .get_import_report(&list.id, &report.id)
            .await
            .unwrap()
            .is_none()
    );
}
