//! The scripted agent: deterministic replies from a rules file, for offline use and tests.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use regex::Regex;
use serde::Deserialize;

use crate::directory::AgentDirectory;
use crate::types::{AgentAction, AgentReply, AgentRequest, Disposition, Speaker, Summary};
use crate::{Agent, AgentError};

/// The rules every profile without its own file uses.
const BUILTIN_RULES: &str = include_str!("../rules/default.toml");

/// A rules file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// The file could not be read.
    #[error("cannot read the rules file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is invalid.
    #[error("the rules file {path} is invalid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the rule's position.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    fallback: String,
    #[serde(default)]
    greeting: Option<String>,
    #[serde(default)]
    rules: Vec<RuleShape>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleShape {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    reply: String,
    #[serde(default)]
    actions: Vec<AgentAction>,
    #[serde(default)]
    disposition: Option<String>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    /// Normalised, padded with spaces for whole-word matching.
    keywords: Vec<String>,
    pattern: Option<Regex>,
    reply: String,
    actions: Vec<AgentAction>,
    disposition: Option<Disposition>,
}

/// A compiled rules file.
#[derive(Debug)]
pub struct ScriptedRules {
    fallback: String,
    greeting: Option<String>,
    rules: Vec<Rule>,
}

impl ScriptedRules {
    /// The built-in rules (`agent/rules/default.toml`).
    pub fn builtin() -> Self {
        Self::parse(BUILTIN_RULES, Path::new("<built-in rules>"))
            .expect("the built-in rules are valid (checked by a unit test)")
    }

    /// Reads and compiles a rules file.
    pub fn load(path: &Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Compiles a rules file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, RulesError> {
        let invalid = |message: String| RulesError::Invalid {
            path: path.to_owned(),
            message,
        };
        let file: RulesFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, shape) in file.rules.into_iter().enumerate() {
            let name = shape.name.unwrap_or_else(|| format!("rule {}", i + 1));
            if shape.keywords.is_empty() && shape.pattern.is_none() {
                return Err(invalid(format!("{name}: needs `keywords` or `pattern`")));
            }
            if shape.reply.trim().is_empty() && shape.actions.is_empty() {
                return Err(invalid(format!("{name}: needs a `reply` or `actions`")));
            }
            let pattern = shape
                .pattern
                .map(|p| Regex::new(&p).map_err(|e| invalid(format!("{name}: pattern: {e}"))))
                .transpose()?;
            let disposition = shape
                .disposition
                .map(|d| {
                    Disposition::parse(&d).ok_or_else(|| {
                        invalid(format!(
                            "{name}: unknown disposition \"{d}\" (one of {})",
                            Disposition::ALL.map(Disposition::as_str).join(", ")
                        ))
                    })
                })
                .transpose()?;
            rules.push(Rule {
                name,
                keywords: shape.keywords.iter().map(|k| padded(k)).collect(),
                pattern,
                reply: shape.reply,
                actions: shape.actions,
                disposition,
            });
        }
        Ok(Self {
            fallback: file.fallback,
            greeting: file.greeting,
            rules,
        })
    }

    /// The first rule matching `text`, with its named groups.
    fn matching(&self, text: &str) -> Option<(&Rule, BTreeMap<String, String>)> {
        let norm = padded(text);
        self.rules.iter().find_map(|rule| {
            if let Some(re) = &rule.pattern
                && let Some(caps) = re.captures(text)
            {
                let groups = re
                    .capture_names()
                    .flatten()
                    .filter_map(|n| caps.name(n).map(|m| (n.to_owned(), m.as_str().to_owned())))
                    .collect();
                return Some((rule, groups));
            }
            rule.keywords
                .iter()
                .any(|k| norm.contains(k.as_str()))
                .then(|| (rule, BTreeMap::new()))
        })
    }

    /// The turn for `request`.
    pub fn reply(&self, request: &AgentRequest) -> AgentReply {
        let Some(text) = request.last_person_text() else {
            let greeting = request
                .profile
                .greeting
                .as_deref()
                .or(self.greeting.as_deref())
                .unwrap_or("Hello!");
            return AgentReply {
                text: fill(greeting, &BTreeMap::new(), request),
                ..AgentReply::default()
            };
        };
        match self.matching(text) {
            Some((rule, groups)) => AgentReply {
                text: fill(&rule.reply, &groups, request),
                actions: rule.actions.clone(),
                remember: groups,
                disposition: rule.disposition,
                ..AgentReply::default()
            },
            None => AgentReply {
                text: fill(&self.fallback, &BTreeMap::new(), request),
                ..AgentReply::default()
            },
        }
    }

    /// A plain summary: the person's turn count and the last disposition a rule gave.
    pub fn summarize(&self, request: &AgentRequest) -> Summary {
        let said: Vec<&str> = request
            .history
            .iter()
            .filter(|t| t.speaker == Speaker::Person)
            .map(|t| t.text.as_str())
            .collect();
        let disposition = if said.is_empty() {
            Disposition::NoResponse
        } else {
            said.iter()
                .rev()
                .find_map(|t| self.matching(t).and_then(|(r, _)| r.disposition))
                .unwrap_or(Disposition::Other)
        };
        let summary = match said.last() {
            None => "The person did not reply.".to_owned(),
            Some(last) => {
                let rules: Vec<&str> = said
                    .iter()
                    .filter_map(|t| self.matching(t).map(|(r, _)| r.name.as_str()))
                    .collect();
                format!(
                    "{} message(s) from the person; topics: {}; last: \"{}\".",
                    said.len(),
                    if rules.is_empty() {
                        "none recognised".to_owned()
                    } else {
                        rules.join(", ")
                    },
                    crate::truncate_reply(last, 120)
                )
            }
        };
        Summary {
            summary,
            disposition,
            usage: Default::default(),
        }
    }
}

/// Lower case, punctuation to spaces (apostrophes kept), single spaces, padded with spaces so
/// `contains(" hi ")` matches whole words only.
fn padded(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(' ');
    for word in text
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
    {
        out.push_str(&word.to_lowercase());
        out.push(' ');
    }
    out
}

/// Fills `{{slot}}` / `{{slot|default}}` from this turn's groups, memory, then the contact.
fn fill(template: &str, groups: &BTreeMap<String, String>, request: &AgentRequest) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        let (key, default) = match inner.split_once('|') {
            Some((k, d)) => (k.trim(), d),
            None => (inner.trim(), ""),
        };
        let value = groups
            .get(key)
            .or_else(|| request.memory.get(key))
            .or_else(|| request.contact.get(key))
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
            .unwrap_or(default);
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    // An empty slot leaves "Thanks , bye" behind; tidy the spacing.
    let tidy = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut tidy = tidy
        .replace(" ,", ",")
        .replace(" .", ".")
        .replace(" !", "!");
    for (doubled, single) in [(",.", "."), (",!", "!"), (",?", "?")] {
        tidy = tidy.replace(doubled, single);
    }
    tidy
}

/// The scripted agent: each profile's rules (its file, or the built-in rules).
#[derive(Debug, Clone)]
pub struct ScriptedAgent {
    by_profile: HashMap<String, Arc<ScriptedRules>>,
    default: Arc<ScriptedRules>,
    /// Rules given inline by stored profiles (`rules_toml`), compiled once per text.
    inline: Arc<std::sync::Mutex<HashMap<String, Arc<ScriptedRules>>>>,
}

/// Inline rule sets kept compiled; past this the cache starts again (profiles are few, but
/// every edit is a new text).
const INLINE_CACHE: usize = 64;

impl Default for ScriptedAgent {
    fn default() -> Self {
        Self {
            by_profile: HashMap::new(),
            default: Arc::new(ScriptedRules::builtin()),
            inline: Arc::new(std::sync::Mutex::new(HashMap::new())),
        }
    }
}

impl ScriptedAgent {
    /// Loads every profile's rules file; profiles without one use the built-in rules.
    pub fn from_directory(directory: &AgentDirectory) -> Result<Self, RulesError> {
        let mut agent = Self::default();
        for profile in directory.profiles() {
            if let Some(path) = &profile.rules {
                agent
                    .by_profile
                    .insert(profile.name.clone(), Arc::new(ScriptedRules::load(path)?));
            }
        }
        Ok(agent)
    }

    fn rules_for(&self, request: &AgentRequest) -> Arc<ScriptedRules> {
        if let Some(text) = &request.profile.rules_toml {
            let mut cache = self
                .inline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(rules) = cache.get(text) {
                return rules.clone();
            }
            // Checked when the profile was saved; a text that no longer compiles (a newer
            // version of this code) falls back to the built-in rules rather than failing turns.
            match ScriptedRules::parse(text, Path::new("<profile rules>")) {
                Ok(rules) => {
                    if cache.len() >= INLINE_CACHE {
                        cache.clear();
                    }
                    let rules = Arc::new(rules);
                    cache.insert(text.clone(), rules.clone());
                    return rules;
                }
                Err(e) => {
                    tracing::warn!(profile = %request.profile.name, error = %e, "a profile's rules do not compile; using the built-in rules");
                    return self.default.clone();
                }
            }
        }
        self.by_profile
            .get(&request.profile.name)
            .unwrap_or(&self.default)
            .clone()
    }
}

impl Agent for ScriptedAgent {
    fn name(&self) -> String {
        "scripted".to_owned()
    }

    fn reply<'a>(
        &'a self,
        request: &'a AgentRequest,
    ) -> BoxFuture<'a, Result<AgentReply, AgentError>> {
        let reply = self.rules_for(request).reply(request);
        async move { Ok(reply) }.boxed()
    }

    /// Word by word, like a model's tokens, so live sessions are testable offline.
    fn reply_streaming<'a>(
        &'a self,
        request: &'a AgentRequest,
        on_delta: &'a mut (dyn FnMut(&str) + Send),
    ) -> BoxFuture<'a, Result<AgentReply, AgentError>> {
        let reply = self.rules_for(request).reply(request);
        async move {
            for word in words(&reply.text) {
                on_delta(word);
                // Lets the receiver run between words, as it would between a model's tokens.
                tokio::task::yield_now().await;
            }
            Ok(reply)
        }
        .boxed()
    }

    fn summarize<'a>(
        &'a self,
        request: &'a AgentRequest,
    ) -> BoxFuture<'a, Result<Summary, AgentError>> {
        let summary = self.rules_for(request).summarize(request);
        async move { Ok(summary) }.boxed()
    }
}

/// `text` cut after each run of whitespace: the pieces joined are `text`.
pub(crate) fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let end = rest[word_end..]
            .find(|c: char| !c.is_whitespace())
            .map_or(rest.len(), |i| word_end + i);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::AgentProfile;

    #[test]
    fn words_rejoin_into_the_text() {
        let text = "Hello there!  How can I help?\n ";
        let pieces: Vec<&str> = words(text).collect();
        assert_eq!(
            pieces,
            ["Hello ", "there!  ", "How ", "can ", "I ", "help?\n "]
        );
        assert_eq!(pieces.concat(), text);
        assert_eq!(words("").count(), 0);
    }

    #[tokio::test]
    async fn the_scripted_agent_streams_word_by_word() {
        let agent = ScriptedAgent::default();
        let request = AgentRequest {
            profile: AgentProfile::default(),
            channel: crate::AgentChannel::Web,
            history: vec![crate::Turn::person("my name is Grace")],
            contact: Default::default(),
            memory: Default::default(),
            earlier_person_turns: 0,
        };
        let mut pieces = Vec::new();
        let reply = agent
            .reply_streaming(&request, &mut |p| pieces.push(p.to_owned()))
            .await
            .unwrap();
        assert!(pieces.len() > 2, "{pieces:?}");
        assert_eq!(pieces.concat(), reply.text);
    }
    use crate::types::{AgentChannel, Turn};

    fn request(history: Vec<Turn>) -> AgentRequest {
        AgentRequest {
            profile: AgentProfile::default(),
            channel: AgentChannel::Sms,
            history,
            contact: BTreeMap::from([("first_name".to_owned(), "Ada".to_owned())]),
            memory: BTreeMap::new(),
            earlier_person_turns: 0,
        }
    }

    #[test]
    fn builtin_rules_compile() {
        assert!(ScriptedRules::builtin().rules.len() > 5);
    }

    #[test]
    fn keywords_match_whole_words_in_order() {
        let rules = ScriptedRules::builtin();
        let hello = rules.reply(&request(vec![Turn::person("Hi!")]));
        assert_eq!(hello.text, "Hello Ada! How can I help you today?");
        // "this" contains "hi" but is not the word "hi": the fallback answers.
        let other = rules.reply(&request(vec![Turn::person("this thing")]));
        assert_eq!(other.text, rules.fallback);
        let stop = rules.reply(&request(vec![Turn::person("I'm NOT interested, thanks")]));
        assert_eq!(stop.actions[0], AgentAction::OptOut);
        assert_eq!(stop.disposition, Some(Disposition::NotInterested));
    }

    #[test]
    fn greeting_when_nobody_spoke_yet() {
        let rules = ScriptedRules::builtin();
        let r = rules.reply(&request(vec![]));
        assert!(r.text.starts_with("Hello Ada!"), "{}", r.text);
    }

    #[test]
    fn named_groups_are_remembered_and_recalled() {
        let rules = ScriptedRules::builtin();
        let intro = rules.reply(&request(vec![Turn::person("my name is Grace")]));
        assert_eq!(intro.text, "Nice to meet you, Grace! How can I help?");
        assert_eq!(
            intro.remember.get("name").map(String::as_str),
            Some("Grace")
        );

        let mut later = request(vec![Turn::person("what's my name?")]);
        let unknown = rules.reply(&later);
        assert!(unknown.text.contains("not something"), "{}", unknown.text);
        later.memory = intro.remember;
        assert_eq!(rules.reply(&later).text, "You told me your name is Grace.");
    }

    #[test]
    fn empty_slots_leave_tidy_text() {
        let mut req = request(vec![Turn::person("bye")]);
        req.contact.clear();
        let r = ScriptedRules::builtin().reply(&req);
        assert_eq!(r.text, "Thanks for talking with us. Goodbye!");
    }

    #[test]
    fn invalid_rules_name_the_rule() {
        let err = ScriptedRules::parse(
            "fallback = \"x\"\n[[rules]]\nname = \"bad\"\npattern = \"(\"\nreply = \"y\"\n",
            Path::new("r.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bad: pattern"), "{err}");
        let err = ScriptedRules::parse(
            "fallback = \"x\"\n[[rules]]\nkeywords = [\"a\"]\nreply = \"y\"\ndisposition = \"meh\"\n",
            Path::new("r.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown disposition"), "{err}");
    }

    #[test]
    fn summary_takes_the_last_disposition() {
        let rules = ScriptedRules::builtin();
        let s = rules.summarize(&request(vec![
            Turn::person("hello"),
            Turn::agent("Hello!"),
            Turn::person("tell me more"),
            Turn::agent("..."),
            Turn::person("call me tomorrow"),
        ]));
        assert_eq!(s.disposition, Disposition::Callback);
        assert!(s.summary.starts_with("3 message(s)"), "{}", s.summary);
        assert_eq!(
            rules.summarize(&request(vec![])).disposition,
            Disposition::NoResponse
        );
    }
}
