//! Import benchmark: prints figures, asserts nothing about time (run by
//! `scripts/bench-import.sh`, which also runs the Python peer on the same file).
//!
//! ```text
//! cargo bench -p voice-agent-contacts --bench import -- generate FILE [ROWS]
//! cargo bench -p voice-agent-contacts --bench import -- import FILE MONGODB_URI [REGION]
//! cargo bench -p voice-agent-contacts --bench import -- parse FILE [REGION]
//! ```
//!
//! `generate` writes a workbook of mixed phone formats (number cells, parentheses, dashes,
//! spaces, dots, a leading apostrophe, `+1`, `001`, scientific notation), about 5% invalid
//! numbers and about 3% repeats of earlier numbers in another format. `import` reads the file,
//! parses it, and merges it into a new list in MongoDB, exactly as the API's upload does, then
//! prints one `key=value` line per figure. `parse` stops before the database: the same work as the
//! Python peer, which writes nothing either.

use std::time::Instant;

use rust_xlsxwriter::Workbook;
use voice_agent_contacts::{ImportOptions, parse_file};
use voice_agent_store::MongoStore;
use voice_agent_store::contacts::{ImportReportDoc, NewContact, RejectedRowDoc, new_id};

fn main() {
    // `cargo bench` appends `--bench`; ignore flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["generate", path] => generate(path, 100_000),
        ["generate", path, rows] => generate(path, rows.parse().expect("ROWS is a number")),
        ["import", path, uri] => import(path, uri, "US"),
        ["import", path, uri, region] => import(path, uri, region),
        ["parse", path] => parse_only(path, "US"),
        ["parse", path, region] => parse_only(path, region),
        _ => Err(
            "usage: import (generate FILE [ROWS] | import FILE MONGODB_URI [REGION] | parse FILE [REGION])"
                .into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("import bench: {e}");
        std::process::exit(1);
    }
}

type BenchResult = Result<(), Box<dyn std::error::Error>>;

/// xorshift64*: deterministic, so every run (and the peer) sees the same file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const AREA_CODES: [u32; 12] = [212, 213, 305, 310, 312, 415, 512, 617, 646, 702, 713, 206];
const FIRST: [&str; 8] = [
    "Ann", "Bob", "Chloé", "Dmitri", "Eve", "Farid", "Gül", "Hiro",
];
const LAST: [&str; 6] = ["Lee", "Smith", "García", "Nakamura", "O'Brien", "Novak"];
const PLANS: [&str; 4] = ["basic", "gold", "platinum", ""];
const INVALID: [&str; 6] = ["12345", "not a number", "555-01", "+1 415 555", "", "=1+1"];

enum PhoneCell {
    Number(f64),
    Text(String),
}

fn format_phone(rng: &mut Rng, area: u32, exchange: u32, line: u32) -> PhoneCell {
    let ten = format!("{area}{exchange}{line:04}");
    match rng.below(9) {
        0 => PhoneCell::Number(f64::from(area) * 1e7 + f64::from(exchange) * 1e4 + f64::from(line)),
        1 => PhoneCell::Text(format!("({area}) {exchange}-{line:04}")),
        2 => PhoneCell::Text(format!("{area}-{exchange}-{line:04}")),
        3 => PhoneCell::Text(format!("{area} {exchange} {line:04}")),
        4 => PhoneCell::Text(format!("'{ten}")),
        5 => PhoneCell::Text(format!("+1 {area} {exchange} {line:04}")),
        6 => PhoneCell::Text(format!("001{ten}")),
        7 => PhoneCell::Text(format!("1.{ten}E10")),
        _ => PhoneCell::Text(format!("{area}.{exchange}.{line:04}")),
    }
}

fn generate(path: &str, rows: u32) -> BenchResult {
    let started = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("Contacts")?;
    for (c, h) in [
        "Phone Number",
        "First Name",
        "Last Name",
        "Email",
        "Tags",
        "City",
        "Plan",
    ]
    .iter()
    .enumerate()
    {
        ws.write_string(0, c as u16, *h)?;
    }
    let mut earlier: Vec<(u32, u32, u32)> = Vec::with_capacity(rows as usize);
    let (mut invalid, mut repeats) = (0, 0);
    for r in 1..=rows {
        let roll = rng.below(100);
        let phone = if roll < 5 {
            invalid += 1;
            PhoneCell::Text(INVALID[rng.below(INVALID.len() as u64) as usize].to_owned())
        } else {
            let (area, exchange, line) = if roll < 8 && !earlier.is_empty() {
                repeats += 1;
                earlier[rng.below(earlier.len() as u64) as usize]
            } else {
                let n = (
                    AREA_CODES[rng.below(AREA_CODES.len() as u64) as usize],
                    200 + rng.below(800) as u32,
                    rng.below(10_000) as u32,
                );
                earlier.push(n);
                n
            };
            format_phone(&mut rng, area, exchange, line)
        };
        match phone {
            PhoneCell::Number(n) => ws.write_number(r, 0, n)?,
            PhoneCell::Text(t) if t.is_empty() => ws,
            PhoneCell::Text(t) => ws.write_string(r, 0, t)?,
        };
        let first = FIRST[rng.below(FIRST.len() as u64) as usize];
        let last = LAST[rng.below(LAST.len() as u64) as usize];
        ws.write_string(r, 1, first)?;
        ws.write_string(r, 2, last)?;
        ws.write_string(r, 3, format!("{}.{r}@example.com", first.to_lowercase()))?;
        ws.write_string(
            r,
            4,
            if r % 3 == 0 {
                "vip, newsletter"
            } else {
                "newsletter"
            },
        )?;
        ws.write_string(
            r,
            5,
            ["Austin", "Boston", "Denver", "Miami"][(r % 4) as usize],
        )?;
        let plan = PLANS[rng.below(PLANS.len() as u64) as usize];
        if !plan.is_empty() {
            ws.write_string(r, 6, plan)?;
        }
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    wb.save(path)?;
    println!(
        "generated={path} rows={rows} invalid={invalid} repeats={repeats} bytes={} seconds={:.2}",
        std::fs::metadata(path)?.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn import(path: &str, uri: &str, region: &str) -> BenchResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let database = format!("bench_{}", &new_id("db")[3..15]);
        let store = MongoStore::connect(uri, &database).await?;
        store.ensure_schema().await?;
        let list = store.create_contact_list("benchmark").await?;

        let started = Instant::now();
        let bytes = std::fs::read(path)?;
        let file_name = path.rsplit('/').next().unwrap_or(path).to_owned();
        let options = ImportOptions::new(region);
        let (parsed, parse_s) = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let parsed = parse_file(&file_name, &bytes, &options);
            (parsed, t.elapsed().as_secs_f64())
        })
        .await?;
        let parsed = parsed?;
        let write_started = Instant::now();
        let contacts: Vec<NewContact> = parsed
            .contacts
            .into_iter()
            .map(|c| NewContact {
                phone: c.phone.as_str().to_owned(),
                name: c.name,
                first_name: c.first_name,
                last_name: c.last_name,
                email: c.email,
                language: c.language,
                time_zone: c.time_zone,
                tags: c.tags,
                variables: c.variables,
            })
            .collect();
        let counts = store.import_contacts(&list.id, contacts).await?;
        store
            .save_import_report(&ImportReportDoc {
                id: new_id("imp"),
                list_id: list.id.clone(),
                file_name: path.to_owned(),
                sheet: parsed.sheet.clone(),
                rows: parsed.rows as i64,
                imported: counts.inserted as i64,
                merged: (parsed.merged as u64 + counts.updated) as i64,
                rejected: parsed.rejected as i64,
                rejected_rows: parsed
                    .rejected_rows
                    .iter()
                    .map(|r| RejectedRowDoc {
                        row: r.row,
                        column: r.column.clone(),
                        value: r.value.clone(),
                        reason: r.reason.clone(),
                    })
                    .collect(),
                created_at: mongodb::bson::DateTime::now(),
            })
            .await?;
        let write_s = write_started.elapsed().as_secs_f64();
        let total_s = started.elapsed().as_secs_f64();
        let stored = store
            .get_contact_list(&list.id)
            .await?
            .map_or(0, |l| l.contact_count);
        println!("rows={}", parsed.rows);
        println!("imported={}", counts.inserted);
        println!("merged={}", parsed.merged as u64 + counts.updated);
        println!("rejected={}", parsed.rejected);
        println!("contact_count={stored}");
        println!("parse_seconds={parse_s:.3}");
        println!("write_seconds={write_s:.3}");
        println!("import_seconds={total_s:.3}");
        println!("rows_per_second={:.0}", parsed.rows as f64 / total_s);
        println!("peak_rss_mib={:.1}", peak_rss_kib() as f64 / 1024.0);
        store.database().drop().await?;
        Ok(())
    })
}

fn parse_only(path: &str, region: &str) -> BenchResult {
    let started = Instant::now();
    let bytes = std::fs::read(path)?;
    let parsed = parse_file(path, &bytes, &ImportOptions::new(region))?;
    let total_s = started.elapsed().as_secs_f64();
    println!("rows={}", parsed.rows);
    println!("imported={}", parsed.contacts.len());
    println!("merged={}", parsed.merged);
    println!("rejected={}", parsed.rejected);
    println!("import_seconds={total_s:.3}");
    println!("rows_per_second={:.0}", parsed.rows as f64 / total_s);
    println!("peak_rss_mib={:.1}", peak_rss_kib() as f64 / 1024.0);
    Ok(())
}

/// Peak resident set size of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}
