//! YAML → JSON value, with the source position of every node.
//!
//! We build the tree ourselves from `saphyr-parser` events rather than use a DOM loader so
//! that we control what a hostile or careless file can do:
//! - duplicate keys are errors (with the line of the second one);
//! - aliases are expanded with a budget of nodes ([`MAX_NODES`]) *and* bytes ([`MAX_EXPANDED_BYTES`]), so
//!   neither a "billion laughs" file nor a few aliases of one long scalar can exhaust memory;
//! - keys and scalars have a maximum length ([`MAX_KEY_BYTES`], [`MAX_SCALAR_BYTES`]);
//! - duplicate keys are found through a hash per mapping (a linear scan was quadratic in the keys);
//! - nesting depth is bounded, so nothing recurses without limit;
//! - scalars resolve by the YAML 1.2 core schema (`24:00:00` stays a string, `yes` stays a string).
//!
//! Positions answer an RFC 6901 JSON pointer with the node's own position and, for mapping values, the
//! position of the key. They are a tree that mirrors the source, not a map of full pointers: an aliased node's
//! positions are its anchor's, shared, so they take memory in proportion to the file, not to its expansion.

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

/// Most nodes an alias expansion may produce in one document.
pub const MAX_NODES: usize = 100_000;
/// Deepest nesting of mappings and sequences.
pub const MAX_DEPTH: usize = 64;
/// Most bytes of keys and scalars one document may expand to through aliases.
pub const MAX_EXPANDED_BYTES: usize = 8 * 1024 * 1024;
/// Longest scalar value, in bytes (an SSH public key or a certificate fits).
pub const MAX_SCALAR_BYTES: usize = 64 * 1024;
/// Longest mapping key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

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

/// Positions of a document's nodes, looked up by JSON pointer (`""` is the document root).
#[derive(Debug, Clone, Default)]
pub struct Positions {
    entries: Vec<Entry>,
}

/// One node's position and where its children's positions are.
#[derive(Debug, Clone)]
struct Entry {
    value: Pos,
    children: Children,
}

#[derive(Debug, Clone)]
enum Children {
    Leaf,
    Seq(Vec<usize>),
    /// Key → (key position, entry).
    Map(HashMap<String, (Pos, usize)>),
}

impl Positions {
    /// The position of the node at `pointer`, if it exists in the source.
    pub fn get(&self, pointer: &str) -> Option<NodePos> {
        let (found, complete) = self.walk(pointer);
        if complete {
            found
        } else {
            None
        }
    }

    /// The position of the node at `pointer`, or of its nearest ancestor that has one.
    pub fn nearest(&self, pointer: &str) -> Option<NodePos> {
        self.walk(pointer).0
    }

    /// Follows `pointer` as far as the tree goes: the last node reached, and whether it is the one asked for.
    fn walk(&self, pointer: &str) -> (Option<NodePos>, bool) {
        let Some(root) = self.entries.first() else {
            return (None, false);
        };
        let mut at = NodePos {
            value: root.value,
            key: None,
        };
        let mut entry = root;
        if pointer.is_empty() {
            return (Some(at), true);
        }
        let Some(rest) = pointer.strip_prefix('/') else {
            return (Some(at), false);
        };
        for raw in rest.split('/') {
            let next = match &entry.children {
                Children::Leaf => None,
                Children::Seq(items) => raw
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .map(|&i| (None, i)),
                Children::Map(keys) => {
                    let token = unescape_token(raw);
                    keys.get(token.as_ref()).map(|&(k, i)| (Some(k), i))
                }
            };
            let Some((key, index)) = next else {
                return (Some(at), false);
            };
            entry = &self.entries[index];
            at = NodePos {
                value: entry.value,
                key,
            };
        }
        (Some(at), true)
    }
}

/// Undoes [`escape_token`].
fn unescape_token(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
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

/// A finished node. An anchored node is shared ([`Node::Shared`]) by its own place and every alias of it, so
/// an alias costs a pointer while building, and its positions are recorded once.
#[derive(Debug, Clone)]
enum Node {
    Scalar(Value, Pos),
    Seq(Vec<Node>, Pos),
    Map(Vec<(String, Pos, Node)>, Pos),
    Shared(Rc<Anchored>),
}

/// An anchored node and what expanding it once costs.
#[derive(Debug)]
struct Anchored {
    node: Node,
    cost: Cost,
}

/// Nodes and bytes (of keys and scalars) of a subtree, fully expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    nodes: usize,
    bytes: usize,
}

impl Node {
    fn pos(&self) -> Pos {
        match self {
            Node::Scalar(_, p) | Node::Seq(_, p) | Node::Map(_, p) => *p,
            Node::Shared(a) => a.node.pos(),
        }
    }

    /// What expanding this subtree costs (for the alias budget).
    fn cost(&self) -> Cost {
        match self {
            Node::Scalar(v, _) => Cost {
                nodes: 1,
                bytes: scalar_bytes(v),
            },
            Node::Seq(items, _) => items
                .iter()
                .fold(Cost { nodes: 1, bytes: 0 }, |c, n| c.plus(n.cost())),
            Node::Map(entries, _) => {
                entries
                    .iter()
                    .fold(Cost { nodes: 1, bytes: 0 }, |c, (k, _, n)| {
                        c.plus(n.cost()).plus(Cost {
                            nodes: 0,
                            bytes: k.len(),
                        })
                    })
            }
            Node::Shared(a) => a.cost,
        }
    }
}

impl Cost {
    fn plus(self, other: Cost) -> Cost {
        Cost {
            nodes: self.nodes.saturating_add(other.nodes),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

fn scalar_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        // Numbers, booleans and null are short; count them as a few bytes.
        _ => 8,
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
        /// Key → its position, for the duplicate check.
        seen: HashMap<String, Pos>,
        pending_key: Option<(String, Pos)>,
        pos: Pos,
        anchor: usize,
    },
}

struct Builder<'a> {
    source: &'a str,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Rc<Anchored>>,
    spent: Cost,
    root: Option<Node>,
    documents: usize,
    /// Whether an alias was met: the size messages then blame aliases, otherwise the file itself.
    aliased: bool,
}

impl<'a> Builder<'a> {
    fn new(source: &'a str) -> Self {
        Builder {
            source,
            stack: Vec::new(),
            anchors: HashMap::new(),
            spent: Cost::default(),
            root: None,
            documents: 0,
            aliased: false,
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
        let mut shared = HashMap::new();
        record_positions(&root, &mut positions, &mut shared);
        Ok((to_value(&root), positions))
    }

    /// Spends `cost` of the document's budget; fails once the expanded document would be too large.
    fn count(&mut self, cost: Cost, pos: Pos) -> Result<(), YamlError> {
        self.spent = self.spent.plus(cost);
        let too_large = |message: String| YamlError {
            message,
            pos: Some(pos),
            rule: "yaml.too-large",
            path: self.current_path(),
        };
        if self.spent.nodes > MAX_NODES {
            return Err(too_large(if self.aliased {
                format!(
                    "the document expands to more than {MAX_NODES} nodes through aliases; refusing to load it (is \
                     this an alias bomb?)"
                )
            } else {
                format!(
                    "the document has more than {MAX_NODES} nodes (keys, values and list items); a cluster \
                     definition needs far fewer: is this the right file?"
                )
            }));
        }
        if self.spent.bytes > MAX_EXPANDED_BYTES {
            return Err(too_large(format!(
                "the document expands to more than {} MiB of keys and values through aliases; refusing to load it \
                 (use fewer aliases of long values)",
                MAX_EXPANDED_BYTES / (1024 * 1024)
            )));
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
                let Some(anchored) = self.anchors.get(&id).cloned() else {
                    return Err(YamlError {
                        message: "alias refers to an unknown anchor".into(),
                        pos: Some(pos),
                        rule: "yaml.syntax",
                        path: self.current_path(),
                    });
                };
                self.aliased = true;
                self.count(anchored.cost, pos)?;
                self.finish(Node::Shared(anchored), 0)
            }
            Event::Scalar(text, style, anchor, tag) => {
                if text.len() > MAX_SCALAR_BYTES {
                    return Err(YamlError {
                        message: format!(
                            "a value is {} bytes long; the most is {MAX_SCALAR_BYTES} (64 KiB): shorten it or keep it \
                             in a file the configuration names",
                            text.len()
                        ),
                        pos: Some(pos),
                        rule: "yaml.too-large",
                        path: self.current_path(),
                    });
                }
                self.count(
                    Cost {
                        nodes: 1,
                        bytes: text.len(),
                    },
                    pos,
                )?;
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
                self.count(Cost { nodes: 1, bytes: 0 }, pos)?;
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
                self.count(Cost { nodes: 1, bytes: 0 }, pos)?;
                self.push(
                    Frame::Map {
                        entries: Vec::new(),
                        seen: HashMap::new(),
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
        let node = if anchor == 0 {
            node
        } else {
            let cost = node.cost();
            let anchored = Rc::new(Anchored { node, cost });
            self.anchors.insert(anchor, Rc::clone(&anchored));
            Node::Shared(anchored)
        };
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
                seen,
                pending_key,
                ..
            }) => match pending_key.take() {
                Some((key, key_pos)) => {
                    entries.push((key, key_pos, node));
                    Ok(())
                }
                None => {
                    let key_node = match node {
                        Node::Shared(a) => a.node.clone(),
                        other => other,
                    };
                    let key = match key_node {
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
                        Node::Seq(..) | Node::Map(..) | Node::Shared(_) => {
                            return Err(YamlError {
                                message: "a mapping key is a collection; keys must be plain names"
                                    .into(),
                                pos: Some(pos),
                                rule: "yaml.key",
                                path: String::new(),
                            })
                        }
                    };
                    if key.len() > MAX_KEY_BYTES {
                        return Err(YamlError {
                            message: format!(
                                "a key is {} bytes long; the most is {MAX_KEY_BYTES}: keys are names",
                                key.len()
                            ),
                            pos: Some(pos),
                            rule: "yaml.too-large",
                            path: self.current_path(),
                        });
                    }
                    if let Some(&first) = seen.get(&key) {
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
                    seen.insert(key.clone(), pos);
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

/// Records the positions of `node`'s subtree and returns its entry. A shared (anchored) subtree is recorded
/// once: its aliases point at the same entry.
fn record_positions(
    node: &Node,
    positions: &mut Positions,
    shared: &mut HashMap<*const Anchored, usize>,
) -> usize {
    if let Node::Shared(a) = node {
        let key = Rc::as_ptr(a);
        if let Some(&index) = shared.get(&key) {
            return index;
        }
        let index = record_positions(&a.node, positions, shared);
        shared.insert(key, index);
        return index;
    }
    let index = positions.entries.len();
    positions.entries.push(Entry {
        value: node.pos(),
        children: Children::Leaf,
    });
    let children = match node {
        Node::Scalar(..) | Node::Shared(_) => Children::Leaf,
        Node::Seq(items, _) => Children::Seq(
            items
                .iter()
                .map(|n| record_positions(n, positions, shared))
                .collect(),
        ),
        Node::Map(entries, _) => Children::Map(
            entries
                .iter()
                .map(|(k, kpos, n)| (k.clone(), (*kpos, record_positions(n, positions, shared))))
                .collect(),
        ),
    };
    positions.entries[index].children = children;
    index
}

/// The JSON value of a node, aliases expanded (within the budget the builder enforced).
fn to_value(node: &Node) -> Value {
    match node {
        Node::Scalar(v, _) => v.clone(),
        Node::Seq(items, _) => Value::Array(items.iter().map(to_value).collect()),
        Node::Map(entries, _) => {
            let mut out = Map::with_capacity(entries.len());
            for (k, _, item) in entries {
                out.insert(k.clone(), to_value(item));
            }
            Value::Object(out)
        }
        Node::Shared(a) => to_value(&a.node),
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
mod tests;
