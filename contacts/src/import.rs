//! From uploaded bytes to validated, de-duplicated contact records plus the rejected rows.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use voice_agent_domain::{PhoneError, PhoneNumber};

use crate::ImportError;
use crate::columns::{self, ColumnRole, Columns, Field, HEADER_SEARCH_ROWS};
use crate::detect::{FileKind, detect};
use crate::read::{RawRow, ReadLimits, number_text, read_csv, read_xlsx};

/// Default byte limit of one upload (20 MiB: about a million rows of a typical xlsx).
pub const DEFAULT_MAX_BYTES: u64 = 20 * 1024 * 1024;
/// Default limit of data rows in one upload.
pub const DEFAULT_MAX_ROWS: usize = 1_000_000;
/// By default a workbook may expand to at most this many times [`ImportOptions::max_bytes`]
/// once decompressed. Typical contact sheets compress 5 to 10 times.
pub const UNCOMPRESSED_RATIO: u64 = 32;
/// By default a file may hold at most one non-empty cell per this many bytes of
/// [`ImportOptions::max_bytes`] (5.2 million cells for 20 MiB: a million rows of five
/// columns). A cell kept as a template variable costs about 200 bytes in its contact beyond
/// its text, so this, not the file's size, is what bounds an import's memory when the cells
/// are tiny.
pub const BYTES_PER_CELL: u64 = 4;
/// By default a file's cells may hold at most this many times [`ImportOptions::max_bytes`] of
/// text (UTF-8): room for a Windows-1252 CSV, whose accented letters double in UTF-8, and for
/// a workbook's repeated shared strings.
pub const TEXT_RATIO: u64 = 4;
/// Default number of rejected rows kept with their details (all are counted).
pub const DEFAULT_MAX_REPORTED_REJECTIONS: usize = 10_000;

/// How to read an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// ISO 3166-1 alpha-2 region for numbers written without `+` (e.g. `US`).
    pub default_region: String,
    /// Files larger than this fail with [`ImportError::TooLarge`].
    pub max_bytes: u64,
    /// Files with more data rows than this fail with [`ImportError::TooManyRows`].
    pub max_rows: usize,
    /// Largest decompressed size of a workbook; `None` means [`UNCOMPRESSED_RATIO`] times
    /// `max_bytes`.
    pub max_uncompressed_bytes: Option<u64>,
    /// Most non-empty cells in a file; `None` means one per [`BYTES_PER_CELL`] bytes of
    /// `max_bytes`.
    pub max_cells: Option<usize>,
    /// Most bytes of cell text in a file; `None` means [`TEXT_RATIO`] times `max_bytes`.
    pub max_text_bytes: Option<u64>,
    /// Sheet to read; `None` reads the first one. Ignored for CSV.
    pub sheet: Option<String>,
    /// Header of the column holding the phone numbers (matched ignoring case and spaces at
    /// the ends); `None` finds it by its header (`Phone`, `Mobile`, ...).
    pub phone_column: Option<String>,
    /// How many rejected rows keep their details; the rest are only counted, so a file of
    /// garbage cannot produce a report larger than the file.
    pub max_reported_rejections: usize,
}

impl ImportOptions {
    /// Options with the default limits.
    pub fn new(default_region: impl Into<String>) -> Self {
        Self {
            default_region: default_region.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            max_rows: DEFAULT_MAX_ROWS,
            max_uncompressed_bytes: None,
            max_cells: None,
            max_text_bytes: None,
            sheet: None,
            phone_column: None,
            max_reported_rejections: DEFAULT_MAX_REPORTED_REJECTIONS,
        }
    }
}

/// One contact read from the file, validated and normalised; rows with the same phone number
/// are already merged into one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactRecord {
    /// E.164 phone number, the contact's key within a list.
    pub phone: PhoneNumber,
    /// Full name; built from first and last name when the file has no name column.
    pub name: Option<String>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// BCP 47 language tag (`_` replaced by `-`).
    pub language: Option<String>,
    /// IANA time zone name.
    pub time_zone: Option<String>,
    /// Tags in first-seen order, without duplicates.
    pub tags: Vec<String>,
    /// Every other column, by key; empty cells are left out.
    pub variables: BTreeMap<String, String>,
    /// The first row of the file this contact came from.
    pub row: u32,
}

impl ContactRecord {
    /// Folds a later row for the same phone number into this one: its non-empty fields win,
    /// tags are united, variables merged key by key. Empty cells never erase data.
    pub fn merge(&mut self, later: Self) {
        let fill = |mine: &mut Option<String>, theirs: Option<String>| {
            if theirs.is_some() {
                *mine = theirs;
            }
        };
        fill(&mut self.name, later.name);
        fill(&mut self.first_name, later.first_name);
        fill(&mut self.last_name, later.last_name);
        fill(&mut self.email, later.email);
        fill(&mut self.language, later.language);
        fill(&mut self.time_zone, later.time_zone);
        for tag in later.tags {
            if !self.tags.contains(&tag) {
                self.tags.push(tag);
            }
        }
        self.variables.extend(later.variables);
    }
}

/// A row that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedRow {
    /// 1-based row number as a spreadsheet program shows it.
    pub row: u32,
    /// Header of the offending column (its letter when the header is blank).
    pub column: String,
    /// The offending cell's text (at most 200 characters).
    pub value: String,
    /// What is wrong, for a person.
    pub reason: String,
}

/// The outcome of reading one file: what to write, and what was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFile {
    /// The detected type.
    pub kind: FileKind,
    /// The sheet read (`None` for CSV).
    pub sheet: Option<String>,
    /// Every sheet of the workbook, in order (empty for CSV).
    pub sheets: Vec<String>,
    /// Header texts with what each column became.
    pub columns: Vec<(String, ColumnRole)>,
    /// Non-empty data rows below the header.
    pub rows: usize,
    /// Valid contacts, one per phone number, in order of first appearance.
    pub contacts: Vec<ContactRecord>,
    /// Valid rows folded into an earlier row with the same phone number.
    pub merged: usize,
    /// Rows rejected (all of them, including those beyond the detailed report).
    pub rejected: usize,
    /// Details of the first [`ImportOptions::max_reported_rejections`] rejected rows.
    pub rejected_rows: Vec<RejectedRow>,
}

/// Reads `bytes` (uploaded as `file_name`) into contacts. Fails as a whole only when the file
/// cannot be used at all; bad rows are reported in [`ParsedFile::rejected_rows`].
pub fn parse_file(
    file_name: &str,
    bytes: &[u8],
    options: &ImportOptions,
) -> Result<ParsedFile, ImportError> {
    check_region(&options.default_region)?;
    let size = bytes.len() as u64;
    if size > options.max_bytes {
        return Err(ImportError::TooLarge {
            size,
            max: options.max_bytes,
        });
    }
    let kind = detect(file_name, bytes)?;
    // Rows above the header are read too; the exact data-row limit is checked below.
    let limits = ReadLimits {
        max_rows: options.max_rows,
        error_rows: options.max_rows.saturating_add(HEADER_SEARCH_ROWS),
        max_cells: options.max_cells.unwrap_or_else(|| {
            usize::try_from(options.max_bytes / BYTES_PER_CELL).unwrap_or(usize::MAX)
        }),
        max_text_bytes: options
            .max_text_bytes
            .unwrap_or(options.max_bytes.saturating_mul(TEXT_RATIO)),
    };
    let sheet = match kind {
        FileKind::Xlsx => read_xlsx(
            bytes,
            options.sheet.as_deref(),
            limits,
            options
                .max_uncompressed_bytes
                .unwrap_or(options.max_bytes.saturating_mul(UNCOMPRESSED_RATIO)),
        )?,
        FileKind::Csv => read_csv(bytes, limits)?,
    };
    if sheet.rows.is_empty() {
        return Err(ImportError::Empty);
    }
    let sheet_name = sheet.name.clone();
    let sheets = sheet.sheet_names.clone();
    let phone_column = options
        .phone_column
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let columns =
        columns::detect(&sheet.rows, phone_column)?.ok_or_else(|| match phone_column {
            Some(requested) => ImportError::PhoneColumnNotFound {
                requested: requested.to_owned(),
                searched: HEADER_SEARCH_ROWS,
            },
            None => ImportError::MissingPhoneColumn {
                searched: HEADER_SEARCH_ROWS,
            },
        })?;
    let data_rows = sheet.rows.len() - (columns.header_index + 1);
    if data_rows > options.max_rows {
        return Err(ImportError::TooManyRows {
            max: options.max_rows,
        });
    }

    // One thread: phone parsing costs about 1 µs a number since the move to rlibphonenumber
    // (it was 9 µs with the `phonenumber` crate), so 100,000 rows parse in about half a second
    // and the database writes dominate. Rows are consumed as they are parsed, each row's text
    // freed once its record is built, so a file is not held twice.
    let region = options.default_region.as_str();
    let mut contacts: Vec<ContactRecord> = Vec::with_capacity(data_rows);
    let mut by_phone: HashMap<PhoneNumber, usize> = HashMap::with_capacity(data_rows);
    let mut merged = 0;
    let mut rejected = 0;
    let mut rejected_rows = Vec::new();
    for row in sheet.rows.into_iter().skip(columns.header_index + 1) {
        match parse_row(row, &columns, region) {
            Ok(record) => match by_phone.get(&record.phone) {
                Some(&i) => {
                    contacts[i].merge(record);
                    merged += 1;
                }
                None => {
                    by_phone.insert(record.phone.clone(), contacts.len());
                    contacts.push(record);
                }
            },
            Err(row) => {
                rejected += 1;
                if rejected_rows.len() < options.max_reported_rejections {
                    rejected_rows.push(row);
                }
            }
        }
    }
    Ok(ParsedFile {
        kind,
        sheet: sheet_name,
        sheets,
        columns: columns
            .roles
            .iter()
            .enumerate()
            .map(|(i, role)| (columns.header(i), role.clone()))
            .collect(),
        rows: data_rows,
        contacts,
        merged,
        rejected,
        rejected_rows,
    })
}

/// Fails when `region` is not a region code the phone library knows.
pub fn check_region(region: &str) -> Result<(), ImportError> {
    match PhoneNumber::parse("+14155550100", region) {
        Err(PhoneError::UnknownRegion(_)) => Err(ImportError::UnknownRegion(region.to_owned())),
        _ => Ok(()),
    }
}

fn parse_row(row: RawRow, columns: &Columns, region: &str) -> Result<ContactRecord, RejectedRow> {
    let number = row.number;
    let reject = |index: usize, value: &str, reason: &str| RejectedRow {
        row: number,
        column: columns.header(index),
        value: value.chars().take(200).collect(),
        reason: reason.to_owned(),
    };
    let phone_col = columns
        .of(Field::Phone)
        .expect("columns have a phone column");
    let raw_phone = row.get(phone_col);
    let phone = normalise_phone(raw_phone, region)
        .map_err(|reason| reject(phone_col, raw_phone, reason))?;
    let text = |field: Field| {
        columns
            .of(field)
            .map(|i| row.get(i))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };

    let email = match text(Field::Email) {
        Some(e) if !is_email(&e) => {
            let col = columns.of(Field::Email).expect("a value implies a column");
            return Err(reject(col, &e, "not an e-mail address"));
        }
        other => other,
    };
    let language = match text(Field::Language) {
        Some(l) => match language_tag(&l) {
            Some(tag) => Some(tag),
            None => {
                let col = columns
                    .of(Field::Language)
                    .expect("a value implies a column");
                return Err(reject(col, &l, "not a language code such as en or pt-BR"));
            }
        },
        None => None,
    };
    let time_zone = match text(Field::TimeZone) {
        Some(tz) if !is_time_zone(&tz) => {
            let col = columns
                .of(Field::TimeZone)
                .expect("a value implies a column");
            return Err(reject(
                col,
                &tz,
                "not a time zone name such as America/New_York or UTC",
            ));
        }
        other => other,
    };
    let first_name = text(Field::FirstName);
    let last_name = text(Field::LastName);
    let name = text(Field::Name).or_else(|| {
        let joined = [first_name.as_deref(), last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        (!joined.is_empty()).then_some(joined)
    });
    let mut tags: Vec<String> = Vec::new();
    for tag in row
        .get(columns.of(Field::Tags).unwrap_or(usize::MAX))
        .split([',', ';', '|'])
    {
        let tag = tag.trim();
        if !tag.is_empty() && !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    // Cells right of the header's last column have no role and are left out.
    let variables = row
        .iter()
        .filter_map(|(i, value)| match columns.roles.get(i) {
            Some(ColumnRole::Variable { key }) => Some((key.clone(), value.to_owned())),
            _ => None,
        })
        .collect();
    Ok(ContactRecord {
        phone,
        name,
        first_name,
        last_name,
        email,
        language,
        time_zone,
        tags,
        variables,
        row: number,
    })
}

/// Parses a phone cell. Besides what [`PhoneNumber::parse`] accepts, numbers that went
/// through a number cell and came back as text (`4155550100.0`, `1.41555501E+10`) are read
/// as the integer they stand for.
pub fn normalise_phone(raw: &str, region: &str) -> Result<PhoneNumber, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("missing phone number");
    }
    let undone;
    let input = match float_digits(raw) {
        Some(digits) => {
            undone = digits;
            undone.as_str()
        }
        None => raw,
    };
    PhoneNumber::parse(input, region).map_err(|e| match e {
        PhoneError::Invalid(_) => "not a valid phone number for its country",
        _ => "not a phone number",
    })
}

/// `4155550100.0` or `1.4155550100E10` → `4155550100` / `14155550100`; anything else → None.
/// Dotted numbers like `415.555.0100` have more than one dot and are left alone.
fn float_digits(s: &str) -> Option<String> {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let plausible = !int.is_empty()
        && digits(int)
        && digits(frac)
        && match exponent {
            Some(e) => {
                let e = e.strip_prefix('+').unwrap_or(e);
                !e.is_empty() && digits(e)
            }
            // Without an exponent only a zero fraction is a float artefact.
            None => !frac.is_empty() && frac.bytes().all(|b| b == b'0'),
        };
    if !plausible {
        return None;
    }
    let value: f64 = s.parse().ok()?;
    (value.fract() == 0.0 && value < 1e15).then(|| number_text(value))
}

/// Whether `s` looks like an e-mail address (`local@domain.tld`, no spaces).
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain.contains('.')
        && !domain.contains('@')
}

/// `en`, `pt_BR`, `zh-Hant-TW` → normalised BCP 47-shaped tags; anything else → None.
pub fn language_tag(s: &str) -> Option<String> {
    let tag = s.replace('_', "-");
    let mut parts = tag.split('-');
    let primary = parts.next()?;
    let ok = (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts
            .all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    ok.then_some(tag)
}

/// IANA-shaped names (`Area/Location`, `Etc/GMT+5`) and `UTC`/`GMT`. The name is not looked
/// up in the tz database here: that needs the database, which whoever schedules calls has.
pub fn is_time_zone(s: &str) -> bool {
    const AREAS: [&str; 11] = [
        "Africa",
        "America",
        "Antarctica",
        "Arctic",
        "Asia",
        "Atlantic",
        "Australia",
        "Europe",
        "Indian",
        "Pacific",
        "Etc",
    ];
    if matches!(s, "UTC" | "GMT" | "Z") {
        return true;
    }
    let Some((area, rest)) = s.split_once('/') else {
        return false;
    };
    AREAS.contains(&area)
        && !rest.is_empty()
        && rest.split('/').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_artefacts_of_number_cells_become_digits() {
        assert_eq!(float_digits("4155550100.0").as_deref(), Some("4155550100"));
        assert_eq!(
            float_digits("1.4155550100E10").as_deref(),
            Some("14155550100")
        );
        assert_eq!(
            float_digits("1.41555501E+10").as_deref(),
            Some("14155550100")
        );
        assert_eq!(float_digits("415.555.0100"), None);
        assert_eq!(float_digits("415.5550100"), None);
        assert_eq!(float_digits("4155550100"), None);
        assert_eq!(float_digits("+14155550100"), None);
        assert_eq!(float_digits("1.5E1x"), None);
    }

    #[test]
    fn every_usual_phone_format_normalises() {
        for raw in [
            "4155550100",
            "4155550100.0",
            "1.4155550100E10",
            "(415) 555-0100",
            "415-555-0100",
            "415 555 0100",
            "'4155550100",
            "'+1 415 555 0100",
            "0014155550100",
            "+1 (415) 555-0100",
        ] {
            assert_eq!(
                normalise_phone(raw, "US").map(|p| p.as_str().to_owned()),
                Ok("+14155550100".to_owned()),
                "{raw}"
            );
        }
        assert_eq!(
            normalise_phone("020 7946 0958", "GB").unwrap().as_str(),
            "+442079460958"
        );
    }

    #[test]
    fn bad_phones_get_a_reason() {
        assert_eq!(normalise_phone("", "US"), Err("missing phone number"));
        assert_eq!(normalise_phone("call me", "US"), Err("not a phone number"));
        assert!(normalise_phone("12345", "US").is_err());
        assert!(normalise_phone("+1 415 555 01", "US").is_err());
    }

    #[test]
    fn field_validators_accept_the_usual_and_refuse_the_rest() {
        assert!(is_email("ann@example.com"));
        assert!(!is_email("ann@example"));
        assert!(!is_email("ann example.com"));
        assert!(!is_email("@example.com"));
        assert_eq!(language_tag("pt_BR").as_deref(), Some("pt-BR"));
        assert_eq!(language_tag("en").as_deref(), Some("en"));
        assert_eq!(language_tag("English"), None);
        assert!(is_time_zone("America/New_York"));
        assert!(is_time_zone("America/Argentina/Buenos_Aires"));
        assert!(is_time_zone("Etc/GMT+5"));
        assert!(is_time_zone("UTC"));
        assert!(!is_time_zone("EST5"));
        assert!(!is_time_zone("Mars/Olympus"));
        assert!(!is_time_zone("America/"));
    }

    #[test]
    fn merging_fills_in_unions_tags_and_never_erases() {
        let record =
            |name: Option<&str>, email: Option<&str>, tags: &[&str], vars: &[(&str, &str)]| {
                ContactRecord {
                    phone: PhoneNumber::parse_e164("+14155550100").unwrap(),
                    name: name.map(str::to_owned),
                    first_name: None,
                    last_name: None,
                    email: email.map(str::to_owned),
                    language: None,
                    time_zone: None,
                    tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                    variables: vars
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    row: 2,
                }
            };
        let mut first = record(Some("Ann"), None, &["vip", "a"], &[("x", "1"), ("y", "2")]);
        first.merge(record(
            None,
            Some("ann@example.com"),
            &["a", "b"],
            &[("y", "3")],
        ));
        assert_eq!(first.name.as_deref(), Some("Ann"));
        assert_eq!(first.email.as_deref(), Some("ann@example.com"));
        assert_eq!(first.tags, ["vip", "a", "b"]);
        assert_eq!(first.variables["x"], "1");
        assert_eq!(first.variables["y"], "3");
        assert_eq!(first.row, 2);
    }
}
