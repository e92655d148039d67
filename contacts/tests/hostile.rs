//! Files shaped to exhaust memory or produce huge reports: each fails as a whole with an error
//! that says what to fix, before the rows are held. The api's memory on the same corpus is
//! measured by the end-to-end test `hostile_uploads_get_a_clear_error_store_nothing_and_stay_small`.

use rust_xlsxwriter::Workbook;
use voice_agent_contacts::columns::MAX_HEADER_CHARS;
use voice_agent_contacts::{ImportError, ImportOptions, MAX_CELL_CHARS, MAX_COLUMNS, parse_file};

fn options(max_bytes: u64) -> ImportOptions {
    let mut options = ImportOptions::new("US");
    options.max_bytes = max_bytes;
    options
}

#[test]
fn a_megabyte_of_dots_before_phone_is_refused_not_copied_into_every_rejected_row() {
    let mut csv = ".".repeat(1 << 20);
    csv.push_str("phone\n");
    for i in 0..2_000 {
        csv.push_str(&format!("garbage {i}\n"));
    }
    assert_eq!(
        parse_file("dots.csv", csv.as_bytes(), &options(20 << 20)),
        Err(ImportError::CellTooLong {
            row: 1,
            column: "A".to_owned(),
            max: MAX_CELL_CHARS
        })
    );
}

#[test]
fn a_header_longer_than_a_column_name_is_refused_even_under_the_cell_limit() {
    let mut csv = format!("Name,{}phone\n", ".".repeat(MAX_HEADER_CHARS));
    csv.push_str(&"Ann,nope\n".repeat(100));
    assert_eq!(
        parse_file("dots.csv", csv.as_bytes(), &options(1 << 20)),
        Err(ImportError::HeaderTooLong {
            column: "B".to_owned(),
            max: MAX_HEADER_CHARS
        })
    );
}

#[test]
fn one_cell_at_column_16000_of_a_workbook_is_refused_with_its_place() {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Phone").unwrap();
    ws.write_string(1, 0, "4155550100").unwrap();
    ws.write_string(1, 15_999, "far").unwrap();
    let book = wb.save_to_buffer().unwrap();
    assert_eq!(
        parse_file("far.xlsx", &book, &options(1 << 20)),
        Err(ImportError::TooManyColumns {
            row: 2,
            column: "WQJ".to_owned(),
            max: MAX_COLUMNS
        })
    );
}

#[test]
fn sparse_rows_within_the_columns_import_their_cells() {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Phone").unwrap();
    ws.write_string(0, 255, "Far").unwrap();
    ws.write_string(1, 0, "4155550100").unwrap();
    ws.write_string(1, 255, "x").unwrap();
    let book = wb.save_to_buffer().unwrap();
    let parsed = parse_file("sparse.xlsx", &book, &options(1 << 20)).unwrap();
    assert_eq!(parsed.contacts[0].variables["far"], "x");
    assert_eq!(parsed.contacts[0].variables.len(), 1);
}

#[test]
fn tiny_cells_in_their_millions_are_refused_by_the_cell_limit() {
    // 2 bytes a cell: over the default of one cell per 4 bytes of the byte limit.
    let max_bytes = 1 << 20;
    let mut csv = String::from("Phone\n");
    while csv.len() < max_bytes as usize - 2 {
        csv.push_str("1\n");
    }
    assert_eq!(
        parse_file("deep.csv", csv.as_bytes(), &options(max_bytes)),
        Err(ImportError::TooManyCells {
            max: (max_bytes / 4) as usize
        })
    );
}

#[test]
fn a_workbook_whose_cells_all_repeat_one_long_string_is_refused_by_the_text_limit() {
    // Each cell is a few bytes of XML pointing at the same 2,000-character shared string.
    let long = "y".repeat(MAX_CELL_CHARS);
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Phone").unwrap();
    ws.write_string(0, 1, "Note").unwrap();
    for r in 1..20_000 {
        ws.write_string(r, 1, &long).unwrap();
    }
    let book = wb.save_to_buffer().unwrap();
    let max_bytes = 1 << 20;
    assert!((book.len() as u64) < max_bytes, "{}", book.len());
    assert_eq!(
        parse_file("repeat.xlsx", &book, &options(max_bytes)),
        Err(ImportError::TooMuchText { max: 4 * max_bytes })
    );
}

#[test]
fn a_workbook_with_a_huge_shared_strings_part_is_refused_before_it_is_read() {
    // Distinct long strings that compress well: a small file, a large part calamine would
    // hold whole.
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Phone").unwrap();
    let tail = "z".repeat(MAX_CELL_CHARS - 10);
    for r in 1..6_000 {
        ws.write_string(r, 1, format!("{r:08}{tail}")).unwrap();
    }
    let book = wb.save_to_buffer().unwrap();
    let max_bytes = 1 << 20;
    assert!((book.len() as u64) < max_bytes, "{}", book.len());
    let err = parse_file("strings.xlsx", &book, &options(max_bytes)).unwrap_err();
    assert!(
        matches!(err, ImportError::TooLargeUncompressed { max, .. } if max == 8 * max_bytes),
        "{err:?}"
    );
}

#[test]
fn the_limits_leave_an_ordinary_file_at_the_byte_limit_alone() {
    let max_bytes = 1 << 20;
    let mut csv = String::from("Phone,Name,Plan\n");
    let mut i = 0;
    while csv.len() < max_bytes as usize - 64 {
        csv.push_str(&format!("+1415555{:04},Person {i},gold\n", i % 10_000));
        i += 1;
    }
    let parsed = parse_file("big.csv", csv.as_bytes(), &options(max_bytes)).unwrap();
    assert_eq!(parsed.rows, i);
    assert_eq!(parsed.contacts.len(), 10_000);
}
