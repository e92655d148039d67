//! Reading a workbook sheet or a CSV file into rows of text cells, numbered as a spreadsheet
//! program shows them, so the rejected-rows report points at the right line.

use std::io::Cursor;

use calamine::{DataRef, Reader, Xlsx, XlsxError};

use crate::ImportError;

/// Cells beyond this column are refused: a real contact sheet has a few dozen columns, and a
/// stray cell at column XFD would otherwise make every row sixteen thousand cells wide.
pub(crate) const MAX_COLUMNS: usize = 256;

/// One non-empty row of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawRow {
    /// 1-based row number as a spreadsheet program shows it.
    pub(crate) number: u32,
    /// Cell texts, trimmed, from column A on.
    pub(crate) cells: Vec<String>,
}

/// The rows of one sheet (or of the CSV file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawSheet {
    /// Sheet name; `None` for CSV.
    pub(crate) name: Option<String>,
    /// Non-empty rows in file order.
    pub(crate) rows: Vec<RawRow>,
}

/// Reads the first sheet, or the sheet called `sheet` (matched exactly, then ignoring case),
/// stopping with [`ImportError::TooManyRows`] as soon as more than `max_rows` non-empty rows
/// were read, before the rest of the sheet is decompressed.
pub(crate) fn read_xlsx(
    bytes: &[u8],
    sheet: Option<&str>,
    max_rows: usize,
    error_rows: usize,
    max_uncompressed: u64,
) -> Result<RawSheet, ImportError> {
    check_uncompressed_size(bytes, max_uncompressed)?;
    let mut workbook = Xlsx::new(Cursor::new(bytes)).map_err(xlsx_error)?;
    let names = workbook.sheet_names();
    let name = match sheet.map(str::trim).filter(|s| !s.is_empty()) {
        None => names.first().cloned().ok_or(ImportError::Empty)?,
        Some(wanted) => names
            .iter()
            .find(|n| n.as_str() == wanted)
            .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(wanted)))
            .cloned()
            .ok_or_else(|| ImportError::SheetNotFound {
                requested: wanted.to_owned(),
                available: names.clone(),
            })?,
    };
    let mut cells = workbook.worksheet_cells_reader(&name).map_err(xlsx_error)?;
    let expected_rows = (cells.dimensions().end.0 as usize + 1).min(max_rows + 1);
    let mut rows: Vec<RawRow> = Vec::with_capacity(expected_rows);
    let mut current: Option<RawRow> = None;
    while let Some(cell) = cells.next_cell().map_err(xlsx_error)? {
        let text = cell_text(cell.get_value());
        if text.is_empty() {
            continue;
        }
        let (row, col) = cell.get_position();
        let col = col as usize;
        if col >= MAX_COLUMNS {
            return Err(ImportError::Unreadable(format!(
                "a cell in column {} (row {}); at most {MAX_COLUMNS} columns are read",
                col + 1,
                row + 1
            )));
        }
        let number = row + 1;
        if current.as_ref().is_none_or(|r| r.number != number) {
            if let Some(done) = current.take() {
                rows.push(done);
                if rows.len() > error_rows {
                    return Err(ImportError::TooManyRows { max: max_rows });
                }
            }
            current = Some(RawRow {
                number,
                cells: Vec::with_capacity(8),
            });
        }
        let r = current.as_mut().expect("set just above");
        if r.cells.len() <= col {
            r.cells.resize(col + 1, String::new());
        }
        r.cells[col] = text;
    }
    rows.extend(current);
    if rows.len() > error_rows {
        return Err(ImportError::TooManyRows { max: max_rows });
    }
    Ok(RawSheet {
        name: Some(name),
        rows,
    })
}

/// calamine decompresses the shared-strings part whole before the first row is read, so the
/// row limit cannot protect against a small archive that expands to gigabytes; the sizes the
/// archive declares can, and reading them costs only the central directory.
fn check_uncompressed_size(bytes: &[u8], max: u64) -> Result<(), ImportError> {
    let damaged = || ImportError::Unreadable("the workbook's zip archive is damaged".to_owned());
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|_| damaged())?;
    let mut size: u64 = 0;
    for i in 0..archive.len() {
        // The central directory records every part's size, also for archives written with
        // data descriptors (where `ZipArchive::decompressed_size` gives up).
        let part = archive.by_index_raw(i).map_err(|_| damaged())?;
        size = size.saturating_add(part.size());
        if size > max {
            return Err(ImportError::TooLargeUncompressed { size, max });
        }
    }
    Ok(())
}

fn xlsx_error(e: XlsxError) -> ImportError {
    match e {
        XlsxError::Zip(_) | XlsxError::Io(_) => {
            ImportError::Unreadable("the workbook's zip archive is damaged".to_owned())
        }
        other => ImportError::Unreadable(format!("not a valid .xlsx workbook ({other})")),
    }
}

/// The text of a cell. Numbers come back as Excel shows them in a "General" cell, so a phone
/// number stored as the number 4155550100 reads as `4155550100`, not `4155550100.0`.
fn cell_text(value: &DataRef<'_>) -> String {
    match value {
        DataRef::Empty => String::new(),
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => {
            s.trim().to_owned()
        }
        DataRef::SharedString(s) => s.trim().to_owned(),
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => number_text(*f),
        DataRef::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
        DataRef::DateTime(dt) if dt.is_duration() => number_text(dt.as_f64()),
        DataRef::DateTime(dt) => {
            let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
            if (h, mi, s) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
            }
        }
        // "#N/A" and friends: kept, so a phone cell holding one is reported with its value.
        DataRef::Error(e) => e.to_string(),
    }
}

/// Integral numbers without a decimal part (Excel keeps 15 significant digits, so anything
/// below 10^15 is exact); others in Rust's shortest round-trip form.
pub(crate) fn number_text(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        // In range and integral, so the cast is exact.
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// Reads delimited text: UTF-8 (with or without BOM), UTF-16 with a BOM, or else
/// Windows-1252 (what Excel on Windows writes for "CSV"); the delimiter is sniffed from the
/// first line (`,` `;` tab or `|`).
pub(crate) fn read_csv(
    bytes: &[u8],
    max_rows: usize,
    error_rows: usize,
) -> Result<RawSheet, ImportError> {
    let text = decode_text(bytes);
    let delimiter = sniff_delimiter(&text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    // The csv crate skips blank lines, which a spreadsheet shows as rows, so rows are
    // numbered by line; a quoted cell spanning lines is one row, so those lines are taken off.
    let mut embedded_newlines: u64 = 0;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(ImportError::Unreadable(format!("CSV: {e}"))),
        }
        // The record ends where the reader now stands (past its line break, if any).
        let end = reader.position();
        let at = usize::try_from(end.byte()).unwrap_or(usize::MAX);
        let broke = at > 0 && text.as_bytes().get(at - 1) == Some(&b'\n');
        let inside = record
            .iter()
            .map(|c| c.bytes().filter(|&b| b == b'\n').count() as u64)
            .sum::<u64>();
        let first_line = end.line() - u64::from(broke) - inside;
        let number = u32::try_from(first_line - embedded_newlines).unwrap_or(u32::MAX);
        embedded_newlines += inside;
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if record.len() > MAX_COLUMNS
            && record
                .iter()
                .skip(MAX_COLUMNS)
                .any(|c| !c.trim().is_empty())
        {
            return Err(ImportError::Unreadable(format!(
                "row {number} has {} columns; at most {MAX_COLUMNS} are read",
                record.len()
            )));
        }
        rows.push(RawRow {
            number,
            cells: record
                .iter()
                .take(MAX_COLUMNS)
                .map(|c| c.trim().to_owned())
                .collect(),
        });
        if rows.len() > error_rows {
            return Err(ImportError::TooManyRows { max: max_rows });
        }
    }
    Ok(RawSheet { name: None, rows })
}

fn decode_text(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(rest).into_owned();
    }
    let utf16 = |rest: &[u8], le: bool| {
        let units = rest.chunks_exact(2).map(|p| {
            if le {
                u16::from_le_bytes([p[0], p[1]])
            } else {
                u16::from_be_bytes([p[0], p[1]])
            }
        });
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect::<String>()
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, false);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| windows_1252(b)).collect(),
    }
}

/// Windows-1252 differs from Latin-1 only in 0x80..=0x9F.
fn windows_1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž',
        '\u{8F}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}',
        'ž', 'Ÿ',
    ];
    match b {
        0x80..=0x9F => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

/// The most frequent candidate delimiter outside quotes in the first line; `,` by default.
fn sniff_delimiter(text: &str) -> u8 {
    let first_line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0), (b'|', 0)];
    let mut quoted = false;
    for b in first_line.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(c) = counts.iter_mut().find(|(d, _)| *d == b) {
            c.1 += 1;
        }
    }
    // Ties (including "no delimiter at all": a one-column file) go to the comma.
    counts
        .iter()
        .fold(
            (b',', 0),
            |best, &(d, n)| if n > best.1 { (d, n) } else { best },
        )
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(sheet: &RawSheet) -> Vec<(u32, Vec<&str>)> {
        sheet
            .rows
            .iter()
            .map(|r| (r.number, r.cells.iter().map(String::as_str).collect()))
            .collect()
    }

    #[test]
    fn numbers_read_as_excel_shows_them() {
        assert_eq!(number_text(4155550100.0), "4155550100");
        assert_eq!(number_text(1.4155550100E10), "14155550100");
        assert_eq!(number_text(2.5), "2.5");
        assert_eq!(number_text(-3.0), "-3");
        assert_eq!(number_text(1e20), "100000000000000000000");
    }

    #[test]
    fn csv_delimiters_are_sniffed_from_the_first_line() {
        assert_eq!(sniff_delimiter("Phone;Name\n1;2"), b';');
        assert_eq!(sniff_delimiter("Phone\tName"), b'\t');
        assert_eq!(sniff_delimiter("\"a;b\",c"), b',');
        assert_eq!(sniff_delimiter("Phone"), b',');
        assert_eq!(sniff_delimiter("\n\nPhone|Name|X"), b'|');
    }

    #[test]
    fn csv_rows_keep_their_line_numbers_and_skip_blank_lines() {
        let text = "\u{feff}Phone,Name\n\n 415 , Ann \n,\n416,\"B,\nC\"\n417,D\n";
        let sheet = read_csv(text.as_bytes(), 10, 10).unwrap();
        assert_eq!(
            cells(&sheet),
            vec![
                (1, vec!["Phone", "Name"]),
                (3, vec!["415", "Ann"]),
                (5, vec!["416", "B,\nC"]),
                (6, vec!["417", "D"]),
            ]
        );
    }

    #[test]
    fn csv_in_windows_1252_and_utf16_decodes() {
        let latin = read_csv(b"Name;Phone\nJos\xE9 \x80;1\n", 10, 10).unwrap();
        assert_eq!(latin.rows[1].cells[0], "José €");
        let mut utf16 = vec![0xFF, 0xFE];
        for u in "Phone\tName\r\n1\tÅsa\r\n".encode_utf16() {
            utf16.extend(u.to_le_bytes());
        }
        let sheet = read_csv(&utf16, 10, 10).unwrap();
        assert_eq!(sheet.rows[1].cells, vec!["1", "Åsa"]);
    }

    #[test]
    fn csv_row_limit_stops_reading() {
        let text = "Phone\n1\n2\n3\n";
        assert_eq!(
            read_csv(text.as_bytes(), 2, 3),
            Err(ImportError::TooManyRows { max: 2 })
        );
        assert_eq!(read_csv(text.as_bytes(), 3, 4).unwrap().rows.len(), 4);
    }
}
