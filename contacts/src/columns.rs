//! Header detection: which row is the header, and what each column holds.
//!
//! Header cells are compared without case, spaces, underscores, dashes or dots, so
//! `Phone Number`, `phone_number` and `PHONE-NUMBER` are the same. The first column matching a
//! field wins; any other column (including a second phone column) becomes a per-contact
//! variable named after its header, usable in message templates.

use serde::Serialize;

use crate::ImportError;
use crate::read::RawRow;

/// How many leading rows may precede the header (a title, a date line, an empty banner).
pub const HEADER_SEARCH_ROWS: usize = 10;

/// Longest header cell, in characters. Header texts are copied into every rejected row of the
/// report and into the column list, so a long one would multiply by the number of rows.
pub const MAX_HEADER_CHARS: usize = 200;

/// Longest variable key, in characters (what the API accepts for a contact's variables), plus
/// a `_2`-style suffix when two headers cut alike. Keys are stored with every contact, so a
/// longer header is cut.
pub const MAX_KEY_CHARS: usize = 64;

/// A standard contact field a column can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Field {
    /// The phone number (required).
    Phone,
    /// Full name.
    Name,
    /// Given name.
    FirstName,
    /// Family name.
    LastName,
    /// E-mail address.
    Email,
    /// Preferred language (BCP 47, e.g. `en`, `pt-BR`).
    Language,
    /// IANA time zone (e.g. `America/New_York`).
    TimeZone,
    /// Tags, separated by `,`, `;` or `|` within the cell.
    Tags,
}

impl Field {
    fn from_header(normalised: &str) -> Option<Self> {
        Some(match normalised {
            "phone" | "phonenumber" | "phoneno" | "mobile" | "mobilenumber" | "mobilephone"
            | "mobileno" | "cell" | "cellphone" | "cellnumber" | "number" | "telephone" | "tel"
            | "msisdn" => Self::Phone,
            "name" | "fullname" | "contactname" | "contact" => Self::Name,
            "firstname" | "first" | "givenname" | "forename" => Self::FirstName,
            "lastname" | "last" | "surname" | "familyname" => Self::LastName,
            "email" | "emailaddress" | "mail" => Self::Email,
            "language" | "lang" | "locale" | "preferredlanguage" => Self::Language,
            "timezone" | "tz" | "zone" => Self::TimeZone,
            "tags" | "tag" | "labels" | "label" => Self::Tags,
            _ => return None,
        })
    }
}

/// What one column of the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnRole {
    /// A standard field.
    Field {
        /// Which one.
        field: Field,
    },
    /// A template variable with this key.
    Variable {
        /// Key in the contact's `variables` (lower-case letters, digits and `_`).
        key: String,
    },
    /// An empty header: the column is not imported.
    Ignored,
}

/// The header row and the role of each column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Columns {
    /// Index of the header in the sheet's non-empty rows.
    pub(crate) header_index: usize,
    /// Header texts as written in the file.
    pub(crate) headers: Vec<String>,
    /// Role per column, same length as `headers`.
    pub(crate) roles: Vec<ColumnRole>,
}

impl Columns {
    /// The column of `field`, if the file has one.
    pub(crate) fn of(&self, field: Field) -> Option<usize> {
        self.roles
            .iter()
            .position(|r| matches!(r, ColumnRole::Field { field: f } if *f == field))
    }

    /// The header text of column `index` (or its letter when the header is blank).
    pub(crate) fn header(&self, index: usize) -> String {
        match self.headers.get(index).map(String::as_str) {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => column_letter(index),
        }
    }
}

/// Finds the header: the first of the leading rows with a phone column, or with a cell that
/// reads `phone_column` when the person picked the column. `None` when there is none; an
/// error when the header has a cell too long to be a column name.
pub(crate) fn detect(
    rows: &[RawRow],
    phone_column: Option<&str>,
) -> Result<Option<Columns>, ImportError> {
    let picked = |c: &str| phone_column.is_some_and(|p| c.trim().eq_ignore_ascii_case(p.trim()));
    let Some(header_index) = rows.iter().take(HEADER_SEARCH_ROWS).position(|row| {
        row.iter().any(|(_, c)| match phone_column {
            Some(_) => picked(c),
            None => Field::from_header(&normalise(c)) == Some(Field::Phone),
        })
    }) else {
        return Ok(None);
    };
    let phone_index = phone_column.and_then(|_| {
        rows[header_index]
            .iter()
            .find(|(_, c)| picked(c))
            .map(|(i, _)| i)
    });
    let row = &rows[header_index];
    if let Some((col, _)) = row
        .iter()
        .find(|(_, c)| c.len() > MAX_HEADER_CHARS && c.chars().count() > MAX_HEADER_CHARS)
    {
        return Err(ImportError::HeaderTooLong {
            column: column_letter(col),
            max: MAX_HEADER_CHARS,
        });
    }
    let headers: Vec<String> = (0..row.width()).map(|i| row.get(i).to_owned()).collect();
    let mut roles = Vec::with_capacity(headers.len());
    let mut seen_fields = Vec::new();
    let mut seen_keys: Vec<String> = Vec::new();
    for (i, header) in headers.iter().enumerate() {
        // A picked phone column wins over one named like a phone column, which becomes a
        // variable like any other column.
        let field = match phone_index {
            Some(p) if p == i => Some(Field::Phone),
            Some(_) => Field::from_header(&normalise(header)).filter(|f| *f != Field::Phone),
            None => Field::from_header(&normalise(header)),
        };
        let role = match field {
            Some(field) if !seen_fields.contains(&field) => {
                seen_fields.push(field);
                ColumnRole::Field { field }
            }
            _ if header.trim().is_empty() => ColumnRole::Ignored,
            _ => {
                let base = variable_key(header, i);
                let mut key = base.clone();
                let mut n = 2;
                while seen_keys.contains(&key) {
                    key = format!("{base}_{n}");
                    n += 1;
                }
                seen_keys.push(key.clone());
                ColumnRole::Variable { key }
            }
        };
        roles.push(role);
    }
    Ok(Some(Columns {
        header_index,
        headers,
        roles,
    }))
}

fn normalise(header: &str) -> String {
    header
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '.' | '\u{a0}'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A template-friendly key ([`voice_agent_domain::variable_key`]), or `column_<letter>` for a
/// header with no letters or digits.
fn variable_key(header: &str, index: usize) -> String {
    let mut key = voice_agent_domain::variable_key(header);
    if let Some((cut, _)) = key.char_indices().nth(MAX_KEY_CHARS) {
        key.truncate(cut);
        key.truncate(key.trim_end_matches('_').len());
    }
    if key.is_empty() {
        format!("column_{}", column_letter(index).to_ascii_lowercase())
    } else {
        key
    }
}

/// `0` → `A`, `25` → `Z`, `26` → `AA`.
pub(crate) fn column_letter(mut index: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII letters")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(number: u32, cells: &[&str]) -> RawRow {
        RawRow::from_cells(number, cells)
    }

    fn detect(rows: &[RawRow]) -> Option<Columns> {
        super::detect(rows, None).expect("no header too long")
    }

    #[test]
    fn usual_header_names_map_to_fields_whatever_their_spelling() {
        let rows = [row(
            1,
            &[
                "Phone Number",
                "First_Name",
                "last name",
                "E-mail",
                "LANGUAGE",
                "Time Zone",
                "Tags",
                "Name",
            ],
        )];
        let c = detect(&rows).unwrap();
        let fields: Vec<_> = c
            .roles
            .iter()
            .map(|r| match r {
                ColumnRole::Field { field } => *field,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            fields,
            [
                Field::Phone,
                Field::FirstName,
                Field::LastName,
                Field::Email,
                Field::Language,
                Field::TimeZone,
                Field::Tags,
                Field::Name,
            ]
        );
        for phone in ["Mobile", "cell", "Number", "phone_number", "Cell Phone"] {
            let c = detect(&[row(1, &[phone])]).unwrap();
            assert_eq!(c.of(Field::Phone), Some(0), "{phone}");
        }
    }

    #[test]
    fn other_columns_become_template_variables_with_unique_keys() {
        let c = detect(&[row(
            1,
            &[
                "Phone",
                "Account Balance",
                "account-balance",
                "Mobile",
                "",
                "$x.y",
            ],
        )])
        .unwrap();
        let var = |i: usize| match &c.roles[i] {
            ColumnRole::Variable { key } => key.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(var(1), "account_balance");
        assert_eq!(var(2), "account_balance_2");
        // A second phone column is data, not the phone.
        assert_eq!(var(3), "mobile");
        assert_eq!(c.roles[4], ColumnRole::Ignored);
        assert_eq!(var(5), "x_y");
    }

    #[test]
    fn title_rows_above_the_header_are_skipped() {
        let rows = [
            row(1, &["Customer export"]),
            row(2, &["2026-01-01"]),
            row(4, &["Name", "Cell"]),
            row(5, &["Ann", "4155550100"]),
        ];
        let c = detect(&rows).unwrap();
        assert_eq!(c.header_index, 2);
        assert_eq!(c.of(Field::Phone), Some(1));
    }

    #[test]
    fn no_phone_header_means_no_columns() {
        assert_eq!(detect(&[row(1, &["Name", "Email"])]), None);
        assert_eq!(detect(&[]), None);
    }

    #[test]
    fn column_letters_follow_spreadsheet_naming() {
        assert_eq!(column_letter(0), "A");
        assert_eq!(column_letter(25), "Z");
        assert_eq!(column_letter(26), "AA");
        assert_eq!(column_letter(701), "ZZ");
        assert_eq!(column_letter(702), "AAA");
    }

    #[test]
    fn a_header_too_long_for_a_column_name_fails_the_file() {
        let dots = format!("{}phone", ".".repeat(MAX_HEADER_CHARS));
        assert_eq!(
            super::detect(&[row(1, &["Name", &dots])], None),
            Err(ImportError::HeaderTooLong {
                column: "B".to_owned(),
                max: MAX_HEADER_CHARS
            })
        );
        let long_var = format!("Phone,{}", "x".repeat(MAX_HEADER_CHARS + 1));
        let cells: Vec<&str> = long_var.split(',').collect();
        assert!(super::detect(&[row(1, &cells)], None).is_err());
    }

    #[test]
    fn variable_keys_are_cut_to_what_the_api_accepts() {
        let header = format!("{} tail", "Ab".repeat(MAX_KEY_CHARS));
        let c = detect(&[row(1, &["Phone", &header, &header])]).unwrap();
        let key = |i: usize| match &c.roles[i] {
            ColumnRole::Variable { key } => key.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(key(1), "ab".repeat(MAX_KEY_CHARS / 2));
        assert_eq!(key(2), format!("{}_2", key(1)));
    }

    #[test]
    fn a_picked_phone_column_wins_and_the_named_one_becomes_a_variable() {
        let rows = [
            row(1, &["Phone", "Mobile number", "Name"]),
            row(2, &["+14155550100", "+14155550101", "Ada"]),
        ];
        let c = super::detect(&rows, Some(" mobile NUMBER "))
            .unwrap()
            .unwrap();
        assert_eq!(c.of(Field::Phone), Some(1));
        assert_eq!(
            c.roles[0],
            ColumnRole::Variable {
                key: "phone".to_owned()
            }
        );
        assert!(super::detect(&rows, Some("Fax")).unwrap().is_none());
    }
}
