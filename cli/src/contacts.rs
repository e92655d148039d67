//! `vactl lists …` and `vactl contacts …`: contact lists over `voiceagent.v1.ContactService`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use voice_agent_contacts::RejectedRow;
use voice_agent_contacts::report::rejected_rows_csv;
use voice_agent_protos::v1::contact_service_client::ContactServiceClient;
use voice_agent_protos::v1::{
    Contact, ContactList, CreateContactListRequest, DeleteContactListRequest,
    GetContactListRequest, ListContactListsRequest, ListContactsRequest, RenameContactListRequest,
    UploadContactsRequest, UploadContactsResponse, UploadStart, upload_contacts_request::Part,
};

use crate::{print, status_error};

/// Bytes per upload message; well under tonic's default 4 MiB message limit.
const CHUNK_BYTES: usize = 512 * 1024;

/// `vactl lists …`
#[derive(Subcommand)]
pub(crate) enum ListsCommand {
    /// Create a contact list.
    Create {
        /// Its name.
        name: String,
    },
    /// List contact lists, newest first.
    List {
        /// Page size (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: i32,
        /// Token printed by the previous page.
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Show one list.
    Get {
        /// `cl_…`
        id: String,
    },
    /// Rename a list.
    Rename {
        /// `cl_…`
        id: String,
        /// The new name.
        name: String,
    },
    /// Delete a list with all its contacts.
    Delete {
        /// `cl_…`
        id: String,
    },
}

/// `vactl contacts …`
#[derive(Subcommand)]
pub(crate) enum ContactsCommand {
    /// Upload an .xlsx or .csv file into a list.
    Upload {
        /// `cl_…`
        #[arg(long)]
        list: String,
        /// Sheet of a workbook (default: the first).
        #[arg(long, default_value = "")]
        sheet: String,
        /// Also write the rejected rows to this CSV file.
        #[arg(long)]
        rejected_csv: Option<PathBuf>,
        /// The file.
        file: PathBuf,
    },
    /// List contacts of a list, by phone number.
    List {
        /// `cl_…`
        #[arg(long)]
        list: String,
        /// Digits of a number (`+1415` for a prefix) or part of a name.
        #[arg(long, default_value = "")]
        search: String,
        /// Only contacts with this tag.
        #[arg(long, default_value = "")]
        tag: String,
        /// Page size (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: i32,
        /// Token printed by the previous page.
        #[arg(long, default_value = "")]
        page_token: String,
    },
}

async fn client(api: &str) -> anyhow::Result<ContactServiceClient<crate::auth::Authed>> {
    Ok(ContactServiceClient::new(crate::auth::channel(api).await?))
}

pub(crate) async fn lists(api: &str, command: ListsCommand) -> anyhow::Result<()> {
    let mut client = client(api).await?;
    match command {
        ListsCommand::Create { name } => {
            let list = client
                .create_contact_list(CreateContactListRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&list_json(&list));
        }
        ListsCommand::List { limit, page_token } => {
            let page = client
                .list_contact_lists(ListContactListsRequest {
                    page_size: limit,
                    page_token,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&json!({
                "lists": page.lists.iter().map(list_json).collect::<Vec<_>>(),
                "next_page_token": page.next_page_token,
            }));
        }
        ListsCommand::Get { id } => {
            let list = client
                .get_contact_list(GetContactListRequest { list_id: id })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&list_json(&list));
        }
        ListsCommand::Rename { id, name } => {
            let list = client
                .rename_contact_list(RenameContactListRequest { list_id: id, name })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&list_json(&list));
        }
        ListsCommand::Delete { id } => {
            client
                .delete_contact_list(DeleteContactListRequest {
                    list_id: id.clone(),
                })
                .await
                .map_err(status_error)?;
            print(&json!({ "deleted": id }));
        }
    }
    Ok(())
}

pub(crate) async fn contacts(api: &str, command: ContactsCommand) -> anyhow::Result<()> {
    let mut client = client(api).await?;
    match command {
        ContactsCommand::Upload {
            list,
            sheet,
            rejected_csv,
            file,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut messages = vec![UploadContactsRequest {
                part: Some(Part::Start(UploadStart {
                    list_id: list,
                    file_name,
                    sheet,
                })),
            }];
            messages.extend(bytes.chunks(CHUNK_BYTES).map(|c| UploadContactsRequest {
                part: Some(Part::Chunk(c.to_vec())),
            }));
            let report = client
                .upload_contacts(tokio_stream::iter(messages))
                .await
                .map_err(status_error)?
                .into_inner();
            if let Some(path) = rejected_csv {
                write_rejected(&path, &report)?;
            }
            print(&upload_json(&report));
        }
        ContactsCommand::List {
            list,
            search,
            tag,
            limit,
            page_token,
        } => {
            // Digits (and +, spaces, dashes, parentheses) search the number; anything else
            // the name.
            let is_number = !search.is_empty()
                && search
                    .chars()
                    .all(|c| c.is_ascii_digit() || " +-().".contains(c));
            let (phone, name) = if is_number {
                (search, String::new())
            } else {
                (String::new(), search)
            };
            let page = client
                .list_contacts(ListContactsRequest {
                    list_id: list,
                    page_size: limit,
                    page_token,
                    phone,
                    name,
                    tag,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&json!({
                "contacts": page.contacts.iter().map(contact_json).collect::<Vec<_>>(),
                "next_page_token": page.next_page_token,
            }));
        }
    }
    Ok(())
}

fn write_rejected(path: &std::path::Path, report: &UploadContactsResponse) -> anyhow::Result<()> {
    let rows: Vec<RejectedRow> = report
        .rejected_rows
        .iter()
        .map(|r| RejectedRow {
            row: r.row,
            column: r.column.clone(),
            value: r.value.clone(),
            reason: r.reason.clone(),
        })
        .collect();
    std::fs::write(path, rejected_rows_csv(&rows))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn ts(t: &Option<prost_types::Timestamp>) -> Option<String> {
    t.as_ref().map(ToString::to_string)
}

fn list_json(l: &ContactList) -> serde_json::Value {
    json!({
        "id": l.id,
        "name": l.name,
        "contact_count": l.contact_count,
        "created_at": ts(&l.created_at),
        "updated_at": ts(&l.updated_at),
    })
}

fn contact_json(c: &Contact) -> serde_json::Value {
    json!({
        "id": c.id,
        "phone": c.phone,
        "name": c.name,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "email": c.email,
        "language": c.language,
        "time_zone": c.time_zone,
        "tags": c.tags,
        "variables": c.variables,
    })
}

fn upload_json(r: &UploadContactsResponse) -> serde_json::Value {
    /// Rows printed; the rest are in --rejected-csv or GetImportReport.
    const SHOWN: usize = 20;
    json!({
        "upload_id": r.upload_id,
        "list_id": r.list_id,
        "sheet": r.sheet,
        "rows": r.rows,
        "imported": r.imported,
        "merged": r.merged,
        "rejected": r.rejected,
        "rejected_rows": r.rejected_rows.iter().take(SHOWN).map(|x| json!({
            "row": x.row, "column": x.column, "value": x.value, "reason": x.reason,
        })).collect::<Vec<_>>(),
        "rejected_rows_not_shown": r.rejected_rows.len().saturating_sub(SHOWN),
    })
}
