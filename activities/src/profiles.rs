//! Agent profiles kept in MongoDB (see `voice_agent_store::profiles`), typed: what the
//! worker answers with, what the API edits, and the import of the agents file.
//!
//! The agents file (`AGENTS_FILE`) seeds the store: at start-up the api and the worker import
//! each of its profiles once per distinct content (a hash of the profile and its numbers), so
//! a deployment kept as code gets its changes, and an edit made in the web app stays until the
//! file itself changes that profile again.

use std::path::Path;

use anyhow::Context;
use mongodb::bson::Document;
use sha2::{Digest, Sha256};
use tracing::info;
use voice_agent_agent::{AgentDirectory, AgentProfile, ScriptedRules};
use voice_agent_domain::PhoneNumber;
use voice_agent_store::{MongoStore, ProfileVersionDoc, SaveOutcome};

/// Longest text of a profile's prompt (`instructions`).
pub const MAX_INSTRUCTIONS_CHARS: usize = 20_000;
/// Longest line (greeting, fallback, closing and the other messages).
pub const MAX_LINE_CHARS: usize = 1_000;
/// Most facts, and the longest one.
pub const MAX_FACTS: usize = 100;
/// Longest fact.
pub const MAX_FACT_CHARS: usize = 1_000;
/// Longest scripted rules text.
pub const MAX_RULES_CHARS: usize = 32 * 1024;
/// Most numbers one profile answers.
pub const MAX_NUMBERS: usize = 50;

/// A profile field that is out of bounds: the field's name and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ProfileInvalid {
    /// The field, as named in the API and the agents file.
    pub field: &'static str,
    /// What is wrong, for a person.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ProfileInvalid {
    ProfileInvalid {
        field,
        reason: reason.into(),
    }
}

/// A profile name: 1-64 lower-case letters, digits, `-` or `_`.
pub fn check_name(name: &str) -> Result<(), ProfileInvalid> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(invalid("name", "1-64 lower-case letters, digits, - or _"));
    }
    Ok(())
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    field: &'static str,
    v: T,
    min: T,
    max: T,
) -> Result<(), ProfileInvalid> {
    if v < min || v > max {
        return Err(invalid(field, format!("between {min} and {max}")));
    }
    Ok(())
}

fn check_len(
    field: &'static str,
    v: &str,
    max: usize,
    required: bool,
) -> Result<(), ProfileInvalid> {
    if required && v.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(invalid(field, format!("at most {max} characters")));
    }
    Ok(())
}

/// Checks a profile as the API takes it, and normalises the numbers (E.164). The bounds keep
/// one profile small (a few tens of KB) and its limits sensible; `rules_toml` must compile.
pub fn validate(profile: &mut AgentProfile, numbers: &mut [String]) -> Result<(), ProfileInvalid> {
    check_name(&profile.name)?;
    check_len(
        "instructions",
        &profile.instructions,
        MAX_INSTRUCTIONS_CHARS,
        false,
    )?;
    for (field, v, required) in [
        ("fallback_reply", &profile.fallback_reply, true),
        ("closing", &profile.closing, true),
        ("transfer_message", &profile.transfer_message, true),
        ("reprompt", &profile.reprompt, true),
        ("callback_message", &profile.callback_message, true),
    ] {
        check_len(field, v, MAX_LINE_CHARS, required)?;
    }
    if let Some(g) = &profile.greeting {
        check_len("greeting", g, MAX_LINE_CHARS, false)?;
    }
    check_len("language", &profile.language, 35, true)?;
    if let Some(v) = &profile.voice {
        check_len("voice", v, 64, false)?;
    }
    for (field, v) in [
        ("relay.tts_provider", &profile.relay.tts_provider),
        (
            "relay.transcription_provider",
            &profile.relay.transcription_provider,
        ),
        ("relay.speech_model", &profile.relay.speech_model),
    ] {
        if let Some(v) = v {
            check_len(field, v, 64, false)?;
        }
    }
    for (field, v) in [
        ("relay.interruptible", &profile.relay.interruptible),
        (
            "relay.welcome_greeting_interruptible",
            &profile.relay.welcome_greeting_interruptible,
        ),
    ] {
        if !voice_agent_agent::RELAY_INTERRUPTIBLE.contains(&v.as_str()) {
            return Err(invalid(field, "one of none, dtmf, speech, any"));
        }
    }
    if profile.facts.len() > MAX_FACTS {
        return Err(invalid("facts", format!("at most {MAX_FACTS}")));
    }
    for f in &profile.facts {
        check_len("facts", f, MAX_FACT_CHARS, true)?;
    }
    check_range("max_turns", profile.max_turns, 1, 1_000)?;
    check_range("max_reply_chars", profile.max_reply_chars, 20, 4_000)?;
    check_range("timeout_secs", profile.timeout_secs, 1, 120)?;
    check_range("max_silences", profile.max_silences, 0, 10)?;
    check_range(
        "summary_after_idle_secs",
        profile.summary_after_idle_secs,
        10,
        7 * 86_400,
    )?;
    check_range("turns_per_run", profile.turns_per_run, 10, 1_000)?;
    check_range("idle_close_secs", profile.idle_close_secs, 60, 30 * 86_400)?;
    if let Some(n) = &profile.transfer_number {
        if n.trim().is_empty() {
            profile.transfer_number = None;
        } else {
            let e164 = PhoneNumber::parse_e164(n)
                .map_err(|e| invalid("transfer_number", e.to_string()))?;
            profile.transfer_number = Some(e164.as_str().to_owned());
        }
    }
    if profile.rules.is_some() {
        return Err(invalid(
            "rules",
            "a rules file path belongs in the agents file; give the rules as rules_toml",
        ));
    }
    if let Some(text) = &profile.rules_toml {
        if text.trim().is_empty() {
            profile.rules_toml = None;
        } else {
            check_len("rules_toml", text, MAX_RULES_CHARS, true)?;
            ScriptedRules::parse(text, Path::new("rules_toml"))
                .map_err(|e| invalid("rules_toml", e.to_string()))?;
        }
    }
    if numbers.len() > MAX_NUMBERS {
        return Err(invalid("numbers", format!("at most {MAX_NUMBERS}")));
    }
    for n in numbers.iter_mut() {
        let e164 = PhoneNumber::parse_e164(n.trim_start_matches("whatsapp:"))
            .map_err(|e| invalid("numbers", format!("{n}: {e}")))?;
        *n = e164.as_str().to_owned();
    }
    Ok(())
}

/// The stored form of a profile: every setting but its name and version.
pub fn to_stored(profile: &AgentProfile) -> anyhow::Result<Document> {
    let mut doc = mongodb::bson::to_document(profile).context("Failed to encode a profile")?;
    doc.remove("name");
    doc.remove("version");
    Ok(doc)
}

/// The profile a stored version holds, with its name and version.
pub fn from_stored(stored: &ProfileVersionDoc) -> anyhow::Result<AgentProfile> {
    let mut profile: AgentProfile = mongodb::bson::from_document(stored.profile.clone())
        .with_context(|| format!("Failed to decode the stored profile {:?}", stored.name))?;
    profile.name.clone_from(&stored.name);
    profile.version = u32::try_from(stored.version).ok();
    Ok(profile)
}

/// The current profile answering our number (with or without `whatsapp:`).
pub async fn for_number(store: &MongoStore, number: &str) -> anyhow::Result<Option<AgentProfile>> {
    let number = number.trim_start_matches("whatsapp:");
    store
        .profile_for_number(number)
        .await?
        .map(|d| from_stored(&d))
        .transpose()
}

/// The current version of a profile by name.
pub async fn by_name(store: &MongoStore, name: &str) -> anyhow::Result<Option<AgentProfile>> {
    store
        .get_profile(name)
        .await?
        .map(|d| from_stored(&d))
        .transpose()
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Profiles that got a new version.
    pub imported: Vec<String>,
    /// Profiles whose file content was imported before.
    pub unchanged: usize,
}

/// Imports every profile of an agents file that the store does not have in this form yet.
/// Rules files are read and stored inline (`rules_toml`), so the stored profile is complete
/// without the file. Safe to run from several processes at once.
pub async fn import_directory(
    store: &MongoStore,
    directory: &AgentDirectory,
) -> anyhow::Result<ImportSummary> {
    let mut summary = ImportSummary::default();
    for file_profile in directory.profiles() {
        let mut profile = file_profile.clone();
        if let Some(path) = profile.rules.take() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("Failed to read the rules file {}", path.display()))?;
            profile.rules_toml = Some(text);
        }
        profile.version = None;
        let numbers = directory.numbers_of(&profile.name);
        let stored = to_stored(&profile)?;
        let mut hasher = Sha256::new();
        hasher.update(mongodb::bson::to_vec(&stored).context("Failed to encode a profile")?);
        for n in &numbers {
            hasher.update(n.as_bytes());
            hasher.update([0]);
        }
        let hash = hex::encode(hasher.finalize());
        // Another process may be importing the same file: a conflict means reading again.
        let mut attempts = 0;
        loop {
            if store.profile_has_file_hash(&profile.name, &hash).await? {
                summary.unchanged += 1;
                break;
            }
            let expected = store.get_profile(&profile.name).await?.map(|h| h.version);
            let next = ProfileVersionDoc {
                id: String::new(),
                name: profile.name.clone(),
                version: 0,
                profile: stored.clone(),
                numbers: numbers.clone(),
                source: "file".to_owned(),
                file_hash: Some(hash.clone()),
                created_by: "agents file".to_owned(),
                created_at: mongodb::bson::DateTime::now(),
            };
            match store.save_profile(next, expected).await? {
                SaveOutcome::Saved(head) => {
                    info!(profile = %head.name, version = head.version, "agent profile imported from the agents file");
                    summary.imported.push(head.name.clone());
                    break;
                }
                SaveOutcome::Conflict { .. } if attempts < 5 => attempts += 1,
                SaveOutcome::Conflict { .. } => {
                    anyhow::bail!(
                        "the profile {:?} kept changing during the import",
                        profile.name
                    )
                }
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> AgentProfile {
        AgentProfile {
            name: name.to_owned(),
            ..AgentProfile::default()
        }
    }

    #[test]
    fn a_valid_profile_is_normalised() {
        let mut p = AgentProfile {
            transfer_number: Some("+1 415 555 2671".to_owned()),
            rules_toml: Some("   ".to_owned()),
            ..profile("support")
        };
        let mut numbers = vec!["whatsapp:+15005550006".to_owned()];
        validate(&mut p, &mut numbers).unwrap();
        assert_eq!(p.transfer_number.as_deref(), Some("+14155552671"));
        assert_eq!(p.rules_toml, None, "blank rules mean the built-in ones");
        assert_eq!(numbers, ["+15005550006"]);
    }

    #[test]
    fn out_of_bounds_fields_are_named() {
        let field = |mut p: AgentProfile| validate(&mut p, &mut []).unwrap_err().field;
        assert_eq!(field(profile("Bad Name")), "name");
        assert_eq!(
            field(AgentProfile {
                max_reply_chars: 5,
                ..profile("a")
            }),
            "max_reply_chars"
        );
        assert_eq!(
            field(AgentProfile {
                fallback_reply: " ".to_owned(),
                ..profile("a")
            }),
            "fallback_reply"
        );
        assert_eq!(
            field(AgentProfile {
                rules_toml: Some("fallback = ".to_owned()),
                ..profile("a")
            }),
            "rules_toml"
        );
        assert_eq!(
            field(AgentProfile {
                rules: Some("/etc/passwd".into()),
                ..profile("a")
            }),
            "rules"
        );
        assert_eq!(
            field(AgentProfile {
                facts: vec!["x".to_owned(); MAX_FACTS + 1],
                ..profile("a")
            }),
            "facts"
        );
        let mut p = profile("a");
        assert_eq!(
            validate(&mut p, &mut ["12".to_owned()]).unwrap_err().field,
            "numbers"
        );
    }

    #[test]
    fn the_stored_form_round_trips_without_name_or_version() {
        let p = AgentProfile {
            greeting: Some("Hi".to_owned()),
            version: Some(3),
            ..profile("support")
        };
        let stored = to_stored(&p).unwrap();
        assert!(!stored.contains_key("name") && !stored.contains_key("version"));
        let doc = ProfileVersionDoc {
            id: "support".to_owned(),
            name: "support".to_owned(),
            version: 4,
            profile: stored,
            numbers: vec![],
            source: "api".to_owned(),
            file_hash: None,
            created_by: String::new(),
            created_at: mongodb::bson::DateTime::now(),
        };
        let back = from_stored(&doc).unwrap();
        assert_eq!(back.version, Some(4));
        assert_eq!(back.greeting.as_deref(), Some("Hi"));
        assert_eq!(back.name, "support");
    }
}
