//! YAML → JSON value, with the source position of every node.
//!
//! We build the tree ourselves from `saphyr-parser` events rather than use a DOM loader so
//! that we control what a hostile or careless file can do:
//! - duplicate keys are errors (with the line of the second one);
//! - aliases are expanded with a budget, so a "billion laughs" file fails fast in bounded memory;
//! - nesting depth is bounded, so nothing recurses without limit;
//! - scalars resolve by the YAML 1.2 core schema (`24:00:00` stays a string, `yes` stays a string).
//!
//! Positions are kept per RFC 6901 JSON pointer: the node's own position and, for mapping
//! values, the position of the key.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

/// Most nodes an alias expansion may produce in one document.
pub const MAX_NODES: usize = 100_000;
/// Deepest nesting of mappings and sequences.
pub const MAX_DEPTH: usize = 64;

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// Where a node is in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePos {
    /// Start of the node's value.
    pub value: Pos,
    /// Start of the key, when the node is a mapping value.
    pub key: Option<Pos>,
}

/// Positions by JSON pointer (`""` is the document root).
#[derive(Debug, Clone, Default)]
pub struct Positions {
    map: HashMap<String, NodePos>,
}

impl Positions {
    /// The position of the node at `pointer`, if it exists in the source.
    pub fn get(&self, pointer: &str) -> Option<NodePos> {
        self.map.get(pointer).copied()
    }

    /// The position of the node at `pointer`, or of its nearest ancestor that has one.
    pub fn nearest(&self, pointer: &str) -> Option<NodePos> {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.map.get(p) {
                return Some(*pos);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }
}

/// A problem that stops the YAML from being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// What went wrong.
    pub message: String,
    /// Where, when known.
    pub pos: Option<Pos>,
    /// A stable rule id (`yaml.syntax`, `yaml.duplicate-key`, ...).
    pub rule: &'static str,
    /// JSON pointer of the node concerned (`""` when unknown).
    pub path: String,
}

/// Escapes one reference token for a JSON pointer (RFC 6901).
pub fn escape_token(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// Parses one YAML document into a JSON value and the positions of its nodes.
pub fn parse(source: &str) -> Result<(Value, Positions), YamlError> {
    Builder::new(source).run()
}

/// A finished node with its anchor, kept as events so aliases can be replayed.
#[derive(Debug, Clone)]
enum Node {
    Scalar(Value, Pos),
    Seq(Vec<Node>, Pos),
    Map(Vec<(String, Pos, Node)>, Pos),
}

impl Node {
    fn pos(&self) -> Pos {
        match self {
            Node::Scalar(_, p) | Node::Seq(_, p) | Node::Map(_, p) => *p,
        }
    }

    /// Nodes in this subtree (for the alias budget).
    fn size(&self) -> usize {
        match self {
            Node::Scalar(..) => 1,
            Node::Seq(items, _) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Node::Map(entries, _) => 1 + entries.iter().map(|(_, _, n)| n.size()).sum::<usize>(),
        }
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
        anchor: usize,
    },
    Map {
        entries: Vec<(String, Pos, Node)>,
        pending_key: Option<(String, Pos)>,
        pos: Pos,
        anchor: usize,
    },
}

struct Builder<'a> {
    source: &'a str,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    root: Option<Node>,
    documents: usize,
}

impl<'a> Builder<'a> {
    fn new(source: &'a str) -> Self {
        Builder {
            source,
            stack: Vec::new(),
            anchors: HashMap::new(),
            nodes: 0,
            root: None,
            documents: 0,
        }
    }

    fn run(mut self) -> Result<(Value, Positions), YamlError> {
        let mut parser = Parser::new_from_str(self.source);
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|e| YamlError {
                message: format!("YAML syntax error: {}", e.info()),
                pos: Some(Pos {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                }),
                rule: "yaml.syntax",
                path: String::new(),
            })?;
            self.event(event, &span)?;
        }
        let root = match self.root.take() {
            Some(root) => root,
            None => {
                return Err(YamlError {
                    message: "the file is empty: a cluster definition needs at least `version`, `metadata`, `global` and `clusters`".into(),
                    pos: Some(Pos { line: 1, column: 1 }),
                    rule: "yaml.empty",
                    path: String::new(),
                })
            }
        };
        let mut positions = Positions::default();
        let mut pointer = String::new();
        let value = to_value(root, None, &mut pointer, &mut positions);
        Ok((value, positions))
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                message: format!(
                    "the document expands to more than {MAX_NODES} nodes through aliases; refusing to load it (is this an alias bomb?)"
                ),
                pos: Some(pos),
                rule: "yaml.too-large",
                path: self.current_path(),
            });
        }
        Ok(())
    }

    fn current_path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Seq { items, .. } => {
                    path.push('/');
                    path.push_str(&items.len().to_string());
                }
                Frame::Map {
                    pending_key: Some((k, _)),
                    ..
                } => {
                    path.push('/');
                    path.push_str(&escape_token(k));
                }
                Frame::Map { .. } => {}
            }
        }
        path
    }

    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), YamlError> {
        let pos = Pos::from_span(span);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(YamlError {
                        message: "the file holds more than one YAML document (`---`); put the cluster definition in one document".into(),
                        pos: Some(pos),
                        rule: "yaml.multiple-documents",
                        path: String::new(),
                    });
                }
                Ok(())
            }
            Event::Alias(id) => {
                let size = match self.anchors.get(&id) {
                    Some((_, size)) => *size,
                    None => {
                        return Err(YamlError {
                            message: "alias refers to an unknown anchor".into(),
                            pos: Some(pos),
                            rule: "yaml.syntax",
                            path: self.current_path(),
                        })
                    }
                };
                self.count(size, pos)?;
                let node = match self.anchors.get(&id) {
                    Some((node, _)) => node.clone(),
                    None => return Err(internal(pos)),
                };
                self.finish(node, 0)
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, pos)?;
                let value =
                    resolve_scalar(&text, style, tag.as_deref()).map_err(|message| YamlError {
                        message,
                        pos: Some(pos),
                        rule: "yaml.tag",
                        path: self.current_path(),
                    })?;
                self.finish(Node::Scalar(value, pos), anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "seq", pos)?;
                self.count(1, pos)?;
                self.push(
                    Frame::Seq {
                        items: Vec::new(),
                        pos,
                        anchor,
                    },
                    pos,
                )
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "map", pos)?;
                self.count(1, pos)?;
                self.push(
                    Frame::Map {
                        entries: Vec::new(),
                        pending_key: None,
                        pos,
                        anchor,
                    },
                    pos,
                )
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq { items, pos, anchor }) => {
                    self.finish(Node::Seq(items, pos), anchor)
                }
                _ => Err(internal(pos)),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    entries,
                    pos,
                    anchor,
                    ..
                }) => self.finish(Node::Map(entries, pos), anchor),
                _ => Err(internal(pos)),
            },
        }
    }

    fn check_collection_tag(
        &self,
        tag: Option<&Tag>,
        expected: &str,
        pos: Pos,
    ) -> Result<(), YamlError> {
        match tag {
            None => Ok(()),
            Some(t) if t.is_yaml_core_schema() && t.suffix == expected => Ok(()),
            Some(t) => Err(YamlError {
                message: format!("unsupported YAML tag `{}{}`; remove it", t.handle, t.suffix),
                pos: Some(pos),
                rule: "yaml.tag",
                path: self.current_path(),
            }),
        }
    }

    fn push(&mut self, frame: Frame, pos: Pos) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError {
                message: format!("the document nests deeper than {MAX_DEPTH} levels"),
                pos: Some(pos),
                rule: "yaml.too-deep",
                path: self.current_path(),
            });
        }
        self.stack.push(frame);
        Ok(())
    }

    /// A node is complete: remember its anchor and hand it to its parent.
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            let size = node.size();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        let pos = node.pos();
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                Some((key, key_pos)) => {
                    entries.push((key, key_pos, node));
                    Ok(())
                }
                None => {
                    let key = match node {
                        Node::Scalar(Value::String(s), _) => s,
                        Node::Scalar(Value::Null, _) => {
                            return Err(YamlError {
                                message: "a mapping key is empty (null)".into(),
                                pos: Some(pos),
                                rule: "yaml.key",
                                path: String::new(),
                            })
                        }
                        Node::Scalar(other, _) => other.to_string(),
                        Node::Seq(..) | Node::Map(..) => {
                            return Err(YamlError {
                                message: "a mapping key is a collection; keys must be plain names"
                                    .into(),
                                pos: Some(pos),
                                rule: "yaml.key",
                                path: String::new(),
                            })
                        }
                    };
                    if let Some((_, first, _)) = entries.iter().find(|(k, _, _)| *k == key) {
                        let first = *first;
                        let mut path = self.current_path();
                        path.push('/');
                        path.push_str(&escape_token(&key));
                        return Err(YamlError {
                            message: format!(
                                "duplicate key `{key}` (first defined at line {}); remove one of them",
                                first.line
                            ),
                            pos: Some(pos),
                            rule: "yaml.duplicate-key",
                            path,
                        });
                    }
                    if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
                        *pending_key = Some((key, pos));
                    }
                    Ok(())
                }
            },
        }
    }
}

fn internal(pos: Pos) -> YamlError {
    YamlError {
        message: "unbalanced YAML events (parser bug); please report it with the file".into(),
        pos: Some(pos),
        rule: "yaml.syntax",
        path: String::new(),
    }
}

fn to_value(
    node: Node,
    key: Option<Pos>,
    pointer: &mut String,
    positions: &mut Positions,
) -> Value {
    positions.map.insert(
        pointer.clone(),
        NodePos {
            value: node.pos(),
            key,
        },
    );
    match node {
        Node::Scalar(v, _) => v,
        Node::Seq(items, _) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                out.push(to_value(item, None, pointer, positions));
                pointer.truncate(len);
            }
            Value::Array(out)
        }
        Node::Map(entries, _) => {
            let mut out = Map::with_capacity(entries.len());
            for (k, kpos, item) in entries {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&escape_token(&k));
                let v = to_value(item, Some(kpos), pointer, positions);
                pointer.truncate(len);
                out.insert(k, v);
            }
            Value::Object(out)
        }
    }
}

/// Resolves a scalar by the YAML 1.2 core schema.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        if !tag.is_yaml_core_schema() {
            return Err(format!(
                "unsupported YAML tag `{}{}`; remove it",
                tag.handle, tag.suffix
            ));
        }
        return match tag.suffix.as_str() {
            "str" => Ok(Value::String(text.to_owned())),
            "int" => parse_int(text)
                .ok_or_else(|| format!("`{text}` is tagged !!int but is not an integer")),
            "float" => parse_float(text)
                .ok_or_else(|| format!("`{text}` is tagged !!float but is not a number")),
            "bool" => parse_bool(text)
                .ok_or_else(|| format!("`{text}` is tagged !!bool but is not true or false")),
            "null" => Ok(Value::Null),
            other => Err(format!("unsupported YAML tag `!!{other}`; remove it")),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_owned()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = parse_bool(text) {
        return Ok(b);
    }
    if let Some(i) = parse_int(text) {
        return Ok(i);
    }
    if let Some(f) = parse_float(text) {
        return Ok(f);
    }
    Ok(Value::String(text.to_owned()))
}

fn parse_bool(text: &str) -> Option<Value> {
    match text {
        "true" | "True" | "TRUE" => Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => Some(Value::Bool(false)),
        _ => None,
    }
}

fn parse_int(text: &str) -> Option<Value> {
    let (radix, digits, negative) = if let Some(h) = text.strip_prefix("0x") {
        (16, h, false)
    } else if let Some(o) = text.strip_prefix("0o") {
        (8, o, false)
    } else if let Some(d) = text.strip_prefix('-') {
        (10, d, true)
    } else {
        (10, text.strip_prefix('+').unwrap_or(text), false)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        let v = i64::try_from(magnitude).ok()?;
        Some(Value::Number(Number::from(-v)))
    } else {
        Some(Value::Number(Number::from(magnitude)))
    }
}

fn parse_float(text: &str) -> Option<Value> {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(body, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN") {
        // JSON has no infinities or NaN: keep the text; the schema reports the type.
        return Some(Value::String(text.to_owned()));
    }
    let mut seen_digit = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.peek() {
        if c.is_ascii_digit() {
            seen_digit = true;
            chars.next();
        } else {
            break;
        }
    }
    if chars.peek() == Some(&'.') {
        chars.next();
        while let Some(c) = chars.peek() {
            if c.is_ascii_digit() {
                seen_digit = true;
                chars.next();
            } else {
                break;
            }
        }
    }
    if !seen_digit {
        return None;
    }
    if matches!(chars.peek(), Some('e' | 'E')) {
        chars.next();
        if matches!(chars.peek(), Some('+' | '-')) {
            chars.next();
        }
        let mut exp_digit = false;
        while let Some(c) = chars.peek() {
            if c.is_ascii_digit() {
                exp_digit = true;
                chars.next();
            } else {
                break;
            }
        }
        if !exp_digit {
            return None;
        }
    }
    if chars.next().is_some() {
        return None;
    }
    let f: f64 = text.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_schema_scalars() {
        let (v, _) =
            parse("a: 1\nb: 24:00:00\nc: yes\nd: ~\ne: '1'\nf: 1.5\ng: true\nh: 0x1f\ni: -3\n")
                .unwrap();
        assert_eq!(
            v,
            json!({"a":1,"b":"24:00:00","c":"yes","d":null,"e":"1","f":1.5,"g":true,"h":31,"i":-3})
        );
    }

    #[test]
    fn positions_of_keys_and_values() {
        let (_, p) = parse("top:\n  inner: [1, 2]\n  other: x\n").unwrap();
        let inner = p.get("/top/inner").unwrap();
        assert_eq!(inner.key, Some(Pos { line: 2, column: 3 }));
        assert_eq!(
            inner.value,
            Pos {
                line: 2,
                column: 10
            }
        );
        assert_eq!(
            p.get("/top/inner/1").unwrap().value,
            Pos {
                line: 2,
                column: 14
            }
        );
        assert_eq!(
            p.nearest("/top/inner/7/x").unwrap().value,
            Pos {
                line: 2,
                column: 10
            }
        );
    }

    #[test]
    fn duplicate_keys_are_errors_with_the_second_line() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.rule, "yaml.duplicate-key");
        assert_eq!(e.pos, Some(Pos { line: 3, column: 1 }));
        assert_eq!(e.path, "/a");
        assert!(
            e.message.contains("first defined at line 1"),
            "{}",
            e.message
        );
    }

    #[test]
    fn empty_and_comment_only_files_are_errors() {
        assert_eq!(parse("").unwrap_err().rule, "yaml.empty");
        assert_eq!(parse("# nothing\n").unwrap_err().rule, "yaml.empty");
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(e.rule, "yaml.syntax");
        assert!(e.pos.is_some());
    }

    #[test]
    fn aliases_expand() {
        let (v, _) = parse("base: &b {x: 1}\nother: *b\n").unwrap();
        assert_eq!(v, json!({"base": {"x": 1}, "other": {"x": 1}}));
    }

    #[test]
    fn alias_bomb_fails_fast() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        let started = std::time::Instant::now();
        let e = parse(&s).unwrap_err();
        assert_eq!(e.rule, "yaml.too-large");
        // Not a timing test: just a guard that we did not expand 10^12 nodes before failing.
        assert!(started.elapsed().as_secs() < 30);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let s = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(parse(&s).unwrap_err().rule, "yaml.too-deep");
    }

    #[test]
    fn multiple_documents_are_refused() {
        assert_eq!(
            parse("a: 1\n---\nb: 2\n").unwrap_err().rule,
            "yaml.multiple-documents"
        );
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        let (_, p) = parse("\"a/b\": {\"c~d\": 1}\n").unwrap();
        assert!(p.get("/a~1b/c~0d").is_some());
    }
}
