//! File-type detection from the name *and* the first bytes: a name alone can lie (a CSV
//! renamed to `.xlsx`, a legacy `.xls` renamed to `.csv`), and content alone cannot tell a
//! CSV from any other text.

use crate::ImportError;

/// A file type the importer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// Office Open XML workbook (`.xlsx`, `.xlsm`): a zip archive.
    Xlsx,
    /// Delimited text (`.csv`, `.tsv`, `.txt`): UTF-8, UTF-16 with a BOM, or Windows-1252.
    Csv,
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// Compound File Binary (OLE2): legacy `.xls`, and also any password-protected `.xlsx`.
const CFB_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
const UTF16_BOMS: [&[u8]; 2] = [&[0xFF, 0xFE], &[0xFE, 0xFF]];

/// Decides how to read `bytes` uploaded under `file_name`.
///
/// The extension must be a spreadsheet or text one (or absent), and the content must agree
/// with it: a zip for `.xlsx`, text for `.csv`.
pub fn detect(file_name: &str, bytes: &[u8]) -> Result<FileKind, ImportError> {
    let ext = extension(file_name);
    if bytes.is_empty() {
        return Err(ImportError::Empty);
    }
    let content = sniff(bytes);
    let wrong = |what: &str| Err(ImportError::WrongType(what.to_owned()));
    match (ext.as_deref(), content) {
        (_, Sniffed::Cfb) => wrong(
            "a legacy .xls workbook or a password-protected workbook (remove the password and \
             save as .xlsx)",
        ),
        (_, Sniffed::Pdf) => wrong("a PDF document"),
        (Some("xls"), _) => wrong("a legacy .xls workbook (save it as .xlsx)"),
        (Some("xlsx" | "xlsm") | None, Sniffed::Zip) => Ok(FileKind::Xlsx),
        (Some("csv" | "tsv" | "txt") | None, Sniffed::Text) => Ok(FileKind::Csv),
        (Some("xlsx" | "xlsm"), _) => wrong("named .xlsx but not a workbook"),
        (Some("csv" | "tsv" | "txt"), Sniffed::Zip) => {
            wrong("named .csv but a zip archive (an .xlsx workbook? name it .xlsx)")
        }
        (Some("csv" | "tsv" | "txt"), _) => wrong("named .csv but binary data"),
        (Some(other), _) => Err(ImportError::WrongType(format!(".{other} files"))),
        (None, _) => wrong("binary data"),
    }
}

/// The lower-case extension of a file name, if it has one (`"Contacts.XLSX"` → `xlsx`).
fn extension(file_name: &str) -> Option<String> {
    // Browsers send a bare name, but some clients send a path; Windows ones with backslashes.
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => Some(ext.to_ascii_lowercase()),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Zip,
    Cfb,
    Pdf,
    Text,
    Binary,
}

fn sniff(bytes: &[u8]) -> Sniffed {
    if bytes.starts_with(ZIP_MAGIC) {
        return Sniffed::Zip;
    }
    if bytes.starts_with(CFB_MAGIC) {
        return Sniffed::Cfb;
    }
    if bytes.starts_with(b"%PDF-") {
        return Sniffed::Pdf;
    }
    if UTF16_BOMS.iter().any(|bom| bytes.starts_with(bom)) {
        return Sniffed::Text;
    }
    // Text files have no NUL bytes and few control characters; judge by the first 8 KiB.
    let head = &bytes[..bytes.len().min(8 * 1024)];
    let suspicious = head
        .iter()
        .filter(|&&b| b == 0 || (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C)))
        .count();
    if head.contains(&0) || suspicious * 100 > head.len() {
        Sniffed::Binary
    } else {
        Sniffed::Text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workbooks_and_text_are_recognised_by_name_and_content() {
        assert_eq!(detect("a.xlsx", b"PK\x03\x04rest"), Ok(FileKind::Xlsx));
        assert_eq!(detect("A.XLSM", b"PK\x03\x04rest"), Ok(FileKind::Xlsx));
        assert_eq!(detect("upload", b"PK\x03\x04rest"), Ok(FileKind::Xlsx));
        assert_eq!(detect("a.csv", b"Phone\n1"), Ok(FileKind::Csv));
        assert_eq!(detect("C:\\x\\a.txt", b"Phone\n1"), Ok(FileKind::Csv));
        assert_eq!(
            detect("upload", "Phone;Név\n".as_bytes()),
            Ok(FileKind::Csv)
        );
        assert_eq!(detect("a.csv", &[0xFF, 0xFE, b'P', 0]), Ok(FileKind::Csv));
    }

    #[test]
    fn legacy_xls_pdf_and_binary_garbage_are_the_wrong_type() {
        for (name, bytes) in [
            ("a.xls", CFB_MAGIC.to_vec()),
            ("a.xlsx", CFB_MAGIC.to_vec()),
            ("a.xls", b"Phone\n1".to_vec()),
            ("a.pdf", b"%PDF-1.7".to_vec()),
            ("a.csv", b"%PDF-1.7".to_vec()),
            ("a.xlsx", b"Phone\n1".to_vec()),
            ("a.csv", b"PK\x03\x04".to_vec()),
            ("a.csv", vec![0, 1, 2, 3, 0xFF, 0]),
            ("a.png", b"\x89PNG\r\n\x1a\n".to_vec()),
            ("a.docx", b"PK\x03\x04".to_vec()),
            ("blob", vec![7; 100]),
        ] {
            assert!(
                matches!(detect(name, &bytes), Err(ImportError::WrongType(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn an_empty_file_is_empty_whatever_its_name() {
        assert_eq!(detect("a.xlsx", b""), Err(ImportError::Empty));
    }

    #[test]
    fn extensions_ignore_paths_and_case() {
        assert_eq!(extension("dir.d/Contacts.CSV").as_deref(), Some("csv"));
        assert_eq!(extension(".hidden"), None);
        assert_eq!(extension("noext"), None);
    }
}
