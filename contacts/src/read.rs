//! Reading a workbook sheet or a CSV file into rows of text cells, numbered as a spreadsheet
//! program shows them, so the rejected-rows report points at the right line.

use std::borrow::Cow;
use std::io::Cursor;

use calamine::{DataRef, Reader, Xlsx, XlsxError};

use crate::ImportError;
use crate::columns::column_letter;

/// Cells beyond this column are refused: a real contact sheet has a few dozen columns, and a
/// stray cell at column XFD would otherwise make every row sixteen thousand cells wide.
pub const MAX_COLUMNS: usize = 256;

/// Longest cell, in characters. The longest SMS is 1,600 characters, so a longer cell can feed
/// no field and no template variable; such a cell is a wrong file or an attack, and every cell
/// read is copied into the contact it feeds.
pub const MAX_CELL_CHARS: usize = 2_000;

/// What one read may hold, on top of the row limit: every cell costs memory beyond its text,
/// so cells and text are capped in proportion to the upload's byte limit, whatever the file's
/// shape (a CSV of empty-ish cells, a workbook whose tiny cells all point at one long shared
/// string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadLimits {
    /// Data-row limit reported in [`ImportError::TooManyRows`].
    pub(crate) max_rows: usize,
    /// Rows read (the header and the rows above it included) before giving up.
    pub(crate) error_rows: usize,
    /// Non-empty cells in the whole file.
    pub(crate) max_cells: usize,
    /// Bytes of cell text (UTF-8, trimmed) in the whole file.
    pub(crate) max_text_bytes: u64,
}

/// Running totals of a read, checked cell by cell so a hostile file stops early.
struct Budget {
    limits: ReadLimits,
    cells: usize,
    text: u64,
}

impl Budget {
    fn new(limits: ReadLimits) -> Self {
        Self {
            limits,
            cells: 0,
            text: 0,
        }
    }

    /// Accounts for one non-empty, trimmed cell at 0-based `col` of spreadsheet row `row`.
    fn take(&mut self, row: u32, col: usize, text: &str) -> Result<(), ImportError> {
        if col >= MAX_COLUMNS {
            return Err(ImportError::TooManyColumns {
                row,
                column: column_letter(col),
                max: MAX_COLUMNS,
            });
        }
        // A char is at least one byte, so only a long text needs counting.
        if text.len() > MAX_CELL_CHARS && text.chars().count() > MAX_CELL_CHARS {
            return Err(ImportError::CellTooLong {
                row,
                column: column_letter(col),
                max: MAX_CELL_CHARS,
            });
        }
        self.cells += 1;
        if self.cells > self.limits.max_cells {
            return Err(ImportError::TooManyCells {
                max: self.limits.max_cells,
            });
        }
        self.text += text.len() as u64;
        if self.text > self.limits.max_text_bytes {
            return Err(ImportError::TooMuchText {
                max: self.limits.max_text_bytes,
            });
        }
        Ok(())
    }
}

/// One non-empty row of the file, stored sparse: only its non-empty cells, their texts in one
/// buffer. A row with one cell far to the right costs that cell, not every cell before it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawRow {
    /// 1-based row number as a spreadsheet program shows it.
    pub(crate) number: u32,
    /// The texts of the non-empty cells, trimmed, one after the other.
    text: String,
    /// Per non-empty cell, by column: (0-based column, end of its text in `text`); a cell's
    /// text starts where the previous one's ends.
    cells: Vec<(u16, u32)>,
}

impl RawRow {
    pub(crate) fn new(number: u32) -> Self {
        Self {
            number,
            ..Self::default()
        }
    }

    /// A row from dense cells (empty ones skipped), for tests.
    #[cfg(test)]
    pub(crate) fn from_cells(number: u32, cells: &[&str]) -> Self {
        let mut row = Self::new(number);
        for (i, c) in cells.iter().enumerate() {
            row.push(i, c);
        }
        row
    }

    /// Sets cell `col` (below [`MAX_COLUMNS`]) to `text`; empty text is not stored.
    pub(crate) fn push(&mut self, col: usize, text: &str) {
        if text.is_empty() {
            return;
        }
        let col16 = u16::try_from(col).expect("columns are checked against MAX_COLUMNS");
        if self.cells.last().is_none_or(|&(last, _)| last < col16) {
            self.text.push_str(text);
            let end = u32::try_from(self.text.len())
                .expect("a row holds at most 256 cells of 2,000 chars");
            self.cells.push((col16, end));
            return;
        }
        // Out of order or repeated (a hand-made workbook): rebuild, the later value winning.
        let mut all: Vec<(usize, String)> = self
            .iter()
            .filter(|&(c, _)| c != col)
            .map(|(c, t)| (c, t.to_owned()))
            .collect();
        all.push((col, text.to_owned()));
        all.sort_by_key(|&(c, _)| c);
        *self = Self::new(self.number);
        for (c, t) in all {
            self.push(c, &t);
        }
    }

    /// The text of cell `col`, empty when the cell is.
    pub(crate) fn get(&self, col: usize) -> &str {
        let Ok(col) = u16::try_from(col) else {
            return "";
        };
        match self.cells.binary_search_by_key(&col, |&(c, _)| c) {
            Ok(i) => self.text_at(i),
            Err(_) => "",
        }
    }

    /// The non-empty cells, by column: (0-based column, text).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &str)> {
        (0..self.cells.len()).map(|i| (usize::from(self.cells[i].0), self.text_at(i)))
    }

    /// One past the last non-empty column.
    pub(crate) fn width(&self) -> usize {
        self.cells.last().map_or(0, |&(c, _)| usize::from(c) + 1)
    }

    fn text_at(&self, i: usize) -> &str {
        let start = if i == 0 {
            0
        } else {
            self.cells[i - 1].1 as usize
        };
        &self.text[start..self.cells[i].1 as usize]
    }
}

/// The rows of one sheet (or of the CSV file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawSheet {
    /// Sheet name; `None` for CSV.
    pub(crate) name: Option<String>,
    /// Every sheet of the workbook, in order; empty for CSV.
    pub(crate) sheet_names: Vec<String>,
    /// Non-empty rows in file order.
    pub(crate) rows: Vec<RawRow>,
}

/// Reads the first sheet, or the sheet called `sheet` (matched exactly, then ignoring case),
/// stopping with [`ImportError::TooManyRows`] as soon as more than `max_rows` non-empty rows
/// were read, before the rest of the sheet is decompressed, and likewise at the first cell
/// over a limit.
pub(crate) fn read_xlsx(
    bytes: &[u8],
    sheet: Option<&str>,
    limits: ReadLimits,
    max_uncompressed: u64,
) -> Result<RawSheet, ImportError> {
    // calamine keeps the shared strings whole in memory, as text plus about 40 bytes each;
    // their XML carries at least 16 bytes of markup per string, so twice the text budget
    // bounds them in proportion to the upload limit.
    let max_shared = limits.max_text_bytes.saturating_mul(2);
    check_uncompressed_size(bytes, max_uncompressed, max_shared)?;
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
    // No capacity from the sheet's declared dimensions: a tiny file may declare a million rows.
    let mut rows: Vec<RawRow> = Vec::new();
    let mut current: Option<RawRow> = None;
    let mut budget = Budget::new(limits);
    while let Some(cell) = cells.next_cell().map_err(xlsx_error)? {
        let text = cell_text(cell.get_value());
        if text.is_empty() {
            continue;
        }
        let (row, col) = cell.get_position();
        let number = row.saturating_add(1);
        budget.take(number, col as usize, &text)?;
        if current.as_ref().is_none_or(|r| r.number != number) {
            if let Some(done) = current.take() {
                rows.push(done);
                if rows.len() > limits.error_rows {
                    return Err(ImportError::TooManyRows {
                        max: limits.max_rows,
                    });
                }
            }
            current = Some(RawRow::new(number));
        }
        current
            .as_mut()
            .expect("set just above")
            .push(col as usize, &text);
    }
    rows.extend(current);
    if rows.len() > limits.error_rows {
        return Err(ImportError::TooManyRows {
            max: limits.max_rows,
        });
    }
    Ok(RawSheet {
        name: Some(name),
        sheet_names: names,
        rows,
    })
}

/// calamine decompresses the shared-strings part whole before the first row is read, so the
/// row limit cannot protect against a small archive that expands to gigabytes; the sizes the
/// archive declares can, and reading them costs only the central directory.
/// The shared-strings part, which calamine reads whole, is held to `max_shared` on its own.
fn check_uncompressed_size(bytes: &[u8], max: u64, max_shared: u64) -> Result<(), ImportError> {
    let damaged = || ImportError::Unreadable("the workbook's zip archive is damaged".to_owned());
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|_| damaged())?;
    let mut size: u64 = 0;
    for i in 0..archive.len() {
        // The central directory records every part's size, also for archives written with
        // data descriptors (where `ZipArchive::decompressed_size` gives up).
        let part = archive.by_index_raw(i).map_err(|_| damaged())?;
        let shared = part
            .name()
            .is_ok_and(|n| n.eq_ignore_ascii_case("xl/sharedStrings.xml"));
        if shared && part.size() > max_shared {
            return Err(ImportError::TooLargeUncompressed {
                size: part.size(),
                max: max_shared,
            });
        }
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
fn cell_text<'a>(value: &DataRef<'a>) -> Cow<'a, str> {
    match value {
        DataRef::Empty => Cow::Borrowed(""),
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => {
            Cow::Owned(s.trim().to_owned())
        }
        // Borrowed from the shared strings: a long one referenced by many cells is refused
        // by its length before it is ever copied.
        DataRef::SharedString(s) => Cow::Borrowed(s.trim()),
        DataRef::Int(i) => Cow::Owned(i.to_string()),
        DataRef::Float(f) => Cow::Owned(number_text(*f)),
        DataRef::Bool(b) => Cow::Borrowed(if *b { "TRUE" } else { "FALSE" }),
        DataRef::DateTime(dt) if dt.is_duration() => Cow::Owned(number_text(dt.as_f64())),
        DataRef::DateTime(dt) => {
            let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
            Cow::Owned(if (h, mi, s) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
            })
        }
        // "#N/A" and friends: kept, so a phone cell holding one is reported with its value.
        DataRef::Error(e) => Cow::Owned(e.to_string()),
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
pub(crate) fn read_csv(bytes: &[u8], limits: ReadLimits) -> Result<RawSheet, ImportError> {
    let text = decode_text(bytes);
    let delimiter = sniff_delimiter(&text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    let mut budget = Budget::new(limits);
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
        let mut row = RawRow::new(number);
        for (col, cell) in record.iter().enumerate() {
            let cell = cell.trim();
            if !cell.is_empty() {
                budget.take(number, col, cell)?;
                row.push(col, cell);
            }
        }
        if row.width() == 0 {
            continue;
        }
        rows.push(row);
        if rows.len() > limits.error_rows {
            return Err(ImportError::TooManyRows {
                max: limits.max_rows,
            });
        }
    }
    Ok(RawSheet {
        name: None,
        sheet_names: Vec::new(),
        rows,
    })
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
            .map(|r| (r.number, (0..r.width()).map(|c| r.get(c)).collect()))
            .collect()
    }

    fn limits(max_rows: usize, error_rows: usize) -> ReadLimits {
        ReadLimits {
            max_rows,
            error_rows,
            max_cells: 1_000,
            max_text_bytes: 100_000,
        }
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
        let sheet = read_csv(text.as_bytes(), limits(10, 10)).unwrap();
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
        let latin = read_csv(b"Name;Phone\nJos\xE9 \x80;1\n", limits(10, 10)).unwrap();
        assert_eq!(latin.rows[1].get(0), "José €");
        let mut utf16 = vec![0xFF, 0xFE];
        for u in "Phone\tName\r\n1\tÅsa\r\n".encode_utf16() {
            utf16.extend(u.to_le_bytes());
        }
        let sheet = read_csv(&utf16, limits(10, 10)).unwrap();
        assert_eq!(cells(&sheet)[1].1, vec!["1", "Åsa"]);
    }

    #[test]
    fn csv_row_limit_stops_reading() {
        let text = "Phone\n1\n2\n3\n";
        assert_eq!(
            read_csv(text.as_bytes(), limits(2, 3)),
            Err(ImportError::TooManyRows { max: 2 })
        );
        assert_eq!(
            read_csv(text.as_bytes(), limits(3, 4)).unwrap().rows.len(),
            4
        );
    }

    #[test]
    fn rows_are_sparse_and_keep_cells_by_column() {
        let mut row = RawRow::new(3);
        row.push(0, "a");
        row.push(200, "far");
        assert_eq!(row.get(0), "a");
        assert_eq!(row.get(1), "");
        assert_eq!(row.get(200), "far");
        assert_eq!(row.width(), 201);
        // Out of order and repeated cells (hand-made workbooks) land in column order.
        row.push(5, "mid");
        row.push(0, "A");
        assert_eq!(
            row.iter().collect::<Vec<_>>(),
            [(0, "A"), (5, "mid"), (200, "far")]
        );
        // Two cells, three short texts: nothing is allocated for the columns in between.
        assert!(row.text.capacity() < 64, "{}", row.text.capacity());
    }

    #[test]
    fn csv_cells_over_the_limits_fail_the_file_with_their_place() {
        let long = format!("Phone,Note\n1,{}\n", "x".repeat(MAX_CELL_CHARS + 1));
        assert_eq!(
            read_csv(long.as_bytes(), limits(10, 10)),
            Err(ImportError::CellTooLong {
                row: 2,
                column: "B".to_owned(),
                max: MAX_CELL_CHARS
            })
        );
        // Exactly at the limit, counted in characters, is fine.
        let at = format!("Phone,Note\n1,{}\n", "é".repeat(MAX_CELL_CHARS));
        assert!(read_csv(at.as_bytes(), limits(10, 10)).is_ok());

        let wide = format!("Phone{}x\n", ",".repeat(MAX_COLUMNS));
        assert_eq!(
            read_csv(wide.as_bytes(), limits(10, 10)),
            Err(ImportError::TooManyColumns {
                row: 1,
                column: "IW".to_owned(),
                max: MAX_COLUMNS
            })
        );
        // Trailing empty cells beyond the limit are harmless.
        let trailing = format!("Phone{}\n", ",".repeat(MAX_COLUMNS * 2));
        assert!(read_csv(trailing.as_bytes(), limits(10, 10)).is_ok());

        let many = "1,2,3\n".repeat(400);
        assert_eq!(
            read_csv(many.as_bytes(), limits(1_000, 1_000)),
            Err(ImportError::TooManyCells { max: 1_000 })
        );
        let mut tight = limits(1_000, 1_000);
        tight.max_text_bytes = 40;
        assert_eq!(
            read_csv(
                "Phone,Name\n4155550100,Ann\n4155550101,Bob\n4155550102,Cy\n".as_bytes(),
                tight
            ),
            Err(ImportError::TooMuchText { max: 40 })
        );
    }
}
