//! CSV exports, safe to open in a spreadsheet program.
//!
//! A cell whose text starts with `=`, `+`, `-` or `@` (or a tab or carriage return, which
//! some programs skip before such a sign) runs as a formula when a spreadsheet opens the file
//! ("CSV injection"). Every cell written here goes through [`neutralise`], which prefixes
//! such text with `'`, so the cell shows as text. Uploaded files are user input, and the
//! report quotes their cells, so this matters for every export.

use std::borrow::Cow;

use crate::RejectedRow;

/// `text` made inert for spreadsheets: a leading `'` when it could start a formula.
pub fn neutralise(text: &str) -> Cow<'_, str> {
    let risky = |c: Option<char>| matches!(c, Some('=' | '+' | '-' | '@' | '\t' | '\r'));
    // Spreadsheet programs skip leading spaces before deciding that a cell is a formula.
    if risky(text.chars().next()) || risky(text.trim_start_matches(' ').chars().next()) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Writes CSV rows with every cell neutralised. For exports other than the rejected-rows
/// report (contact lists, campaign results).
#[derive(Debug)]
pub struct CsvExport {
    writer: csv::Writer<Vec<u8>>,
}

impl Default for CsvExport {
    fn default() -> Self {
        Self::new()
    }
}

impl CsvExport {
    /// An empty export. Excel reads UTF-8 CSV correctly only with a byte-order mark, so the
    /// export starts with one.
    pub fn new() -> Self {
        let mut buffer = Vec::with_capacity(4096);
        buffer.extend_from_slice(b"\xEF\xBB\xBF");
        Self {
            writer: csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(buffer),
        }
    }

    /// Appends one row.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let cells: Vec<String> = cells
            .into_iter()
            .map(|c| neutralise(c.as_ref()).into_owned())
            .collect();
        self.writer
            .write_record(&cells)
            .expect("writing CSV to memory cannot fail");
    }

    /// The CSV bytes.
    pub fn finish(self) -> Vec<u8> {
        self.writer
            .into_inner()
            .expect("flushing CSV to memory cannot fail")
    }
}

/// The rejected-rows report as CSV: `row,column,value,reason`.
pub fn rejected_rows_csv(rows: &[RejectedRow]) -> Vec<u8> {
    let mut out = CsvExport::new();
    out.row(["row", "column", "value", "reason"]);
    for r in rows {
        out.row([r.row.to_string().as_str(), &r.column, &r.value, &r.reason]);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_are_prefixed_with_an_apostrophe() {
        for (raw, safe) in [
            ("=1+1", "'=1+1"),
            ("+14155550100", "'+14155550100"),
            ("-5", "'-5"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("  =1", "'  =1"),
            ("\tplain", "'\tplain"),
        ] {
            assert_eq!(neutralise(raw), safe, "{raw:?}");
        }
        for plain in ["Ann", "4155550100", "", "a=b", "'already"] {
            assert_eq!(neutralise(plain), plain);
        }
    }

    #[test]
    fn the_report_is_csv_with_every_cell_neutralised() {
        let csv = rejected_rows_csv(&[RejectedRow {
            row: 7,
            column: "=Phone".to_owned(),
            value: "=HYPERLINK(\"http://x\",\"click\")".to_owned(),
            reason: "not a phone number".to_owned(),
        }]);
        let text = String::from_utf8(csv).unwrap();
        assert_eq!(
            text,
            "\u{feff}row,column,value,reason\r\n7,'=Phone,\"'=HYPERLINK(\"\"http://x\"\",\"\"click\"\")\",not a phone number\r\n"
        );
    }
}
