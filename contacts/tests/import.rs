//! Import edge cases, end to end from bytes. Workbooks are generated here with
//! rust_xlsxwriter rather than committed as binary fixtures.

use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
use voice_agent_contacts::report::rejected_rows_csv;
use voice_agent_contacts::{FileKind, ImportError, ImportOptions, ParsedFile, parse_file};

/// A cell to write: text or a number (how Excel stores a phone typed without formatting).
enum Cell<'a> {
    T(&'a str),
    N(f64),
}
use Cell::{N, T};

fn xlsx(sheets: &[(&str, &[&[Cell<'_>]])]) -> Vec<u8> {
    let mut wb = Workbook::new();
    for (name, rows) in sheets {
        let ws = wb.add_worksheet();
        ws.set_name(*name).unwrap();
        for (r, row) in rows.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                let (r, c) = (r as u32, c as u16);
                match cell {
                    T("") => {}
                    T(s) => {
                        ws.write_string(r, c, *s).unwrap();
                    }
                    N(n) => {
                        ws.write_number(r, c, *n).unwrap();
                    }
                }
            }
        }
    }
    wb.save_to_buffer().unwrap()
}

fn us() -> ImportOptions {
    ImportOptions::new("US")
}

fn phones(parsed: &ParsedFile) -> Vec<&str> {
    parsed.contacts.iter().map(|c| c.phone.as_str()).collect()
}

#[test]
fn xlsx_phones_in_every_usual_format_normalise_to_e164() {
    let rows: &[&[Cell<'_>]] = &[
        &[T("Phone"), T("Name")],
        &[N(4155550100.0), T("number cell")],
        &[N(14155550101.0), T("number cell with country code")],
        &[T("(415) 555-0102"), T("parentheses")],
        &[T("415-555-0103"), T("dashes")],
        &[T("415 555 0104"), T("spaces")],
        &[T("'4155550105"), T("apostrophe")],
        &[T("0014155550106"), T("00 prefix")],
        &[T("+44 20 7946 0958"), T("foreign")],
        &[T("1.4155550107E10"), T("scientific text")],
        &[T("4155550108.0"), T("float text")],
    ];
    let parsed = parse_file("list.xlsx", &xlsx(&[("Sheet1", rows)]), &us()).unwrap();
    assert_eq!(parsed.kind, FileKind::Xlsx);
    assert_eq!(parsed.sheet.as_deref(), Some("Sheet1"));
    assert_eq!(parsed.rejected_rows, []);
    assert_eq!(
        phones(&parsed),
        [
            "+14155550100",
            "+14155550101",
            "+14155550102",
            "+14155550103",
            "+14155550104",
            "+14155550105",
            "+14155550106",
            "+442079460958",
            "+14155550107",
            "+14155550108",
        ]
    );
}

#[test]
fn csv_phones_in_every_usual_format_normalise_to_e164() {
    let csv = "Mobile;Name\n\
               4155550100;a\n\
               (415) 555-0101;b\n\
               415-555-0102;c\n\
               '4155550103;d\n\
               0014155550104;e\n\
               1.4155550105E+10;f\n\
               +1 415 555 0106;g";
    let parsed = parse_file("list.csv", csv.as_bytes(), &us()).unwrap();
    assert_eq!(parsed.kind, FileKind::Csv);
    assert_eq!(parsed.rejected_rows, []);
    assert_eq!(
        phones(&parsed),
        (100..=106)
            .map(|n| format!("+1415555{n:04}"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_first_sheet_is_read_unless_one_is_named() {
    let first: &[&[Cell<'_>]] = &[&[T("Phone")], &[T("4155550100")]];
    let second: &[&[Cell<'_>]] = &[&[T("Phone")], &[T("4155550199")], &[T("4155550198")]];
    let bytes = xlsx(&[("Leads", first), ("Customers", second)]);
    let parsed = parse_file("book.xlsx", &bytes, &us()).unwrap();
    assert_eq!(phones(&parsed), ["+14155550100"]);

    let mut named = us();
    named.sheet = Some("customers".to_owned());
    let parsed = parse_file("book.xlsx", &bytes, &named).unwrap();
    assert_eq!(parsed.sheet.as_deref(), Some("Customers"));
    assert_eq!(phones(&parsed), ["+14155550199", "+14155550198"]);

    named.sheet = Some("Nope".to_owned());
    assert_eq!(
        parse_file("book.xlsx", &bytes, &named),
        Err(ImportError::SheetNotFound {
            requested: "Nope".to_owned(),
            available: vec!["Leads".to_owned(), "Customers".to_owned()],
        })
    );
}

#[test]
fn all_standard_fields_and_extra_columns_are_read() {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    let headers = [
        "Cell",
        "First Name",
        "Last Name",
        "Email",
        "Language",
        "Time Zone",
        "Tags",
        "Renewal Date",
        "Balance",
    ];
    for (c, h) in headers.iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    ws.write_string(1, 0, "415 555 0100").unwrap();
    ws.write_string(1, 1, "Ann").unwrap();
    ws.write_string(1, 2, "Lee").unwrap();
    ws.write_string(1, 3, "ann@example.com").unwrap();
    ws.write_string(1, 4, "pt_BR").unwrap();
    ws.write_string(1, 5, "America/New_York").unwrap();
    ws.write_string(1, 6, "vip; newsletter ,vip").unwrap();
    let date = ExcelDateTime::from_ymd(2026, 3, 31).unwrap();
    ws.write_datetime_with_format(1, 7, &date, &Format::new().set_num_format("dd/mm/yyyy"))
        .unwrap();
    ws.write_number(1, 8, 12.5).unwrap();
    let parsed = parse_file("x.xlsx", &wb.save_to_buffer().unwrap(), &us()).unwrap();
    let c = &parsed.contacts[0];
    assert_eq!(c.name.as_deref(), Some("Ann Lee"));
    assert_eq!(c.first_name.as_deref(), Some("Ann"));
    assert_eq!(c.last_name.as_deref(), Some("Lee"));
    assert_eq!(c.email.as_deref(), Some("ann@example.com"));
    assert_eq!(c.language.as_deref(), Some("pt-BR"));
    assert_eq!(c.time_zone.as_deref(), Some("America/New_York"));
    assert_eq!(c.tags, ["vip", "newsletter"]);
    assert_eq!(c.variables["renewal_date"], "2026-03-31");
    assert_eq!(c.variables["balance"], "12.5");
    assert_eq!(c.row, 2);
}

#[test]
fn duplicates_within_the_file_are_merged_not_doubled() {
    let csv = "Phone,Name,Email,Tags,Plan\n\
               (415) 555-0100,Ann,,a,gold\n\
               4155550101,Bob,,,\n\
               +1 415 555 0100,,ann@example.com,b,\n\
               415.555.0100,Annie,,a,platinum\n";
    let parsed = parse_file("d.csv", csv.as_bytes(), &us()).unwrap();
    assert_eq!(parsed.rows, 4);
    assert_eq!(parsed.merged, 2);
    assert_eq!(phones(&parsed), ["+14155550100", "+14155550101"]);
    let ann = &parsed.contacts[0];
    assert_eq!(ann.name.as_deref(), Some("Annie"));
    assert_eq!(ann.email.as_deref(), Some("ann@example.com"));
    assert_eq!(ann.tags, ["a", "b"]);
    assert_eq!(ann.variables["plan"], "platinum");
    assert_eq!(ann.row, 2);
}

#[test]
fn bad_rows_are_rejected_with_row_column_and_reason_and_the_rest_imported() {
    let rows: &[&[Cell<'_>]] = &[
        &[T("Contacts exported 2026-01-01")],
        &[],
        &[T("Name"), T("Phone Number"), T("Email"), T("Time Zone")],
        &[T("ok"), T("4155550100"), T(""), T("")],
        &[T("no phone"), T(""), T(""), T("")],
        &[T("letters"), T("call me"), T(""), T("")],
        &[T("too short"), T("555-01"), T(""), T("")],
        &[T("bad mail"), T("4155550101"), T("ann@"), T("")],
        &[T("bad zone"), T("4155550102"), T(""), T("Mars/Base")],
        &[T("formula"), T("=HYPERLINK(\"http://evil\")"), T(""), T("")],
    ];
    let parsed = parse_file("r.xlsx", &xlsx(&[("S", rows)]), &us()).unwrap();
    assert_eq!(phones(&parsed), ["+14155550100"]);
    assert_eq!((parsed.rows, parsed.rejected, parsed.merged), (7, 6, 0));
    let summary: Vec<(u32, &str, &str)> = parsed
        .rejected_rows
        .iter()
        .map(|r| (r.row, r.column.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (5, "Phone Number", "missing phone number"),
            (6, "Phone Number", "not a phone number"),
            (
                7,
                "Phone Number",
                "not a valid phone number for its country"
            ),
            (8, "Email", "not an e-mail address"),
            (
                9,
                "Time Zone",
                "not a time zone name such as America/New_York or UTC"
            ),
            (10, "Phone Number", "not a phone number"),
        ]
    );
    let report = String::from_utf8(rejected_rows_csv(&parsed.rejected_rows)).unwrap();
    assert!(report.starts_with("\u{feff}row,column,value,reason\r\n"));
    assert!(
        report.contains("10,Phone Number,\"'=HYPERLINK(\"\"http://evil\"\")\",not a phone number"),
        "{report}"
    );
    assert!(!report.contains(",=HYPERLINK"), "{report}");
}

#[test]
fn rejected_details_are_capped_but_all_are_counted() {
    let mut csv = String::from("Phone\n");
    for _ in 0..50 {
        csv.push_str("nope\n");
    }
    let mut options = us();
    options.max_reported_rejections = 10;
    let parsed = parse_file("g.csv", csv.as_bytes(), &options).unwrap();
    assert_eq!((parsed.rejected, parsed.rejected_rows.len()), (50, 10));
}

#[test]
fn an_empty_file_fails_as_a_whole() {
    assert_eq!(parse_file("e.csv", b"", &us()), Err(ImportError::Empty));
    assert_eq!(parse_file("e.xlsx", b"", &us()), Err(ImportError::Empty));
    assert_eq!(
        parse_file("e.csv", b"\n\n ,  \n", &us()),
        Err(ImportError::Empty)
    );
    let empty_book = xlsx(&[("Sheet1", &[])]);
    assert_eq!(
        parse_file("e.xlsx", &empty_book, &us()),
        Err(ImportError::Empty)
    );
}

#[test]
fn a_header_only_file_imports_nothing_and_succeeds() {
    let parsed = parse_file("h.csv", b"Phone,Name\r\n", &us()).unwrap();
    assert_eq!(
        (parsed.rows, parsed.contacts.len(), parsed.rejected),
        (0, 0, 0)
    );
    let book = xlsx(&[("S", &[&[T("Phone"), T("Name")]])]);
    let parsed = parse_file("h.xlsx", &book, &us()).unwrap();
    assert_eq!((parsed.rows, parsed.contacts.len()), (0, 0));
}

#[test]
fn a_file_without_a_phone_column_fails_as_a_whole() {
    let err = parse_file("n.csv", b"Name,Email\nAnn,a@example.com\n", &us()).unwrap_err();
    assert!(matches!(err, ImportError::MissingPhoneColumn { .. }));
    assert!(err.to_string().contains("Phone Number"), "{err}");
    let book = xlsx(&[("S", &[&[T("Name")], &[T("Ann")]])]);
    assert!(matches!(
        parse_file("n.xlsx", &book, &us()),
        Err(ImportError::MissingPhoneColumn { .. })
    ));
}

#[test]
fn wrong_file_types_fail_as_a_whole() {
    let xls = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0];
    for (name, bytes) in [
        ("old.xls", &xls[..]),
        ("renamed.xlsx", &xls[..]),
        ("doc.pdf", b"%PDF-1.4 ...".as_slice()),
        ("doc.csv", b"%PDF-1.4 ...".as_slice()),
        ("image.png", b"\x89PNG\r\n\x1a\n\0\0".as_slice()),
        ("garbage.csv", &[0u8, 159, 146, 150, 0, 1, 2][..]),
        ("text.xlsx", b"Phone\n4155550100\n".as_slice()),
    ] {
        let err = parse_file(name, bytes, &us()).unwrap_err();
        assert!(matches!(err, ImportError::WrongType(_)), "{name}: {err:?}");
    }
}

#[test]
fn a_damaged_workbook_is_unreadable() {
    let mut book = xlsx(&[("S", &[&[T("Phone")], &[T("4155550100")]])]);
    book.truncate(book.len() / 2);
    assert!(matches!(
        parse_file("cut.xlsx", &book, &us()),
        Err(ImportError::Unreadable(_))
    ));
    assert!(matches!(
        parse_file("zip.xlsx", b"PK\x03\x04 not really a zip", &us()),
        Err(ImportError::Unreadable(_))
    ));
}

#[test]
fn files_over_the_limits_fail_as_a_whole() {
    let csv = "Phone\n4155550100\n4155550101\n4155550102\n";
    let mut options = us();
    options.max_bytes = 10;
    assert_eq!(
        parse_file("big.csv", csv.as_bytes(), &options),
        Err(ImportError::TooLarge {
            size: csv.len() as u64,
            max: 10
        })
    );

    let mut options = us();
    options.max_rows = 2;
    assert_eq!(
        parse_file("big.csv", csv.as_bytes(), &options),
        Err(ImportError::TooManyRows { max: 2 })
    );
    let rows: Vec<Vec<Cell<'_>>> = std::iter::once(vec![T("Phone")])
        .chain((0..30).map(|i| vec![N(4155550100.0 + f64::from(i))]))
        .collect();
    let rows: Vec<&[Cell<'_>]> = rows.iter().map(Vec::as_slice).collect();
    let book = xlsx(&[("S", &rows)]);
    assert_eq!(
        parse_file("big.xlsx", &book, &options),
        Err(ImportError::TooManyRows { max: 2 })
    );
    options.max_rows = 30;
    assert_eq!(
        parse_file("big.xlsx", &book, &options)
            .unwrap()
            .contacts
            .len(),
        30
    );
}

#[test]
fn a_workbook_that_expands_beyond_the_limit_fails_before_it_is_read() {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Phone").unwrap();
    for r in 1..2_000 {
        ws.write_string(r, 0, "4155550100").unwrap();
    }
    let book = wb.save_to_buffer().unwrap();
    let mut options = us();
    options.max_uncompressed_bytes = Some(book.len() as u64);
    let err = parse_file("bomb.xlsx", &book, &options).unwrap_err();
    assert!(
        matches!(err, ImportError::TooLargeUncompressed { .. }),
        "{err:?}"
    );
    options.max_uncompressed_bytes = None;
    assert!(parse_file("bomb.xlsx", &book, &options).is_ok());
}

#[test]
fn an_unknown_default_region_is_a_configuration_error() {
    assert_eq!(
        parse_file("a.csv", b"Phone\n1\n", &ImportOptions::new("XX")),
        Err(ImportError::UnknownRegion("XX".to_owned()))
    );
}

#[test]
fn csv_without_a_final_line_break_and_with_crlf_keeps_row_numbers() {
    let parsed = parse_file("c.csv", b"Phone\r\n\r\nnope\r\n4155550100\r\nbad", &us()).unwrap();
    let rows: Vec<u32> = parsed.rejected_rows.iter().map(|r| r.row).collect();
    assert_eq!(rows, [3, 5]);
    assert_eq!(parsed.contacts[0].row, 4);
}

#[test]
fn many_rows_keep_file_order_and_later_rows_win() {
    let mut csv = String::from("Phone,N\n");
    for i in 0..10_000 {
        csv.push_str(&format!("415555{:04},{i}\n", i % 5_000));
    }
    let parsed = parse_file("p.csv", csv.as_bytes(), &us()).unwrap();
    assert_eq!((parsed.contacts.len(), parsed.merged), (5_000, 5_000));
    assert_eq!(parsed.contacts[0].row, 2);
    // Later rows win: row 5002 has the same number as row 2.
    assert_eq!(parsed.contacts[0].variables["n"], "5000");
    assert_eq!(parsed.contacts[4_999].phone.as_str(), "+14155554999");
}

#[test]
fn a_workbook_lists_its_sheets_and_a_picked_phone_column_is_read() {
    let bytes = xlsx(&[
        ("Notes", &[&[T("nothing here")]]),
        (
            "Customers",
            &[
                &[T("Phone"), T("Mobile"), T("Name")],
                &[T("+14155550100"), T("+14155550201"), T("Ada")],
                &[T("office"), T("+14155550202"), T("Grace")],
            ],
        ),
    ]);
    let options = ImportOptions {
        sheet: Some("Customers".to_owned()),
        phone_column: Some("mobile".to_owned()),
        ..us()
    };
    let parsed = parse_file("c.xlsx", &bytes, &options).unwrap();
    assert_eq!(parsed.sheets, ["Notes", "Customers"]);
    assert_eq!(phones(&parsed), ["+14155550201", "+14155550202"]);
    // The column named like a phone column is kept as a variable.
    assert_eq!(
        parsed.contacts[1]
            .variables
            .get("phone")
            .map(String::as_str),
        Some("office")
    );
    let missing = ImportOptions {
        phone_column: Some("Fax".to_owned()),
        ..options
    };
    assert!(matches!(
        parse_file("c.xlsx", &bytes, &missing),
        Err(ImportError::PhoneColumnNotFound { .. })
    ));
}
