//! Whole-file import errors. Problems with single rows are never errors: they end up in the
//! rejected-rows report ([`crate::RejectedRow`]).

/// Why a file could not be imported at all. Nothing is written when one of these happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file is not an `.xlsx` workbook or a CSV text file (for example a legacy `.xls`, a
    /// PDF, an image, or a workbook protected by a password). The caller should save it as
    /// `.xlsx` or `.csv` and upload again.
    #[error("unsupported file type: {0}; upload an .xlsx workbook or a .csv file")]
    WrongType(String),
    /// The file has the right type but cannot be read (a truncated or corrupt workbook). The
    /// caller should re-export it from its spreadsheet program.
    #[error("the file cannot be read: {0}")]
    Unreadable(String),
    /// The file is larger than the configured byte limit; split it into smaller files.
    #[error("the file has {size} bytes; at most {max} are accepted")]
    TooLarge {
        /// Size of the upload, in bytes (for streamed uploads: the bytes received when the
        /// limit was crossed).
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// The workbook would expand to more than the allowed size when decompressed (a zip bomb,
    /// or a huge workbook saved with extreme compression); split it into smaller files.
    #[error("the workbook expands to {size} bytes; at most {max} are accepted")]
    TooLargeUncompressed {
        /// Declared uncompressed size of the archive's parts.
        size: u64,
        /// The limit ([`crate::ImportOptions::max_uncompressed_bytes`]).
        max: u64,
    },
    /// The file has more data rows than the configured limit; split it into smaller files.
    #[error("the file has more than {max} rows")]
    TooManyRows {
        /// The configured limit.
        max: usize,
    },
    /// A row has a non-empty cell beyond the last column read; delete the stray cells (or
    /// split the columns over two files).
    #[error("row {row} has a value in column {column}; at most {max} columns are read")]
    TooManyColumns {
        /// 1-based row number.
        row: u32,
        /// The column's letters.
        column: String,
        /// The limit ([`crate::MAX_COLUMNS`]).
        max: usize,
    },
    /// A cell is longer than any contact field or template variable can be; shorten it or
    /// remove the column.
    #[error("the cell in row {row}, column {column} is longer than {max} characters")]
    CellTooLong {
        /// 1-based row number.
        row: u32,
        /// The column's letters.
        column: String,
        /// The limit ([`crate::MAX_CELL_CHARS`]).
        max: usize,
    },
    /// A header cell is longer than a column name can be; shorten it.
    #[error("the header of column {column} is longer than {max} characters")]
    HeaderTooLong {
        /// The column's letters.
        column: String,
        /// The limit ([`crate::columns::MAX_HEADER_CHARS`]).
        max: usize,
    },
    /// The file has more non-empty cells than the limit ([`crate::ImportOptions::max_cells`]);
    /// split it into smaller files.
    #[error("the file has more than {max} non-empty cells")]
    TooManyCells {
        /// The limit.
        max: usize,
    },
    /// The file's cells hold more text than the limit
    /// ([`crate::ImportOptions::max_text_bytes`]); split it into smaller files.
    #[error("the file's cells hold more than {max} bytes of text")]
    TooMuchText {
        /// The limit, in bytes of UTF-8.
        max: u64,
    },
    /// The requested sheet does not exist in the workbook; pick one of `available`.
    #[error("no sheet named {requested:?}; the workbook has {available:?}")]
    SheetNotFound {
        /// The sheet name asked for.
        requested: String,
        /// The sheets of the workbook, in order.
        available: Vec<String>,
    },
    /// The file (or the chosen sheet) has no rows at all.
    #[error("the file has no rows")]
    Empty,
    /// No header row with a phone column was found in the first rows; the caller should add a
    /// header such as `Phone`, `Phone Number`, `Mobile`, `Cell` or `Number`.
    #[error(
        "no phone column: expected a header row with one of Phone, Phone Number, Mobile, Cell or \
         Number in the first {searched} rows"
    )]
    MissingPhoneColumn {
        /// How many leading rows were searched for the header.
        searched: usize,
    },
    /// The phone column asked for is not a header of the first rows; pick one of the file's
    /// headers.
    #[error("no column headed {requested:?} in the first {searched} rows")]
    PhoneColumnNotFound {
        /// The header asked for.
        requested: String,
        /// How many leading rows were searched for it.
        searched: usize,
    },
    /// The default region is not an ISO 3166-1 alpha-2 code; fix the configuration.
    #[error("unknown default region {0:?}")]
    UnknownRegion(String),
}
