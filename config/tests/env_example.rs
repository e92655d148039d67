//! `docker/voice-agent.env.example` lists every environment variable the api and the worker
//! read, and nothing they do not: the names are taken from the code (every string literal
//! shaped like `NAME_WITH_UNDERSCORES` outside `#[cfg(test)]` code of the crates the two
//! programs are built from), so a new setting without a line in the example fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crates the api and worker binaries are built from.
const CRATES: [&str; 10] = [
    "config",
    "api",
    "worker",
    "agent",
    "activities",
    "workflows",
    "store",
    "twilio",
    "contacts",
    "domain",
];

/// Literals of that shape that are not environment variables.
const NOT_VARIABLES: [&str; 1] = ["CARGO_PKG_VERSION"];

/// Read by libraries rather than by our code: the log filter and the Temporal SDK's
/// environment configuration (`temporalio_client::envconfig`).
const READ_BY_LIBRARIES: [&str; 19] = [
    "RUST_LOG",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
    "TEMPORAL_CODEC_ENDPOINT",
    "TEMPORAL_CODEC_AUTH",
    "TEMPORAL_GRPC_META_",
    "SSL_CERT_FILE",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `"NAME_LIKE_THIS"` literals: an upper-case letter, then upper-case letters, digits and at
/// least one underscore.
fn names_in(code: &str, out: &mut BTreeSet<String>) {
    // Line by line, so a quote character in a char literal or a comment cannot shift what
    // counts as inside quotes for the rest of the file.
    for (i, piece) in code.lines().flat_map(|line| line.split('"').enumerate()) {
        let shaped = piece.starts_with(|c: char| c.is_ascii_uppercase())
            && piece.contains('_')
            && piece
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        // Odd pieces are inside quotes (good enough: no such name is ever escaped).
        if i % 2 == 1 && shaped && !NOT_VARIABLES.contains(&piece) {
            out.insert(piece.to_owned());
        }
    }
}

fn read_by_code() -> BTreeSet<String> {
    let mut files = Vec::new();
    for krate in CRATES {
        rust_files(&root().join(krate).join("src"), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a source file");
        // Unit tests sit at the end of a file, after `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        names_in(code, &mut names);
    }
    names
}

/// Names in the example, set or commented out (`NAME=` or `# NAME=`).
fn listed_in_example() -> BTreeSet<String> {
    let path = root().join("docker/voice-agent.env.example");
    let text = std::fs::read_to_string(&path).expect("docker/voice-agent.env.example");
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim();
            let (name, _) = line.split_once('=')?;
            let shaped = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            shaped.then(|| name.to_owned())
        })
        .collect()
}

#[test]
fn the_env_example_lists_every_variable_the_programs_read() {
    let code = read_by_code();
    assert!(
        code.len() > 30 && code.contains("MONGODB_URI") && code.contains("API_HTTP_ADDR"),
        "the scan found too little: {code:?}"
    );
    let listed = listed_in_example();
    let missing: Vec<_> = code.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "read by the code but not in docker/voice-agent.env.example (add a line, and a row \
         in the README's configuration table): {missing:?}"
    );
}

#[test]
fn the_env_example_lists_nothing_the_programs_do_not_read() {
    let code = read_by_code();
    let unknown: Vec<_> = listed_in_example()
        .into_iter()
        .filter(|name| !code.contains(name) && !READ_BY_LIBRARIES.contains(&name.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "in docker/voice-agent.env.example but read by nothing: {unknown:?}"
    );
}

#[test]
fn the_scan_reads_quoted_names_only() {
    let mut names = BTreeSet::new();
    names_in(
        r#"env.get("API_HTTP_ADDR"); let s = "not_this"; "NOPE" // API_IN_A_COMMENT"#,
        &mut names,
    );
    assert_eq!(names, BTreeSet::from(["API_HTTP_ADDR".to_owned()]));
}
