//! Contact imports: from an uploaded `.xlsx` or `.csv` file to validated, de-duplicated
//! contacts, and the report of the rows that were not imported. Pure: bytes in, values out;
//! the store writes them and the API serves them.
//!
//! | module | what it does |
//! |---|---|
//! | [`detect`] | file type from name and magic bytes; `.xls`, PDF and binary data are refused |
//! | `read` | first or named sheet (calamine), CSV (csv crate: BOM, UTF-16, Windows-1252, `,`/`;`/tab/`|` sniffed) |
//! | [`columns`] | header row detection, usual header names → fields, other columns → template variables |
//! | [`import`] | per-row validation, E.164 normalisation, merging duplicates, limits |
//! | [`report`] | CSV exports with formula neutralisation, the rejected-rows report |
//!
//! A file fails as a whole ([`ImportError`]) only when it cannot be used at all: wrong type,
//! unreadable, over a limit (bytes, rows, columns, cells, text, a cell or header too long),
//! no rows, no phone column. The limits on cells and text scale with the byte limit, so the
//! memory an import takes is bounded by what its upload limit allows, whatever the file's
//! shape; rows are stored sparse (a cell far to the right costs that cell only). Anything wrong with a
//! single row (a bad phone number, a malformed e-mail) rejects that row only, with its row
//! number, column and reason.
//!
//! ```
//! use voice_agent_contacts::{ImportOptions, parse_file, report::rejected_rows_csv};
//! let csv = "Phone,Name,Plan\n(415) 555-0100,Ann,gold\n415-555-0100,,silver\nnope,Bob,\n";
//! let parsed = parse_file("list.csv", csv.as_bytes(), &ImportOptions::new("US")).unwrap();
//! assert_eq!(parsed.contacts.len(), 1);
//! assert_eq!(parsed.contacts[0].phone.as_str(), "+14155550100");
//! assert_eq!(parsed.contacts[0].variables["plan"], "silver");
//! assert_eq!((parsed.merged, parsed.rejected), (1, 1));
//! let report = rejected_rows_csv(&parsed.rejected_rows);
//! assert!(String::from_utf8(report).unwrap().contains("4,Phone,nope,not a phone number"));
//! ```
#![warn(missing_docs)]

pub mod columns;
pub mod detect;
mod error;
pub mod import;
mod read;
pub mod report;

pub use columns::{ColumnRole, Field};
pub use detect::FileKind;
pub use error::ImportError;
pub use import::{
    ContactRecord, ImportOptions, ParsedFile, RejectedRow, check_region, is_email, is_time_zone,
    language_tag, normalise_phone, parse_file,
};
pub use read::{MAX_CELL_CHARS, MAX_COLUMNS};
