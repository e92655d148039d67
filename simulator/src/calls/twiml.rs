//! Voice TwiML: parses a document into a small element tree the call runner walks.
//!
//! Parsing is strict the way Twilio's is: malformed XML or a root other than `<Response>` is a
//! document parse failure (12100). Unknown verbs are kept and skipped by the runner.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

/// One element: its name, attributes in document order, and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) attributes: Vec<(String, String)>,
    pub(crate) children: Vec<Node>,
}

/// A child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    /// The attribute's value; TwiML attribute names are case-sensitive.
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// All direct text, trimmed (`<Say>Hello</Say>` → `Hello`).
    pub(crate) fn text(&self) -> String {
        let text: String = self
            .children
            .iter()
            .filter_map(|node| match node {
                Node::Text(text) => Some(text.as_str()),
                Node::Element(_) => None,
            })
            .collect();
        text.trim().to_owned()
    }

    /// Child elements, in order.
    pub(crate) fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|node| match node {
            Node::Element(element) => Some(element),
            Node::Text(_) => None,
        })
    }
}

/// Why a document could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ParseError {
    #[error("malformed XML: {0}")]
    Xml(String),
    #[error("the root element is <{0}>, not <Response>")]
    Root(String),
    #[error("the document is empty")]
    Empty,
}

/// Deepest nesting accepted. TwiML itself nests three or four levels (`Response` > `Gather` >
/// `Say`); without a cap, a document of a million nested tags parses (the parser keeps its
/// own stack) but dropping the tree recurses once per level and overflows the thread's stack.
const MAX_DEPTH: usize = 32;

/// Parses a TwiML document and returns its `<Response>` element.
pub(crate) fn parse(document: &str) -> Result<Element, ParseError> {
    let mut reader = Reader::from_str(document);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let xml = |error: &dyn std::fmt::Display| ParseError::Xml(error.to_string());
    loop {
        let event = reader.read_event().map_err(|e| xml(&e))?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                return Err(ParseError::Xml(format!(
                    "content after the root element: <{}>",
                    start.name().as_ref()
                )));
            }
            Event::Start(_) if stack.len() >= MAX_DEPTH => {
                return Err(ParseError::Xml(format!(
                    "elements nested more than {MAX_DEPTH} deep"
                )));
            }
            Event::Start(start) => stack.push(element(&start)?),
            Event::Empty(start) => {
                let element = element(&start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(element)),
                    None => root = Some(element),
                }
            }
            Event::End(_) => {
                // The reader checks that end names match their start tags.
                let Some(done) = stack.pop() else {
                    return Err(ParseError::Xml("unexpected end tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(done)),
                    None => root = Some(done),
                }
            }
            Event::Text(text) => push_text(&mut stack, &text.xml10_content())?,
            Event::CData(data) => push_text(&mut stack, &data.xml10_content())?,
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(|e| xml(&e))? {
                    Some(ch) => ch.to_string(),
                    None => {
                        let name = reference.xml10_content();
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| ParseError::Xml(format!("unknown entity &{name};")))?
                            .to_owned()
                    }
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(ParseError::Xml("unclosed element".into()));
    }
    let root = root.ok_or(ParseError::Empty)?;
    if root.name != "Response" {
        return Err(ParseError::Root(root.name));
    }
    Ok(root)
}

fn element(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, ParseError> {
    let name = start.name().as_ref().to_owned();
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| ParseError::Xml(e.to_string()))?;
        let key = attribute.key.as_ref().to_owned();
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| ParseError::Xml(e.to_string()))?
            .into_owned();
        attributes.push((key, value));
    }
    Ok(Element {
        name,
        attributes,
        children: Vec::new(),
    })
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), ParseError> {
    match stack.last_mut() {
        Some(parent) => {
            // Adjacent text, entity and CDATA events form one text node.
            if let Some(Node::Text(previous)) = parent.children.last_mut() {
                previous.push_str(text);
            } else {
                parent.children.push(Node::Text(text.to_owned()));
            }
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(ParseError::Xml("text outside the root element".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gather_document_parses_with_nested_verbs_and_entities() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
            <Response>
              <Gather input="speech" action="/next?a=1&amp;b=2" timeout="3">
                <Say voice="alice">Tom &amp; Jerry&#39;s <![CDATA[<show>]]></Say>
              </Gather>
              <Hangup/>
            </Response>"#;
        let root = parse(doc).unwrap();
        let verbs: Vec<&Element> = root.elements().collect();
        assert_eq!(verbs.len(), 2);
        assert_eq!(verbs[0].name, "Gather");
        assert_eq!(verbs[0].attr("action"), Some("/next?a=1&b=2"));
        let say = verbs[0].elements().next().unwrap();
        assert_eq!(say.text(), "Tom & Jerry's <show>");
        assert_eq!(verbs[1].name, "Hangup");
    }

    #[test]
    fn bad_documents_are_parse_errors() {
        assert!(matches!(
            parse("<Response><Say>hi</Response>"),
            Err(ParseError::Xml(_))
        ));
        assert!(matches!(parse("not xml at all"), Err(ParseError::Xml(_))));
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(
            parse("<Html><Say>hi</Say></Html>"),
            Err(ParseError::Root("Html".into()))
        );
        assert!(parse("<Response/>").unwrap().children.is_empty());
    }

    /// Found by hand while writing the fuzz target (its inputs are too short to reach it):
    /// 200,000 nested elements crashed the process with a stack overflow.
    #[test]
    fn deeply_nested_documents_are_refused_not_a_stack_overflow() {
        let depth = 200_000;
        let doc = format!(
            "<Response>{}{}</Response>",
            "<a>".repeat(depth),
            "</a>".repeat(depth)
        );
        assert_eq!(
            parse(&doc),
            Err(ParseError::Xml(format!(
                "elements nested more than {MAX_DEPTH} deep"
            )))
        );
        let ok = format!(
            "<Response>{}{}</Response>",
            "<a>".repeat(MAX_DEPTH - 1),
            "</a>".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(&ok).is_ok());
    }
}
