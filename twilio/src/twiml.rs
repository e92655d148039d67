//! Typed TwiML builders producing byte-for-byte the same XML as Twilio's official libraries.
//!
//! Output format (matching twilio-python): `<?xml version="1.0" encoding="UTF-8"?>` followed by the document
//! with no whitespace, attributes sorted by name, empty elements as `<Hangup />`, booleans as `true`/`false`.
//! Text escapes `& < >`; attribute values also escape `"` and tab/CR/LF.
//!
//! ```
//! use voice_agent_twilio::twiml::{Gather, GatherInput, Say, VoiceResponse};
//!
//! let xml = VoiceResponse::new()
//!     .gather(
//!         Gather::new()
//!             .input(GatherInput::Speech)
//!             .action("/voice/turn")
//!             .say(Say::new("How can I help?")),
//!     )
//!     .hangup()
//!     .to_xml();
//! assert_eq!(
//!     xml,
//!     "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Gather action=\"/voice/turn\" \
//!      input=\"speech\"><Say>How can I help?</Say></Gather><Hangup /></Response>"
//! );
//! ```

use std::fmt;

use crate::HttpMethod;

/// `Content-Type` to serve TwiML with.
pub const CONTENT_TYPE: &str = "text/xml; charset=utf-8";

const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// A generic XML element; verbs convert into it so escaping and ordering live in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    name: &'static str,
    attrs: Vec<(&'static str, String)>,
    text: Option<String>,
    children: Vec<Element>,
}

impl Element {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            attrs: Vec::new(),
            text: None,
            children: Vec::new(),
        }
    }

    fn text(mut self, text: &str) -> Self {
        // Like twilio-python, an empty body is no body at all (`<Say />`).
        if !text.is_empty() {
            self.text = Some(text.to_owned());
        }
        self
    }

    fn attr(mut self, name: &'static str, value: Option<impl ToString>) -> Self {
        if let Some(value) = value {
            self.attrs.push((name, value.to_string()));
        }
        self
    }

    fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(self.name);
        let mut attrs: Vec<&(&str, String)> = self.attrs.iter().collect();
        attrs.sort_by_key(|(name, _)| *name);
        for (name, value) in attrs {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            escape_attr(value, out);
            out.push('"');
        }
        if self.text.is_none() && self.children.is_empty() {
            out.push_str(" />");
            return;
        }
        out.push('>');
        if let Some(text) = &self.text {
            escape_text(text, out);
        }
        for child in &self.children {
            child.write(out);
        }
        out.push_str("</");
        out.push_str(self.name);
        out.push('>');
    }
}

fn escape_text(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
}

fn escape_attr(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // Entity-encoded so XML attribute normalisation does not turn them into spaces.
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#09;"),
            _ => out.push(c),
        }
    }
}

fn render(children: &[Element]) -> String {
    let root = Element {
        children: children.to_vec(),
        ..Element::new("Response")
    };
    let mut out = String::from(XML_DECLARATION);
    root.write(&mut out);
    out
}

/// A voice `<Response>`: verbs run in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoiceResponse {
    verbs: Vec<Element>,
}

impl VoiceResponse {
    /// An empty response (`<Response />`): Twilio hangs up once it runs out of verbs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `<Say>`.
    pub fn say(self, say: impl Into<Say>) -> Self {
        self.push(say.into().element())
    }

    /// Appends `<Play>`.
    pub fn play(self, play: Play) -> Self {
        self.push(play.element())
    }

    /// Appends `<Gather>`.
    pub fn gather(self, gather: Gather) -> Self {
        self.push(gather.element())
    }

    /// Appends `<Pause>`.
    pub fn pause(self, pause: Pause) -> Self {
        self.push(pause.element())
    }

    /// Appends `<Hangup />`.
    pub fn hangup(self) -> Self {
        self.push(Element::new("Hangup"))
    }

    /// Appends `<Redirect>`; verbs after it never run.
    pub fn redirect(self, redirect: Redirect) -> Self {
        self.push(redirect.element())
    }

    /// Appends `<Dial>`.
    pub fn dial(self, dial: Dial) -> Self {
        self.push(dial.element())
    }

    /// Appends `<Record>`.
    pub fn record(self, record: Record) -> Self {
        self.push(record.element())
    }

    /// Appends `<Connect>`: the call stays in it until the connection ends, then goes to its
    /// `action` URL (or the next verb).
    pub fn connect(self, connect: Connect) -> Self {
        self.push(connect.element())
    }

    /// Serialises the document, XML declaration included.
    pub fn to_xml(&self) -> String {
        render(&self.verbs)
    }

    fn push(mut self, verb: Element) -> Self {
        self.verbs.push(verb);
        self
    }
}

impl fmt::Display for VoiceResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml())
    }
}

/// A messaging `<Response>`; an empty one means "no reply".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagingResponse {
    messages: Vec<Element>,
}

impl MessagingResponse {
    /// An empty response (`<Response />`): nothing is sent back.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a `<Message>` reply.
    pub fn message(mut self, message: impl Into<Message>) -> Self {
        self.messages.push(message.into().element());
        self
    }

    /// Serialises the document, XML declaration included.
    pub fn to_xml(&self) -> String {
        render(&self.messages)
    }
}

impl fmt::Display for MessagingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml())
    }
}

/// `<Say>`: text-to-speech.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Say {
    text: String,
    voice: Option<String>,
    language: Option<String>,
    loop_count: Option<u32>,
}

impl Say {
    /// Speaks `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }

    /// `voice`: `man`, `woman`, `alice`, `Polly.<Name>[-Neural]`, `Google.<lang>-…`.
    pub fn voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = Some(voice.into());
        self
    }

    /// `language`, e.g. `en-US` (Twilio's default).
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// `loop`: repetitions; 0 repeats until the call ends.
    pub fn loop_count(mut self, count: u32) -> Self {
        self.loop_count = Some(count);
        self
    }

    fn element(&self) -> Element {
        Element::new("Say")
            .text(&self.text)
            .attr("voice", self.voice.as_ref())
            .attr("language", self.language.as_ref())
            .attr("loop", self.loop_count)
    }
}

impl From<&str> for Say {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Say {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

/// `<Play>`: plays an audio file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Play {
    url: String,
    loop_count: Option<u32>,
}

impl Play {
    /// Plays the audio at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            loop_count: None,
        }
    }

    /// `loop`: repetitions; 0 repeats until the call ends.
    pub fn loop_count(mut self, count: u32) -> Self {
        self.loop_count = Some(count);
        self
    }

    fn element(&self) -> Element {
        Element::new("Play")
            .text(&self.url)
            .attr("loop", self.loop_count)
    }
}

/// `<Pause>`: silence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pause {
    length: Option<u32>,
}

impl Pause {
    /// A pause of Twilio's default length (1 s).
    pub fn new() -> Self {
        Self::default()
    }

    /// `length` in seconds.
    pub fn length(mut self, seconds: u32) -> Self {
        self.length = Some(seconds);
        self
    }

    fn element(&self) -> Element {
        Element::new("Pause").attr("length", self.length)
    }
}

/// `<Gather input>`: which inputs end the gather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatherInput {
    /// Keypad digits only (Twilio's default).
    Dtmf,
    /// Speech recognition only.
    Speech,
    /// Whichever comes first.
    DtmfSpeech,
}

impl GatherInput {
    fn as_str(self) -> &'static str {
        match self {
            Self::Dtmf => "dtmf",
            Self::Speech => "speech",
            Self::DtmfSpeech => "dtmf speech",
        }
    }
}

/// `<Gather speechTimeout>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechTimeout {
    /// `auto`: Twilio decides when the caller stopped talking.
    Auto,
    /// Seconds of silence that end speech input.
    Seconds(u32),
}

impl fmt::Display for SpeechTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Seconds(seconds) => write!(f, "{seconds}"),
        }
    }
}

/// `<Gather>`: collects digits or speech, posting the result to `action`.
///
/// With no input Twilio falls through to the next verb (or posts an empty result with
/// `actionOnEmptyResult`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gather {
    input: Option<GatherInput>,
    action: Option<String>,
    method: Option<HttpMethod>,
    timeout: Option<u32>,
    speech_timeout: Option<SpeechTimeout>,
    num_digits: Option<u32>,
    finish_on_key: Option<String>,
    language: Option<String>,
    hints: Option<String>,
    action_on_empty_result: Option<bool>,
    children: Vec<Element>,
}

impl Gather {
    /// A gather with Twilio's defaults (DTMF, posting to the current document URL).
    pub fn new() -> Self {
        Self::default()
    }

    /// `input`.
    pub fn input(mut self, input: GatherInput) -> Self {
        self.input = Some(input);
        self
    }

    /// `action`: URL receiving `Digits` / `SpeechResult`.
    pub fn action(mut self, url: impl Into<String>) -> Self {
        self.action = Some(url.into());
        self
    }

    /// `method` for `action`.
    pub fn method(mut self, method: HttpMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// `timeout`: seconds to wait for the first input.
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }

    /// `speechTimeout`.
    pub fn speech_timeout(mut self, timeout: SpeechTimeout) -> Self {
        self.speech_timeout = Some(timeout);
        self
    }

    /// `numDigits`: finish after this many digits.
    pub fn num_digits(mut self, digits: u32) -> Self {
        self.num_digits = Some(digits);
        self
    }

    /// `finishOnKey` (Twilio's default `#`; empty disables it).
    pub fn finish_on_key(mut self, key: impl Into<String>) -> Self {
        self.finish_on_key = Some(key.into());
        self
    }

    /// `language` of the expected speech.
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// `hints`: comma-separated words or phrases that bias recognition.
    pub fn hints(mut self, hints: impl Into<String>) -> Self {
        self.hints = Some(hints.into());
        self
    }

    /// `actionOnEmptyResult`: post to `action` even when nothing was gathered.
    pub fn action_on_empty_result(mut self, enabled: bool) -> Self {
        self.action_on_empty_result = Some(enabled);
        self
    }

    /// Nests a `<Say>` (the prompt; input may interrupt it).
    pub fn say(mut self, say: impl Into<Say>) -> Self {
        self.children.push(say.into().element());
        self
    }

    /// Nests a `<Play>`.
    pub fn play(mut self, play: Play) -> Self {
        self.children.push(play.element());
        self
    }

    /// Nests a `<Pause>`.
    pub fn pause(mut self, pause: Pause) -> Self {
        self.children.push(pause.element());
        self
    }

    fn element(&self) -> Element {
        let mut element = Element::new("Gather")
            .attr("input", self.input.map(GatherInput::as_str))
            .attr("action", self.action.as_ref())
            .attr("method", self.method.map(HttpMethod::as_str))
            .attr("timeout", self.timeout)
            .attr("speechTimeout", self.speech_timeout)
            .attr("numDigits", self.num_digits)
            .attr("finishOnKey", self.finish_on_key.as_ref())
            .attr("language", self.language.as_ref())
            .attr("hints", self.hints.as_ref())
            .attr("actionOnEmptyResult", self.action_on_empty_result);
        element.children.clone_from(&self.children);
        element
    }
}

/// `<Redirect>`: continues with the TwiML at another URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirect {
    url: String,
    method: Option<HttpMethod>,
}

impl Redirect {
    /// Fetches the next TwiML from `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            method: None,
        }
    }

    /// `method` used to fetch `url` (Twilio's default POST).
    pub fn method(mut self, method: HttpMethod) -> Self {
        self.method = Some(method);
        self
    }

    fn element(&self) -> Element {
        Element::new("Redirect")
            .text(&self.url)
            .attr("method", self.method.map(HttpMethod::as_str))
    }
}

/// `<Dial record>`: what to record of the bridged call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialRecord {
    /// `do-not-record` (Twilio's default).
    DoNotRecord,
    /// `record-from-answer`.
    FromAnswer,
    /// `record-from-ringing`.
    FromRinging,
    /// `record-from-answer-dual`: one channel per leg.
    FromAnswerDual,
    /// `record-from-ringing-dual`: one channel per leg.
    FromRingingDual,
}

impl DialRecord {
    fn as_str(self) -> &'static str {
        match self {
            Self::DoNotRecord => "do-not-record",
            Self::FromAnswer => "record-from-answer",
            Self::FromRinging => "record-from-ringing",
            Self::FromAnswerDual => "record-from-answer-dual",
            Self::FromRingingDual => "record-from-ringing-dual",
        }
    }
}

/// `<Dial>`: bridges the caller to a phone number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dial {
    number: String,
    caller_id: Option<String>,
    timeout: Option<u32>,
    action: Option<String>,
    method: Option<HttpMethod>,
    record: Option<DialRecord>,
}

impl Dial {
    /// Dials `number` (E.164).
    pub fn new(number: impl Into<String>) -> Self {
        Self {
            number: number.into(),
            ..Self::default()
        }
    }

    /// `callerId` shown to the callee.
    pub fn caller_id(mut self, caller_id: impl Into<String>) -> Self {
        self.caller_id = Some(caller_id.into());
        self
    }

    /// `timeout`: seconds to ring (Twilio's default 30).
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }

    /// `action`: URL receiving `DialCallStatus` when the dialled call ends.
    pub fn action(mut self, url: impl Into<String>) -> Self {
        self.action = Some(url.into());
        self
    }

    /// `method` for `action`.
    pub fn method(mut self, method: HttpMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// `record`.
    pub fn record(mut self, record: DialRecord) -> Self {
        self.record = Some(record);
        self
    }

    fn element(&self) -> Element {
        Element::new("Dial")
            .text(&self.number)
            .attr("callerId", self.caller_id.as_ref())
            .attr("timeout", self.timeout)
            .attr("action", self.action.as_ref())
            .attr("method", self.method.map(HttpMethod::as_str))
            .attr("record", self.record.map(DialRecord::as_str))
    }
}

/// `<Connect>` with a `<ConversationRelay>`: Twilio's speech recognition and synthesis, the
/// conversation itself over a WebSocket ([`crate::relay`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connect {
    action: Option<String>,
    method: Option<HttpMethod>,
    relay: ConversationRelay,
}

impl Connect {
    /// Connects the call to `relay`.
    pub fn relay(relay: ConversationRelay) -> Self {
        Self {
            relay,
            ..Self::default()
        }
    }

    /// `action`: requested when the session ends (with `HandoffData` after our `end`); its
    /// TwiML continues the call.
    pub fn action(mut self, url: impl Into<String>) -> Self {
        self.action = Some(url.into());
        self
    }

    /// `method` for `action`.
    pub fn method(mut self, method: HttpMethod) -> Self {
        self.method = Some(method);
        self
    }

    fn element(&self) -> Element {
        let mut element = Element::new("Connect")
            .attr("action", self.action.as_ref())
            .attr("method", self.method.map(HttpMethod::as_str));
        element.children.push(self.relay.element());
        element
    }
}

/// `<ConversationRelay>`: the attributes this project sets (the rest keep Twilio's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationRelay {
    url: String,
    welcome_greeting: Option<String>,
    welcome_greeting_interruptible: Option<String>,
    language: Option<String>,
    voice: Option<String>,
    tts_provider: Option<String>,
    transcription_provider: Option<String>,
    speech_model: Option<String>,
    interruptible: Option<String>,
    dtmf_detection: Option<bool>,
    parameters: Vec<(String, String)>,
}

impl ConversationRelay {
    /// A session on the WebSocket at `url` (`wss://…`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// `welcomeGreeting`: spoken as soon as the session starts.
    pub fn welcome_greeting(mut self, text: impl Into<String>) -> Self {
        self.welcome_greeting = Some(text.into());
        self
    }

    /// `welcomeGreetingInterruptible`: `none`, `dtmf`, `speech` or `any`.
    pub fn welcome_greeting_interruptible(mut self, value: impl Into<String>) -> Self {
        self.welcome_greeting_interruptible = Some(value.into());
        self
    }

    /// `language` of speech in and out (BCP 47).
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// `voice` of the text-to-speech provider.
    pub fn voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = Some(voice.into());
        self
    }

    /// `ttsProvider` (`ElevenLabs`, `Google`, `Amazon`).
    pub fn tts_provider(mut self, provider: impl Into<String>) -> Self {
        self.tts_provider = Some(provider.into());
        self
    }

    /// `transcriptionProvider` (`Deepgram`, `Google`).
    pub fn transcription_provider(mut self, provider: impl Into<String>) -> Self {
        self.transcription_provider = Some(provider.into());
        self
    }

    /// `speechModel` of the transcription provider.
    pub fn speech_model(mut self, model: impl Into<String>) -> Self {
        self.speech_model = Some(model.into());
        self
    }

    /// `interruptible`: what may cut our speech off (`none`, `dtmf`, `speech`, `any`).
    pub fn interruptible(mut self, value: impl Into<String>) -> Self {
        self.interruptible = Some(value.into());
        self
    }

    /// `dtmfDetection`: send key presses as `dtmf` messages.
    pub fn dtmf_detection(mut self, enabled: bool) -> Self {
        self.dtmf_detection = Some(enabled);
        self
    }

    /// A nested `<Parameter name value />`: arrives in `setup`'s `customParameters`.
    pub fn parameter(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parameters.push((name.into(), value.into()));
        self
    }

    fn element(&self) -> Element {
        let mut element = Element::new("ConversationRelay")
            .attr("url", Some(&self.url))
            .attr("welcomeGreeting", self.welcome_greeting.as_ref())
            .attr(
                "welcomeGreetingInterruptible",
                self.welcome_greeting_interruptible.as_ref(),
            )
            .attr("language", self.language.as_ref())
            .attr("voice", self.voice.as_ref())
            .attr("ttsProvider", self.tts_provider.as_ref())
            .attr(
                "transcriptionProvider",
                self.transcription_provider.as_ref(),
            )
            .attr("speechModel", self.speech_model.as_ref())
            .attr("interruptible", self.interruptible.as_ref())
            .attr("dtmfDetection", self.dtmf_detection);
        for (name, value) in &self.parameters {
            element.children.push(
                Element::new("Parameter")
                    .attr("name", Some(name))
                    .attr("value", Some(value)),
            );
        }
        element
    }
}

/// `<Record>`: records the caller, posting `RecordingUrl` to `action`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    action: Option<String>,
    method: Option<HttpMethod>,
    timeout: Option<u32>,
    max_length: Option<u32>,
    finish_on_key: Option<String>,
    play_beep: Option<bool>,
    recording_status_callback: Option<String>,
}

impl Record {
    /// A recording with Twilio's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// `action`: URL receiving the recording details.
    pub fn action(mut self, url: impl Into<String>) -> Self {
        self.action = Some(url.into());
        self
    }

    /// `method` for `action`.
    pub fn method(mut self, method: HttpMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// `timeout`: seconds of silence that end the recording (Twilio's default 5).
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }

    /// `maxLength` in seconds.
    pub fn max_length(mut self, seconds: u32) -> Self {
        self.max_length = Some(seconds);
        self
    }

    /// `finishOnKey`: keys that end the recording.
    pub fn finish_on_key(mut self, keys: impl Into<String>) -> Self {
        self.finish_on_key = Some(keys.into());
        self
    }

    /// `playBeep`.
    pub fn play_beep(mut self, enabled: bool) -> Self {
        self.play_beep = Some(enabled);
        self
    }

    /// `recordingStatusCallback`: URL told when the recording file is ready.
    pub fn recording_status_callback(mut self, url: impl Into<String>) -> Self {
        self.recording_status_callback = Some(url.into());
        self
    }

    fn element(&self) -> Element {
        Element::new("Record")
            .attr("action", self.action.as_ref())
            .attr("method", self.method.map(HttpMethod::as_str))
            .attr("timeout", self.timeout)
            .attr("maxLength", self.max_length)
            .attr("finishOnKey", self.finish_on_key.as_ref())
            .attr("playBeep", self.play_beep)
            .attr(
                "recordingStatusCallback",
                self.recording_status_callback.as_ref(),
            )
    }
}

/// Messaging `<Message>`: a reply to an inbound message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    body: String,
    to: Option<String>,
    from: Option<String>,
    action: Option<String>,
    method: Option<HttpMethod>,
    media: Vec<String>,
}

impl Message {
    /// A reply with `body` as text (to the sender, from the number that received the message).
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// `to`: send somewhere other than back to the sender.
    pub fn to(mut self, to: impl Into<String>) -> Self {
        self.to = Some(to.into());
        self
    }

    /// `from`: send from another of the account's numbers (named so it cannot shadow `From::from`).
    pub fn from_number(mut self, from: impl Into<String>) -> Self {
        self.from = Some(from.into());
        self
    }

    /// `action`: status callback URL for the created message.
    pub fn action(mut self, url: impl Into<String>) -> Self {
        self.action = Some(url.into());
        self
    }

    /// `method` for `action`.
    pub fn method(mut self, method: HttpMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Adds a `<Media>` URL (MMS / WhatsApp media).
    pub fn media(mut self, url: impl Into<String>) -> Self {
        self.media.push(url.into());
        self
    }

    fn element(&self) -> Element {
        let mut element = Element::new("Message")
            .text(&self.body)
            .attr("to", self.to.as_ref())
            .attr("from", self.from.as_ref())
            .attr("action", self.action.as_ref())
            .attr("method", self.method.map(HttpMethod::as_str));
        element.children = self
            .media
            .iter()
            .map(|url| Element::new("Media").text(url))
            .collect();
        element
    }
}

impl From<&str> for Message {
    fn from(body: &str) -> Self {
        Self::new(body)
    }
}

impl From<String> for Message {
    fn from(body: String) -> Self {
        Self::new(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(inner: &str) -> String {
        format!("{XML_DECLARATION}{inner}")
    }

    #[test]
    fn empty_responses_are_self_closing() {
        assert_eq!(VoiceResponse::new().to_xml(), doc("<Response />"));
        assert_eq!(MessagingResponse::new().to_xml(), doc("<Response />"));
    }

    #[test]
    fn say_renders_text_and_sorted_attributes() {
        let xml = VoiceResponse::new()
            .say(
                Say::new("Hello")
                    .voice("Polly.Joanna")
                    .language("en-US")
                    .loop_count(2),
            )
            .to_xml();

        assert_eq!(
            xml,
            doc(
                r#"<Response><Say language="en-US" loop="2" voice="Polly.Joanna">Hello</Say></Response>"#
            )
        );
    }

    #[test]
    fn say_accepts_plain_strings_and_empty_text_self_closes() {
        let xml = VoiceResponse::new().say("Hi").say(String::new()).to_xml();

        assert_eq!(xml, doc("<Response><Say>Hi</Say><Say /></Response>"));
    }

    #[test]
    fn play_pause_hangup_and_redirect_render_like_twilio_python() {
        let xml = VoiceResponse::new()
            .play(Play::new("https://example.com/a.mp3").loop_count(0))
            .pause(Pause::new().length(2))
            .pause(Pause::new())
            .redirect(Redirect::new("/voice/next").method(HttpMethod::Get))
            .hangup()
            .to_xml();

        assert_eq!(
            xml,
            doc(concat!(
                r#"<Response><Play loop="0">https://example.com/a.mp3</Play><Pause length="2" /><Pause />"#,
                r#"<Redirect method="GET">/voice/next</Redirect><Hangup /></Response>"#
            ))
        );
    }

    #[test]
    fn gather_orders_every_attribute_and_nests_prompts() {
        let xml = VoiceResponse::new()
            .gather(
                Gather::new()
                    .input(GatherInput::DtmfSpeech)
                    .action("/voice/gather")
                    .method(HttpMethod::Post)
                    .timeout(3)
                    .speech_timeout(SpeechTimeout::Auto)
                    .num_digits(1)
                    .finish_on_key("#")
                    .language("en-GB")
                    .hints("billing, support")
                    .action_on_empty_result(true)
                    .say("Press 1 or say support")
                    .pause(Pause::new().length(1))
                    .play(Play::new("https://example.com/beep.wav")),
            )
            .to_xml();

        assert_eq!(
            xml,
            doc(concat!(
                r##"<Response><Gather action="/voice/gather" actionOnEmptyResult="true" finishOnKey="#" "##,
                r#"hints="billing, support" input="dtmf speech" language="en-GB" method="POST" numDigits="1" "#,
                r#"speechTimeout="auto" timeout="3"><Say>Press 1 or say support</Say><Pause length="1" />"#,
                r#"<Play>https://example.com/beep.wav</Play></Gather></Response>"#
            ))
        );
    }

    #[test]
    fn gather_with_numeric_speech_timeout_and_no_children_self_closes() {
        let xml = VoiceResponse::new()
            .gather(Gather::new().speech_timeout(SpeechTimeout::Seconds(2)))
            .to_xml();

        assert_eq!(
            xml,
            doc(r#"<Response><Gather speechTimeout="2" /></Response>"#)
        );
    }

    #[test]
    fn connect_to_a_conversation_relay_renders_its_settings_and_parameters() {
        let xml = VoiceResponse::new()
            .connect(
                Connect::relay(
                    ConversationRelay::new("wss://x.example/twilio/voice/relay?wf=call-1")
                        .welcome_greeting("Hi & welcome")
                        .welcome_greeting_interruptible("any")
                        .language("en-US")
                        .voice("Polly.Joanna")
                        .tts_provider("Amazon")
                        .transcription_provider("Deepgram")
                        .speech_model("nova-2")
                        .interruptible("speech")
                        .dtmf_detection(true)
                        .parameter("profile", "support"),
                )
                .action("https://x.example/twilio/voice/relay/action?wf=call-1")
                .method(HttpMethod::Post),
            )
            .to_xml();
        assert_eq!(
            xml,
            doc(
                "<Response><Connect action=\"https://x.example/twilio/voice/relay/action?wf=call-1\" \
                 method=\"POST\"><ConversationRelay dtmfDetection=\"true\" interruptible=\"speech\" \
                 language=\"en-US\" speechModel=\"nova-2\" transcriptionProvider=\"Deepgram\" \
                 ttsProvider=\"Amazon\" url=\"wss://x.example/twilio/voice/relay?wf=call-1\" \
                 voice=\"Polly.Joanna\" welcomeGreeting=\"Hi &amp; welcome\" \
                 welcomeGreetingInterruptible=\"any\"><Parameter name=\"profile\" value=\"support\" />\
                 </ConversationRelay></Connect></Response>"
            )
        );
    }

    #[test]
    fn dial_and_record_render_attributes() {
        let xml = VoiceResponse::new()
            .dial(
                Dial::new("+15558675310")
                    .caller_id("+15005550006")
                    .timeout(20)
                    .action("/voice/dialed")
                    .record(DialRecord::FromAnswerDual),
            )
            .record(
                Record::new()
                    .action("/voice/recorded")
                    .max_length(30)
                    .play_beep(false)
                    .timeout(5)
                    .finish_on_key("*")
                    .recording_status_callback("/voice/recording"),
            )
            .to_xml();

        assert_eq!(
            xml,
            doc(concat!(
                r#"<Response><Dial action="/voice/dialed" callerId="+15005550006" "#,
                r#"record="record-from-answer-dual" timeout="20">+15558675310</Dial>"#,
                r#"<Record action="/voice/recorded" finishOnKey="*" maxLength="30" playBeep="false" "#,
                r#"recordingStatusCallback="/voice/recording" timeout="5" /></Response>"#
            ))
        );
    }

    #[test]
    fn message_matches_the_official_messaging_example() {
        let xml = MessagingResponse::new()
            .message(
                Message::new("hello")
                    .to("+1555")
                    .from_number("+1666")
                    .action("/cb")
                    .method(HttpMethod::Post)
                    .media("https://x/a.png"),
            )
            .to_xml();

        assert_eq!(
            xml,
            doc(concat!(
                r#"<Response><Message action="/cb" from="+1666" method="POST" to="+1555">hello"#,
                r#"<Media>https://x/a.png</Media></Message></Response>"#
            ))
        );
    }

    #[test]
    fn plain_message_renders_text_only() {
        let xml = MessagingResponse::new().message("Thanks!").to_xml();

        assert_eq!(xml, doc("<Response><Message>Thanks!</Message></Response>"));
    }

    #[test]
    fn text_and_attributes_are_escaped_like_elementtree() {
        let xml = VoiceResponse::new()
            .say(Say::new(r#"Tom & "Jerry" <3 'it'"#).voice("a\"b&c<d>\te\nf\rg'"))
            .to_xml();

        assert_eq!(
            xml,
            doc(concat!(
                r#"<Response><Say voice="a&quot;b&amp;c&lt;d&gt;&#09;e&#10;f&#13;g'">"#,
                r#"Tom &amp; "Jerry" &lt;3 'it'</Say></Response>"#
            ))
        );
    }

    #[test]
    fn non_ascii_text_is_written_verbatim() {
        let xml = MessagingResponse::new().message("Héllo wörld ✓").to_xml();

        assert_eq!(
            xml,
            doc("<Response><Message>Héllo wörld ✓</Message></Response>")
        );
    }

    #[test]
    fn display_matches_to_xml() {
        let response = VoiceResponse::new().hangup();

        assert_eq!(response.to_string(), response.to_xml());
    }
}
