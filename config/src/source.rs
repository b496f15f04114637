//! Reading YAML text into a generic tree plus a map from YAML path to source position.
//!
//! serde-saphyr gives the values (with YAML 1.2 scalar typing, anchors, merge keys and its
//! resource budget against hostile input); a second, cheap pass over the parser's events
//! records where every mapping key and sequence item was written, so that problems found much
//! later (after merging and validation) can still point at a line and column.

use std::collections::HashMap;

use serde_json::Value;
use serde_saphyr::granit_parser::{Event, Parser};

use crate::error::{ConfigError, Position};

/// A parsed YAML document: its tree and where each path was written.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// Display name of the source (a file path or `<embedded default>`).
    pub name: String,
    /// The document as a generic tree; an empty document is an empty mapping.
    pub tree: Value,
    positions: HashMap<String, Position>,
}

impl Source {
    /// Parses `text`, naming it `name` in errors.
    pub fn parse(name: &str, text: &str) -> Result<Source, ConfigError> {
        let syntax = |e: serde_saphyr::Error| ConfigError::Syntax {
            file: name.to_owned(),
            at: e.location().map(|l| Position { line: l.line() as usize, column: l.column() as usize }),
            message: first_line(&e.to_string()),
        };
        let tree: Option<Value> = serde_saphyr::from_str(text).map_err(syntax)?;
        let tree = match tree {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v,
            Some(other) => {
                return Err(ConfigError::Syntax {
                    file: name.to_owned(),
                    at: Some(Position { line: 1, column: 1 }),
                    message: format!("the document must be a mapping, found {}", kind_of(&other)),
                });
            }
        };
        Ok(Source { name: name.to_owned(), tree, positions: positions(text) })
    }

    /// Where `path` (dotted, sequence items as numbers) was written, if it was.
    pub fn position(&self, path: &str) -> Option<Position> {
        self.positions.get(path).copied()
    }
}

/// A word for the kind of a value, for messages.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_owned()
}

/// One open collection while walking the event stream.
enum Frame {
    Map { key: Option<String>, expect_key: bool },
    Seq { next: usize },
}

/// Records the position of every mapping key and sequence item, by dotted path.
fn positions(text: &str) -> HashMap<String, Position> {
    let mut out = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    // Path segments of the open collections (one per frame, the key/index under which it lives).
    let mut path: Vec<String> = Vec::new();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let pos = Position { line: span.start.line(), column: span.start.col() + 1 };
        match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { key, expect_key }) = stack.last_mut()
                    && *expect_key
                {
                    let full = join(&path, &value);
                    out.insert(full, pos);
                    *key = Some(value.into_owned());
                    *expect_key = false;
                } else {
                    node_start(&mut stack, &path, pos, &mut out);
                    node_end(&mut stack);
                }
            }
            Event::Alias(_) => {
                node_start(&mut stack, &path, pos, &mut out);
                node_end(&mut stack);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let seg = node_start(&mut stack, &path, pos, &mut out);
                if let Some(seg) = seg {
                    path.push(seg);
                } else if !stack.is_empty() {
                    // A complex key: its contents get no useful path.
                    path.push("?".to_owned());
                }
                let is_map = matches!(event, Event::MappingStart(..));
                stack.push(if is_map { Frame::Map { key: None, expect_key: true } } else { Frame::Seq { next: 0 } });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                if !stack.is_empty() {
                    path.pop();
                }
                node_end(&mut stack);
            }
            _ => {}
        }
    }
    out
}

/// A node starts inside the innermost frame: returns the segment it lives under.
fn node_start(stack: &mut [Frame], path: &[String], pos: Position, out: &mut HashMap<String, Position>) -> Option<String> {
    match stack.last_mut()? {
        Frame::Map { key, expect_key } => {
            if *expect_key {
                return None;
            }
            key.clone()
        }
        Frame::Seq { next } => {
            let seg = next.to_string();
            out.insert(join(path, &seg), pos);
            Some(seg)
        }
    }
}

/// A node ended: the frame it lived in moves on to its next key or item.
fn node_end(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map { expect_key, .. }) => *expect_key = true,
        Some(Frame::Seq { next }) => *next += 1,
        None => {}
    }
}

fn join(path: &[String], last: &str) -> String {
    let mut s = path.join(".");
    if !s.is_empty() {
        s.push('.');
    }
    s.push_str(last);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_positions_of_keys_and_items() {
        let src = Source::parse("t", "a:\n  b: 1\n  list:\n    - x\n    - k: v\nc: [1, 2]\n").unwrap();
        assert_eq!(src.position("a"), Some(Position { line: 1, column: 1 }));
        assert_eq!(src.position("a.b"), Some(Position { line: 2, column: 3 }));
        assert_eq!(src.position("a.list.0"), Some(Position { line: 4, column: 7 }));
        assert_eq!(src.position("a.list.1.k"), Some(Position { line: 5, column: 7 }));
        assert_eq!(src.position("c"), Some(Position { line: 6, column: 1 }));
        assert_eq!(src.tree["a"]["list"][1]["k"], "v");
    }

    #[test]
    fn empty_document_is_an_empty_mapping() {
        assert_eq!(Source::parse("t", "").unwrap().tree, serde_json::json!({}));
        assert_eq!(Source::parse("t", "# only a comment\n").unwrap().tree, serde_json::json!({}));
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = Source::parse("f.yaml", "a:\n  b: [1, 2\nc: d\n").unwrap_err();
        match err {
            ConfigError::Syntax { at, .. } => assert!(at.is_some(), "{err:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_scalar_document_is_rejected() {
        assert!(matches!(Source::parse("t", "just text"), Err(ConfigError::Syntax { .. })));
    }
}
