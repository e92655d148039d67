//! The in-memory store behind [`Shared::store`](crate::state::Shared::store): messages and
//! their indexes, number settings, WhatsApp sessions and templates, opt-outs and the
//! simulated clock.
//!
//! Campaign runs put hundreds of thousands of messages through here, so the layout is about
//! size and lookups. Strings that repeat across messages (numbers, bodies, service SIDs) are
//! interned once and referred to by a 4-byte [`Sym`]; a SID carries its message's position,
//! so finding a message needs no SID index; a status-callback URL is dropped once its last
//! callback is out. Every per-number query (the REST `To` filter, the ledger, counts,
//! duplicates, missing numbers) goes through the `by_to` index instead of scanning all
//! messages. Answers that may be large copy out shared [`Text`] handles, so they are
//! serialised after the lock is released.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::state::{Direction, MessageStatus, NumberConfig};
use crate::util::{bare_number, pool_number};
use crate::whatsapp::{self, ContentTemplate};

/// An interned string: an index into the store's string table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Sym(u32);

/// Each distinct string once. Strings are never removed (a reset drops the whole store), so
/// a [`Sym`] stays valid for the store's life.
#[derive(Default)]
struct Interner {
    ids: HashMap<Arc<str>, Sym>,
    strings: Vec<Arc<str>>,
}

impl Interner {
    fn intern(&mut self, value: &str) -> Sym {
        if let Some(&sym) = self.ids.get(value) {
            return sym;
        }
        let sym = Sym(u32::try_from(self.strings.len()).expect("fewer than 2^32 distinct strings"));
        let shared: Arc<str> = Arc::from(value);
        self.strings.push(Arc::clone(&shared));
        self.ids.insert(shared, sym);
        sym
    }

    /// The symbol of `value` if it was ever stored; lookups must not grow the table.
    fn get(&self, value: &str) -> Option<Sym> {
        self.ids.get(value).copied()
    }

    fn resolve(&self, sym: Sym) -> &str {
        &self.strings[sym.0 as usize]
    }

    fn shared(&self, sym: Sym) -> Text {
        Text(Arc::clone(&self.strings[sym.0 as usize]))
    }
}

/// A stored string shared with the store: copying it out is a reference-count increment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Text(Arc<str>);

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A message SID: `SM` (`MM` with media) followed by 32 lowercase hex digits.
///
/// The last 8 hex digits are the message's position in the store and the other 24 are
/// random, so a lookup is an array access plus a comparison: no SID index to keep (it would
/// cost ~50 bytes per message at campaign scale), and SIDs from before a reset never match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MessageSid {
    media: bool,
    /// Two halves rather than a `u128`, whose 16-byte alignment would pad every message.
    value: [u64; 2],
}

impl MessageSid {
    fn index(self) -> u32 {
        // Truncation keeps exactly the position bits.
        (self.value[1] & u64::from(u32::MAX)) as u32
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        let media = match text.get(..2)? {
            "SM" => false,
            "MM" => true,
            _ => return None,
        };
        let hex = &text[2..];
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let high = u64::from_str_radix(&hex[..16], 16).ok()?;
        let low = u64::from_str_radix(&hex[16..], 16).ok()?;
        Some(Self {
            media,
            value: [high, low],
        })
    }
}

impl fmt::Display for MessageSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.media { "MM" } else { "SM" };
        write!(f, "{prefix}{:016x}{:016x}", self.value[0], self.value[1])
    }
}

/// One stored message, outbound (REST-created) or inbound (injected).
pub(crate) struct Message {
    pub(crate) sid: MessageSid,
    pub(crate) direction: Direction,
    pub(crate) status: MessageStatus,
    /// Deleted through the REST API: hidden there, still in the ledger.
    pub(crate) deleted: bool,
    pub(crate) num_segments: u16,
    pub(crate) error_code: Option<u32>,
    pub(crate) to: Sym,
    pub(crate) from: Option<Sym>,
    /// The text sent; for a registered Content template, the rendered text.
    pub(crate) body: Sym,
    pub(crate) messaging_service_sid: Option<Sym>,
    pub(crate) content: Option<ContentRef>,
    pub(crate) date_created: DateTime<Utc>,
    pub(crate) date_updated: DateTime<Utc>,
    pub(crate) date_sent: Option<DateTime<Utc>>,
    /// Dropped after the last status change, as nothing needs it any more.
    pub(crate) status_callback: Option<Box<str>>,
    /// Rarely present, so boxed to keep the common message small.
    pub(crate) extra: Option<Box<Extra>>,
}

/// The Content template a message was created with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContentRef {
    pub(crate) sid: Sym,
    /// `ContentVariables` as the client sent it.
    pub(crate) variables: Option<Sym>,
}

/// Parts of a message few messages have.
#[derive(Debug, Default)]
pub(crate) struct Extra {
    pub(crate) media_urls: Vec<String>,
    /// Webhook URL and parameters of an inbound message, kept so it can be re-delivered
    /// identically.
    pub(crate) inbound: Option<InboundDelivery>,
}

/// How an inbound message was delivered.
#[derive(Debug, Clone)]
pub(crate) struct InboundDelivery {
    pub(crate) url: String,
    pub(crate) params: Vec<(String, String)>,
}

/// What [`Store::insert`] needs, borrowed; the store interns what it keeps.
pub(crate) struct NewRecord<'a> {
    pub(crate) direction: Direction,
    pub(crate) status: MessageStatus,
    pub(crate) to: &'a str,
    pub(crate) from: Option<&'a str>,
    pub(crate) body: &'a str,
    pub(crate) messaging_service_sid: Option<&'a str>,
    /// `ContentSid` and the raw `ContentVariables`.
    pub(crate) content: Option<(&'a str, Option<&'a str>)>,
    pub(crate) num_segments: usize,
    pub(crate) status_callback: Option<&'a str>,
    pub(crate) media_urls: Vec<String>,
    pub(crate) inbound: Option<InboundDelivery>,
    pub(crate) now: DateTime<Utc>,
    pub(crate) date_sent: Option<DateTime<Utc>>,
}

/// What a status change needs to build its callback, copied out so the lock can be released.
pub(crate) struct Advanced {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) messaging_service_sid: Option<String>,
    pub(crate) error_code: Option<u32>,
    pub(crate) status_callback: Option<String>,
}

/// Message filters of the list endpoint; dates compare on the UTC calendar day of `date_sent`.
#[derive(Debug, Default)]
pub(crate) struct ListFilter {
    pub(crate) to: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) date_sent: Option<NaiveDate>,
    pub(crate) date_sent_before: Option<NaiveDate>,
    pub(crate) date_sent_after: Option<NaiveDate>,
}

/// Message indexes of one destination, ascending. Most campaign numbers get one message, so
/// that case needs no allocation, and the box keeps every entry at 16 bytes.
#[derive(Default)]
enum Postings {
    #[default]
    None,
    One(u32),
    #[allow(
        clippy::box_collection,
        reason = "a bare Vec would make every entry 24 bytes"
    )]
    Many(Box<Vec<u32>>),
}

impl Postings {
    fn push(&mut self, index: u32) {
        match self {
            Self::None => *self = Self::One(index),
            Self::One(first) => *self = Self::Many(Box::new(vec![*first, index])),
            Self::Many(all) => all.push(index),
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Self::None => &[],
            Self::One(index) => std::slice::from_ref(index),
            Self::Many(all) => all,
        }
    }
}

/// Outbound message counts, as the ledger reports them.
pub(crate) struct LedgerCounts {
    pub(crate) total: usize,
    /// Unsorted: the caller sorts after releasing the lock.
    pub(crate) by_to: Vec<(Text, usize)>,
    pub(crate) by_status: BTreeMap<&'static str, usize>,
}

/// One outbound message, copied out of the store for the ledger.
pub(crate) struct LedgerRecord {
    pub(crate) sid: MessageSid,
    pub(crate) from: Option<Text>,
    pub(crate) to: Text,
    pub(crate) body: Text,
    pub(crate) content_sid: Option<Text>,
    pub(crate) content_variables: Option<Text>,
    pub(crate) status: MessageStatus,
    pub(crate) error_code: Option<u32>,
    pub(crate) messaging_service_sid: Option<Text>,
    pub(crate) num_segments: u16,
    pub(crate) date_created: DateTime<Utc>,
    pub(crate) date_updated: DateTime<Utc>,
}

/// A destination that received the same content more than once.
pub(crate) struct Duplicate {
    pub(crate) to: Text,
    pub(crate) body: Text,
    pub(crate) content_sid: Option<Text>,
    pub(crate) content_variables: Option<Text>,
    pub(crate) sids: Vec<MessageSid>,
}

/// What makes two messages "the same" for duplicate detection: the body of a free-form
/// message, or the template and its variables (in canonical form) of a template message.
#[derive(PartialEq, Eq, Hash)]
enum ContentKey {
    Body(Sym),
    Template(Sym, Option<String>),
}

/// A WhatsApp session window, in the direction of the inbound message that opened it.
pub(crate) struct Session<'a> {
    /// The user.
    pub(crate) from: &'a str,
    /// Our sender.
    pub(crate) to: &'a str,
    pub(crate) last_inbound_at: DateTime<Utc>,
}

/// The mutable state behind the store lock.
#[derive(Default)]
pub(crate) struct Store {
    strings: Interner,
    /// Messages in creation order; lists walk it backwards (Twilio lists newest first).
    messages: Vec<Message>,
    /// Indexed by [`Sym`] of the destination: symbols are dense, so a vector beats a map.
    by_to: Vec<Postings>,
    /// Destinations with at least two outbound messages: the only candidates for duplicates.
    repeated: HashSet<Sym>,
    outbound_total: usize,
    outbound_by_status: [usize; MessageStatus::ALL.len()],
    numbers: BTreeMap<String, NumberConfig>,
    /// Acceptance times per sender within the last second.
    rate_windows: HashMap<String, VecDeque<Instant>>,
    /// Last inbound WhatsApp message per (our sender, user), on the simulated clock.
    sessions: HashMap<(Sym, Sym), DateTime<Utc>>,
    /// (our sender, user) pairs where the user texted STOP.
    opted_out: HashSet<(Sym, Sym)>,
    /// Creates refused with 21610, so tests can tell "the app never tried" from "Twilio
    /// refused it".
    opt_out_refusals: u64,
    templates: BTreeMap<String, ContentTemplate>,
    /// Added to the wall clock for time-dependent rules (the WhatsApp window).
    clock_offset: TimeDelta,
}

impl Store {
    pub(crate) fn str(&self, sym: Sym) -> &str {
        self.strings.resolve(sym)
    }

    pub(crate) fn opt_str(&self, sym: Option<Sym>) -> Option<&str> {
        sym.map(|sym| self.strings.resolve(sym))
    }

    pub(crate) fn text(&self, sym: Sym) -> Text {
        self.strings.shared(sym)
    }

    pub(crate) fn opt_text(&self, sym: Option<Sym>) -> Option<Text> {
        sym.map(|sym| self.strings.shared(sym))
    }

    /// The SID of the next message to be inserted; insert it before releasing the lock.
    pub(crate) fn new_sid(&self, media: bool) -> MessageSid {
        let index = u32::try_from(self.messages.len()).expect("fewer than 2^32 messages");
        let high: u64 = rand::random();
        let low = (u64::from(rand::random::<u32>()) << 32) | u64::from(index);
        MessageSid {
            media,
            value: [high, low],
        }
    }

    /// Stores a message under `sid` (from [`Store::new_sid`]) and indexes it; returns its
    /// position for [`Store::message_at`].
    pub(crate) fn insert(&mut self, sid: MessageSid, record: NewRecord<'_>) -> u32 {
        let index = sid.index();
        assert_eq!(
            index as usize,
            self.messages.len(),
            "a SID from new_sid, inserted before any other message"
        );
        let strings = &mut self.strings;
        let to = strings.intern(record.to);
        let content = record.content.map(|(content_sid, variables)| ContentRef {
            sid: strings.intern(content_sid),
            variables: variables.map(|v| strings.intern(v)),
        });
        let extra = (!record.media_urls.is_empty() || record.inbound.is_some()).then(|| {
            Box::new(Extra {
                media_urls: record.media_urls,
                inbound: record.inbound,
            })
        });
        self.messages.push(Message {
            sid,
            direction: record.direction,
            status: record.status,
            deleted: false,
            num_segments: u16::try_from(record.num_segments).unwrap_or(u16::MAX),
            error_code: None,
            to,
            from: record.from.map(|from| strings.intern(from)),
            body: strings.intern(record.body),
            messaging_service_sid: record.messaging_service_sid.map(|s| strings.intern(s)),
            content,
            date_created: record.now,
            date_updated: record.now,
            date_sent: record.date_sent,
            status_callback: record.status_callback.map(Box::from),
            extra,
        });
        let slot = to.0 as usize;
        if self.by_to.len() <= slot {
            // Grows with the string table; non-destination strings cost an empty entry.
            self.by_to
                .resize_with(self.strings.strings.len(), Postings::default);
        }
        let postings = &mut self.by_to[slot];
        postings.push(index);
        if record.direction == Direction::OutboundApi {
            self.outbound_total += 1;
            self.outbound_by_status[record.status as usize] += 1;
            // Counting stops at two and repeated numbers skip it, so even a destination with
            // many inbound messages is scanned at most twice.
            if !self.repeated.contains(&to) {
                let outbound = postings
                    .as_slice()
                    .iter()
                    .filter(|&&i| self.messages[i as usize].direction == Direction::OutboundApi)
                    .take(2)
                    .count();
                if outbound >= 2 {
                    self.repeated.insert(to);
                }
            }
        }
        index
    }

    pub(crate) fn message_at(&self, index: u32) -> &Message {
        &self.messages[index as usize]
    }

    fn index_of_sid(&self, sid: MessageSid) -> Option<u32> {
        let index = sid.index();
        self.messages
            .get(index as usize)
            .is_some_and(|message| message.sid == sid)
            .then_some(index)
    }

    /// Position of a message in creation order, for paging cursors.
    pub(crate) fn index_of(&self, sid: &str) -> Option<u32> {
        MessageSid::parse(sid).and_then(|sid| self.index_of_sid(sid))
    }

    pub(crate) fn get(&self, sid: &str) -> Option<&Message> {
        self.index_of(sid)
            .map(|index| &self.messages[index as usize])
    }

    /// The message as the REST API sees it (deleted ones are gone).
    pub(crate) fn get_visible(&self, sid: &str) -> Option<&Message> {
        self.get(sid).filter(|m| !m.deleted)
    }

    /// Deletes a message from the REST view; false if there was none.
    pub(crate) fn hide(&mut self, sid: &str) -> bool {
        match self.index_of(sid) {
            Some(index) if !self.messages[index as usize].deleted => {
                self.messages[index as usize].deleted = true;
                true
            }
            _ => false,
        }
    }

    /// Moves a message to `status`; None if it is gone (reset). `last` marks the final
    /// change, after which the callback URL is released.
    pub(crate) fn advance(
        &mut self,
        sid: MessageSid,
        status: MessageStatus,
        error_code: Option<u32>,
        now: DateTime<Utc>,
        last: bool,
    ) -> Option<Advanced> {
        let index = self.index_of_sid(sid)?;
        let message = &mut self.messages[index as usize];
        if message.direction == Direction::OutboundApi {
            self.outbound_by_status[message.status as usize] -= 1;
            self.outbound_by_status[status as usize] += 1;
        }
        message.status = status;
        message.date_updated = now;
        if status == MessageStatus::Sent {
            message.date_sent = Some(now);
        }
        if matches!(status, MessageStatus::Failed | MessageStatus::Undelivered) {
            message.error_code = error_code;
        }
        if message.from.is_none()
            && let Some(service) = message.messaging_service_sid
        {
            // The Messaging Service "picks" its sender once the message leaves `accepted`.
            let to = self.strings.resolve(message.to);
            let sender = pool_number(self.strings.resolve(service), whatsapp::is_whatsapp(to));
            message.from = Some(self.strings.intern(&sender));
        }
        let status_callback = if last {
            message.status_callback.take().map(String::from)
        } else {
            message.status_callback.as_deref().map(str::to_owned)
        };
        let message = &self.messages[index as usize];
        Some(Advanced {
            from: self.opt_str(message.from).unwrap_or_default().to_owned(),
            to: self.str(message.to).to_owned(),
            messaging_service_sid: self
                .opt_str(message.messaging_service_sid)
                .map(str::to_owned),
            error_code: message.error_code,
            status_callback,
        })
    }

    /// Message indexes sent to `to`, oldest first.
    fn postings(&self, to: &str) -> &[u32] {
        self.strings
            .get(to)
            .map_or(&[], |sym| self.postings_of(sym))
    }

    fn postings_of(&self, to: Sym) -> &[u32] {
        self.by_to
            .get(to.0 as usize)
            .map_or(&[], Postings::as_slice)
    }

    fn is_outbound(&self, index: u32) -> bool {
        self.messages[index as usize].direction == Direction::OutboundApi
    }

    /// Visible messages matching `filter`, newest first, created before the message at
    /// `before` if given (the paging cursor).
    pub(crate) fn list<'a>(
        &'a self,
        filter: &ListFilter,
        before: Option<u32>,
    ) -> Box<dyn Iterator<Item = &'a Message> + 'a> {
        let from = match filter.from.as_deref() {
            None => None,
            Some(from) => match self.strings.get(from) {
                Some(sym) => Some(sym),
                None => return Box::new(std::iter::empty()),
            },
        };
        let days = (
            filter.date_sent,
            filter.date_sent_before,
            filter.date_sent_after,
        );
        let keep = move |message: &&Message| {
            !message.deleted
                && from.is_none_or(|from| message.from == Some(from))
                && sent_within(message, days)
        };
        let end = before.map_or(self.messages.len(), |index| index as usize);
        match filter.to.as_deref() {
            Some(to) => {
                let postings = self.postings(to);
                let cut = postings.partition_point(|&i| (i as usize) < end);
                Box::new(
                    postings[..cut]
                        .iter()
                        .rev()
                        .map(|&i| &self.messages[i as usize])
                        .filter(keep),
                )
            }
            None => Box::new(self.messages[..end].iter().rev().filter(keep)),
        }
    }

    /// Outbound messages (the campaign ledger), oldest first, all or to one destination.
    pub(crate) fn outbound<'a>(
        &'a self,
        to: Option<&str>,
    ) -> Box<dyn Iterator<Item = &'a Message> + 'a> {
        let is_outbound = |message: &&Message| message.direction == Direction::OutboundApi;
        match to {
            None => Box::new(self.messages.iter().filter(is_outbound)),
            Some(to) => Box::new(
                self.postings(to)
                    .iter()
                    .map(|&i| &self.messages[i as usize])
                    .filter(is_outbound),
            ),
        }
    }

    /// The ledger (outbound messages, oldest first, all or to one destination), copied out.
    pub(crate) fn ledger(&self, to: Option<&str>) -> Vec<LedgerRecord> {
        self.outbound(to)
            .map(|message| LedgerRecord {
                sid: message.sid,
                from: self.opt_text(message.from),
                to: self.text(message.to),
                body: self.text(message.body),
                content_sid: message.content.map(|c| self.text(c.sid)),
                content_variables: message.content.and_then(|c| self.opt_text(c.variables)),
                status: message.status,
                error_code: message.error_code,
                messaging_service_sid: self.opt_text(message.messaging_service_sid),
                num_segments: message.num_segments,
                date_created: message.date_created,
                date_updated: message.date_updated,
            })
            .collect()
    }

    /// Outbound totals, per destination and per status; for one destination if `to` is given.
    /// `with_by_to: false` leaves `by_to` empty (it costs a pass over every number).
    pub(crate) fn counts(&self, to: Option<&str>, with_by_to: bool) -> LedgerCounts {
        let mut by_status = BTreeMap::new();
        let mut by_to = Vec::new();
        let total;
        if let Some(to) = to {
            let mut statuses = [0usize; MessageStatus::ALL.len()];
            total = self
                .outbound(Some(to))
                .inspect(|m| statuses[m.status as usize] += 1)
                .count();
            if let Some(to) = self.strings.get(to).filter(|_| total > 0 && with_by_to) {
                by_to.push((self.text(to), total));
            }
            add_statuses(&mut by_status, &statuses);
        } else {
            total = self.outbound_total;
            add_statuses(&mut by_status, &self.outbound_by_status);
            let slots = if with_by_to { &self.by_to[..] } else { &[] };
            for (slot, postings) in slots.iter().enumerate() {
                let count = match postings {
                    Postings::None => 0,
                    Postings::One(index) => usize::from(self.is_outbound(*index)),
                    Postings::Many(all) => all.iter().filter(|&&i| self.is_outbound(i)).count(),
                };
                if count > 0 {
                    let sym = Sym(u32::try_from(slot).expect("slots are symbols"));
                    by_to.push((self.text(sym), count));
                }
            }
        }
        LedgerCounts {
            total,
            by_to,
            by_status,
        }
    }

    /// Destinations that received the same content more than once, by destination. Only
    /// destinations with two or more outbound messages are looked at, so the cost follows the
    /// number of repeats, not the size of the ledger.
    pub(crate) fn duplicates(
        &self,
        body: Option<&str>,
        content_sid: Option<&str>,
    ) -> Vec<Duplicate> {
        // A filter value never stored cannot match anything.
        let (body, content_sid) = match (
            body.map(|b| self.strings.get(b)),
            content_sid.map(|c| self.strings.get(c)),
        ) {
            (Some(None), _) | (_, Some(None)) => return Vec::new(),
            (body, content_sid) => (body.flatten(), content_sid.flatten()),
        };
        let mut found = Vec::new();
        for &to in &self.repeated {
            let mut groups: HashMap<ContentKey, Vec<u32>> = HashMap::new();
            for &index in self.postings_of(to) {
                let message = &self.messages[index as usize];
                if message.direction != Direction::OutboundApi
                    || body.is_some_and(|body| body != message.body)
                    || content_sid.is_some_and(|sid| message.content.is_none_or(|c| c.sid != sid))
                {
                    continue;
                }
                groups
                    .entry(self.content_key(message))
                    .or_default()
                    .push(index);
            }
            for indexes in groups.into_values().filter(|group| group.len() > 1) {
                let first = &self.messages[indexes[0] as usize];
                found.push(Duplicate {
                    to: self.text(to),
                    body: self.text(first.body),
                    content_sid: first.content.map(|c| self.text(c.sid)),
                    content_variables: first.content.and_then(|c| self.opt_text(c.variables)),
                    sids: indexes
                        .iter()
                        .map(|&i| self.messages[i as usize].sid)
                        .collect(),
                });
            }
        }
        found.sort_by(|a, b| (&a.to, &a.body).cmp(&(&b.to, &b.body)));
        found
    }

    fn content_key(&self, message: &Message) -> ContentKey {
        match message.content {
            None => ContentKey::Body(message.body),
            Some(content) => ContentKey::Template(
                content.sid,
                self.opt_str(content.variables)
                    .map(whatsapp::canonical_variables),
            ),
        }
    }

    /// The numbers among `numbers` that received no outbound message (with this body or
    /// template, if given).
    pub(crate) fn missing<'n>(
        &self,
        numbers: &'n [String],
        body: Option<&str>,
        content_sid: Option<&str>,
    ) -> Vec<&'n str> {
        let body = body.map(|b| self.strings.get(b));
        let content_sid = content_sid.map(|c| self.strings.get(c));
        let wanted = |message: &Message| {
            body.is_none_or(|body| body == Some(message.body))
                && content_sid.is_none_or(|sid| {
                    message
                        .content
                        .map(|c| c.sid)
                        .is_some_and(|c| Some(c) == sid)
                })
        };
        numbers
            .iter()
            .filter(|number| !self.outbound(Some(number)).any(wanted))
            .map(String::as_str)
            .collect()
    }

    pub(crate) fn number(&self, number: &str) -> Option<&NumberConfig> {
        self.numbers.get(number)
    }

    /// Settings for an address: its own, else those of its bare number (so
    /// `whatsapp:+1555…` uses `+1555…`'s settings unless it has its own).
    pub(crate) fn number_for(&self, address: &str) -> Option<&NumberConfig> {
        self.numbers
            .get(address)
            .or_else(|| self.numbers.get(bare_number(address)))
    }

    pub(crate) fn numbers(&self) -> &BTreeMap<String, NumberConfig> {
        &self.numbers
    }

    pub(crate) fn set_number(&mut self, number: String, config: NumberConfig) {
        self.numbers.insert(number, config);
    }

    pub(crate) fn remove_number(&mut self, number: &str) -> bool {
        self.numbers.remove(number).is_some()
    }

    /// Records one message for `sender` if the per-second limit `limit` (0 = none) allows it.
    pub(crate) fn admit(&mut self, sender: &str, limit: u32, now: Instant) -> bool {
        if limit == 0 {
            return true;
        }
        let window = self.rate_windows.entry(sender.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|&at| now.duration_since(at) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if window.len() >= limit as usize {
            return false;
        }
        window.push_back(now);
        true
    }

    /// The simulated time: the wall clock plus the admin-set offset.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    pub(crate) fn clock_offset(&self) -> TimeDelta {
        self.clock_offset
    }

    pub(crate) fn set_clock_offset(&mut self, offset: TimeDelta) {
        self.clock_offset = offset;
    }

    /// When `user` last wrote to our `sender` on WhatsApp (simulated clock).
    pub(crate) fn last_inbound(&self, sender: &str, user: &str) -> Option<DateTime<Utc>> {
        let key = (self.strings.get(sender)?, self.strings.get(user)?);
        self.sessions.get(&key).copied()
    }

    /// Opens (or moves) the session window of (`sender`, `user`), or closes it with None.
    pub(crate) fn set_session(&mut self, sender: &str, user: &str, at: Option<DateTime<Utc>>) {
        match at {
            Some(at) => {
                let key = (self.strings.intern(sender), self.strings.intern(user));
                self.sessions.insert(key, at);
            }
            None => {
                if let (Some(sender), Some(user)) =
                    (self.strings.get(sender), self.strings.get(user))
                {
                    self.sessions.remove(&(sender, user));
                }
            }
        }
    }

    pub(crate) fn sessions(&self) -> Vec<Session<'_>> {
        let mut sessions: Vec<Session<'_>> = self
            .sessions
            .iter()
            .map(|(&(sender, user), &at)| Session {
                from: self.strings.resolve(user),
                to: self.strings.resolve(sender),
                last_inbound_at: at,
            })
            .collect();
        sessions.sort_by(|a, b| (a.to, a.from).cmp(&(b.to, b.from)));
        sessions
    }

    /// Records that `user` opted out of (or back into) messages from `sender`.
    pub(crate) fn set_opted_out(&mut self, sender: &str, user: &str, opted_out: bool) {
        let key = (self.strings.intern(sender), self.strings.intern(user));
        if opted_out {
            self.opted_out.insert(key);
        } else {
            self.opted_out.remove(&key);
        }
    }

    pub(crate) fn count_opt_out_refusal(&mut self) {
        self.opt_out_refusals += 1;
    }

    pub(crate) fn opt_out_refusals(&self) -> u64 {
        self.opt_out_refusals
    }

    pub(crate) fn is_opted_out(&self, sender: &str, user: &str) -> bool {
        match (self.strings.get(sender), self.strings.get(user)) {
            (Some(sender), Some(user)) => self.opted_out.contains(&(sender, user)),
            _ => false,
        }
    }

    /// Opt-outs as (user, sender) pairs, i.e. in the direction of the STOP message.
    pub(crate) fn opt_outs(&self) -> Vec<(&str, &str)> {
        let mut pairs: Vec<(&str, &str)> = self
            .opted_out
            .iter()
            .map(|&(sender, user)| (self.strings.resolve(user), self.strings.resolve(sender)))
            .collect();
        pairs.sort_unstable();
        pairs
    }

    pub(crate) fn template(&self, sid: &str) -> Option<&ContentTemplate> {
        self.templates.get(sid)
    }

    pub(crate) fn templates(&self) -> &BTreeMap<String, ContentTemplate> {
        &self.templates
    }

    pub(crate) fn set_template(&mut self, sid: String, template: ContentTemplate) {
        self.templates.insert(sid, template);
    }

    pub(crate) fn remove_template(&mut self, sid: &str) -> bool {
        self.templates.remove(sid).is_some()
    }
}

fn add_statuses(into: &mut BTreeMap<&'static str, usize>, counts: &[usize]) {
    for (status, &count) in MessageStatus::ALL.iter().zip(counts) {
        if count > 0 {
            into.insert(status.as_str(), count);
        }
    }
}

type Days = (Option<NaiveDate>, Option<NaiveDate>, Option<NaiveDate>);

fn sent_within(message: &Message, (on, before, after): Days) -> bool {
    if on.is_none() && before.is_none() && after.is_none() {
        return true;
    }
    let Some(sent) = message.date_sent.map(|at| at.date_naive()) else {
        return false;
    };
    on.is_none_or(|day| sent == day)
        && before.is_none_or(|day| sent <= day)
        && after.is_none_or(|day| sent >= day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound<'a>(to: &'a str, body: &'a str) -> NewRecord<'a> {
        NewRecord {
            direction: Direction::OutboundApi,
            status: MessageStatus::Queued,
            to,
            from: Some("+15005550006"),
            body,
            messaging_service_sid: None,
            content: None,
            num_segments: 1,
            status_callback: Some("http://127.0.0.1:1/status"),
            media_urls: Vec::new(),
            inbound: None,
            now: Utc::now(),
            date_sent: None,
        }
    }

    fn add(store: &mut Store, record: NewRecord<'_>) -> MessageSid {
        let sid = store.new_sid(false);
        store.insert(sid, record);
        sid
    }

    #[test]
    fn sids_round_trip_through_text() {
        let store = Store::default();
        let sid = store.new_sid(true);
        let text = sid.to_string();
        assert!(crate::util::is_sid(&text, "MM"));
        assert_eq!(MessageSid::parse(&text), Some(sid));
        assert_eq!(MessageSid::parse("SMxyz"), None);
        assert_eq!(
            MessageSid::parse("XX00000000000000000000000000000000"),
            None
        );
    }

    #[test]
    fn sids_from_before_a_reset_do_not_match() {
        let mut old = Store::default();
        let sid = add(&mut old, outbound("+15550000001", "x"));
        let mut new = Store::default();
        add(&mut new, outbound("+15550000001", "x"));

        assert!(old.get(&sid.to_string()).is_some());
        assert!(new.get(&sid.to_string()).is_none());
        assert!(new.get("SM00000000000000000000000000000000").is_none());
    }

    #[test]
    fn messages_stay_small() {
        // The budget that lets a million messages fit in a few hundred megabytes.
        assert!(
            std::mem::size_of::<Message>() <= 144,
            "{}",
            std::mem::size_of::<Message>()
        );
    }

    #[test]
    fn duplicates_group_by_body_or_template_per_destination() {
        let mut store = Store::default();
        let a = add(&mut store, outbound("+15550000001", "hello"));
        let b = add(&mut store, outbound("+15550000001", "hello"));
        add(&mut store, outbound("+15550000001", "other"));
        add(&mut store, outbound("+15550000002", "hello"));
        for variables in [r#"{"1":"x", "2":"y"}"#, r#"{"2":"y","1":"x"}"#] {
            add(
                &mut store,
                NewRecord {
                    content: Some(("HXaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Some(variables))),
                    ..outbound("+15550000003", "")
                },
            );
        }

        let found = store.duplicates(None, None);

        assert_eq!(found.len(), 2);
        assert_eq!(&*found[0].to, "+15550000001");
        assert_eq!(&*found[0].body, "hello");
        assert_eq!(found[0].sids, [a, b]);
        assert_eq!(&*found[1].to, "+15550000003");
        assert_eq!(
            found[1].content_sid.as_deref(),
            Some("HXaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        );
        assert_eq!(store.duplicates(Some("other"), None).len(), 0);
        assert_eq!(store.duplicates(Some("never sent"), None).len(), 0);
        assert_eq!(store.duplicates(Some("hello"), None).len(), 1);
    }

    #[test]
    fn missing_numbers_are_those_without_the_content() {
        let mut store = Store::default();
        add(&mut store, outbound("+15550000001", "hello"));
        add(&mut store, outbound("+15550000002", "other"));
        let numbers: Vec<String> = ["+15550000001", "+15550000002", "+15550000003"]
            .map(str::to_owned)
            .to_vec();

        assert_eq!(store.missing(&numbers, None, None), ["+15550000003"]);
        assert_eq!(
            store.missing(&numbers, Some("hello"), None),
            ["+15550000002", "+15550000003"]
        );
    }

    #[test]
    fn status_counts_follow_transitions_and_callback_urls_are_released() {
        let mut store = Store::default();
        let sid = add(&mut store, outbound("+15550000001", "x"));

        let sent = store
            .advance(sid, MessageStatus::Sent, None, Utc::now(), false)
            .unwrap();
        let delivered = store
            .advance(sid, MessageStatus::Delivered, None, Utc::now(), true)
            .unwrap();

        assert!(sent.status_callback.is_some());
        assert!(delivered.status_callback.is_some());
        assert!(
            store
                .get(&sid.to_string())
                .unwrap()
                .status_callback
                .is_none()
        );
        let counts = store.counts(None, true);
        assert_eq!(counts.total, 1);
        assert_eq!(counts.by_status.get("delivered"), Some(&1));
        assert_eq!(counts.by_status.get("queued"), None);
        assert_eq!(store.counts(Some("+15550000001"), true).total, 1);
        assert_eq!(store.counts(Some("+15550000009"), true).total, 0);
    }

    #[test]
    fn paging_cursor_lists_only_older_messages() {
        let mut store = Store::default();
        let sids: Vec<MessageSid> = (0..4)
            .map(|i| {
                add(
                    &mut store,
                    outbound(
                        if i % 2 == 0 {
                            "+1555000000"
                        } else {
                            "+1555000001"
                        },
                        "x",
                    ),
                )
            })
            .collect();
        let filter = ListFilter {
            to: Some("+1555000000".to_owned()),
            ..ListFilter::default()
        };

        let all: Vec<MessageSid> = store.list(&filter, None).map(|m| m.sid).collect();
        let cursor = store.index_of(&sids[2].to_string());
        let older: Vec<MessageSid> = store.list(&filter, cursor).map(|m| m.sid).collect();

        assert_eq!(all, [sids[2], sids[0]]);
        assert_eq!(older, [sids[0]]);
    }
}
