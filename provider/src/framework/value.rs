//! Terraform values and their types, independent of any wire encoding.
//!
//! Terraform's type system (cty) has primitive types (bool, number, string), collection types (list, set, map:
//! all elements of one type), structural types (object: named attributes each with its own type; tuple: a fixed
//! sequence of types) and the dynamic pseudo-type ("any type, decided at run time"). Every value of any type can
//! also be *null* or *unknown* (a value that will be known only after apply).
//!
//! [`Value`] does not carry its type: the type comes from the schema ([`crate::framework::Block::ty`]) and drives
//! decoding and encoding (see `protocol::msgpack` and [`crate::framework::json`]).

use std::collections::BTreeMap;
use std::fmt;

/// A Terraform (cty) type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Type {
    /// `bool`
    Bool,
    /// `number`: arbitrary precision in Terraform; see [`Number`].
    Number,
    /// `string`
    String,
    /// `list(T)`
    List(Box<Type>),
    /// `set(T)`
    Set(Box<Type>),
    /// `map(T)`: string keys.
    Map(Box<Type>),
    /// `object({...})`
    Object(BTreeMap<String, Type>),
    /// `tuple([...])`
    Tuple(Vec<Type>),
    /// The dynamic pseudo-type (`any` in Terraform's type constraints).
    Dynamic,
}

/// Why a JSON type specification could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid type specification: {0}")]
pub struct TypeSpecError(String);

impl Type {
    /// `list(elem)`.
    pub fn list(elem: Type) -> Type {
        Type::List(Box::new(elem))
    }

    /// `set(elem)`.
    pub fn set(elem: Type) -> Type {
        Type::Set(Box::new(elem))
    }

    /// `map(elem)`.
    pub fn map(elem: Type) -> Type {
        Type::Map(Box::new(elem))
    }

    /// `object({...})` from `(name, type)` pairs.
    pub fn object<K: Into<String>>(attrs: impl IntoIterator<Item = (K, Type)>) -> Type {
        Type::Object(attrs.into_iter().map(|(k, t)| (k.into(), t)).collect())
    }

    /// This type as Terraform's JSON type specification: `"string"`, `["list","string"]`,
    /// `["object",{"a":"number"}]`, `"dynamic"`. This is the form the plugin protocol carries in schemas.
    pub fn to_json_spec(&self) -> serde_json::Value {
        use serde_json::{json, Value as J};
        match self {
            Type::Bool => J::from("bool"),
            Type::Number => J::from("number"),
            Type::String => J::from("string"),
            Type::Dynamic => J::from("dynamic"),
            Type::List(e) => json!(["list", e.to_json_spec()]),
            Type::Set(e) => json!(["set", e.to_json_spec()]),
            Type::Map(e) => json!(["map", e.to_json_spec()]),
            Type::Object(attrs) => {
                let m: serde_json::Map<String, J> = attrs
                    .iter()
                    .map(|(k, t)| (k.clone(), t.to_json_spec()))
                    .collect();
                json!(["object", m])
            }
            Type::Tuple(elems) => {
                json!([
                    "tuple",
                    elems.iter().map(Type::to_json_spec).collect::<Vec<_>>()
                ])
            }
        }
    }

    /// Reads a JSON type specification (the inverse of [`Type::to_json_spec`]). The optional-attribute list that
    /// Terraform may append to an object type (`["object",{...},["a"]]`) is accepted and ignored.
    pub fn from_json_spec(spec: &serde_json::Value) -> Result<Type, TypeSpecError> {
        Self::from_json_spec_depth(spec, 0)
    }

    fn from_json_spec_depth(spec: &serde_json::Value, depth: usize) -> Result<Type, TypeSpecError> {
        use serde_json::Value as J;
        if depth > MAX_DEPTH {
            return Err(TypeSpecError("nested too deeply".into()));
        }
        match spec {
            J::String(s) => match s.as_str() {
                "bool" => Ok(Type::Bool),
                "number" => Ok(Type::Number),
                "string" => Ok(Type::String),
                "dynamic" => Ok(Type::Dynamic),
                other => Err(TypeSpecError(format!("unknown primitive type {other:?}"))),
            },
            J::Array(items) => {
                let kind = items.first().and_then(J::as_str).unwrap_or_default();
                let arg = items
                    .get(1)
                    .ok_or_else(|| TypeSpecError(format!("{kind:?} needs an argument")))?;
                let elem = || Self::from_json_spec_depth(arg, depth + 1).map(Box::new);
                match (kind, items.len()) {
                    ("list", 2) => Ok(Type::List(elem()?)),
                    ("set", 2) => Ok(Type::Set(elem()?)),
                    ("map", 2) => Ok(Type::Map(elem()?)),
                    ("object", 2 | 3) => {
                        let attrs = arg.as_object().ok_or_else(|| {
                            TypeSpecError("object attributes must be a JSON object".into())
                        })?;
                        let mut out = BTreeMap::new();
                        for (k, v) in attrs {
                            out.insert(k.clone(), Self::from_json_spec_depth(v, depth + 1)?);
                        }
                        Ok(Type::Object(out))
                    }
                    ("tuple", 2) => {
                        let elems = arg.as_array().ok_or_else(|| {
                            TypeSpecError("tuple elements must be a JSON array".into())
                        })?;
                        let elems = elems
                            .iter()
                            .map(|e| Self::from_json_spec_depth(e, depth + 1))
                            .collect::<Result<_, _>>()?;
                        Ok(Type::Tuple(elems))
                    }
                    _ => Err(TypeSpecError(format!(
                        "unknown type constructor {kind:?} with {} items",
                        items.len()
                    ))),
                }
            }
            other => Err(TypeSpecError(format!("unexpected JSON {other}"))),
        }
    }

    /// A best-effort type for a value of dynamic type (used only to encode values whose schema type is
    /// [`Type::Dynamic`]). Null and unknown values, and empty collections, give [`Type::Dynamic`].
    pub fn infer(value: &Value) -> Type {
        match value {
            Value::Null | Value::Unknown => Type::Dynamic,
            Value::Bool(_) => Type::Bool,
            Value::Number(_) => Type::Number,
            Value::String(_) => Type::String,
            Value::List(v) => Type::list(v.first().map(Type::infer).unwrap_or(Type::Dynamic)),
            Value::Set(v) => Type::set(v.first().map(Type::infer).unwrap_or(Type::Dynamic)),
            Value::Map(m) => Type::map(m.values().next().map(Type::infer).unwrap_or(Type::Dynamic)),
            Value::Object(m) => {
                Type::Object(m.iter().map(|(k, v)| (k.clone(), Type::infer(v))).collect())
            }
            Value::Tuple(v) => Type::Tuple(v.iter().map(Type::infer).collect()),
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bool => f.write_str("bool"),
            Type::Number => f.write_str("number"),
            Type::String => f.write_str("string"),
            Type::Dynamic => f.write_str("dynamic"),
            Type::List(e) => write!(f, "list({e})"),
            Type::Set(e) => write!(f, "set({e})"),
            Type::Map(e) => write!(f, "map({e})"),
            Type::Object(attrs) => {
                f.write_str("object({")?;
                for (i, (k, t)) in attrs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}={t}")?;
                }
                f.write_str("})")
            }
            Type::Tuple(elems) => {
                f.write_str("tuple([")?;
                for (i, t) in elems.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str("])")
            }
        }
    }
}

/// How deep values and types may nest; decoding refuses deeper input instead of exhausting the stack.
pub const MAX_DEPTH: usize = 64;

/// The largest encoded value (msgpack or JSON) the provider decodes: 16 MiB. hsw's states are a few KiB (the
/// largest part is cloud-init text), so this only stops hostile or broken input before it is decoded.
pub const MAX_VALUE_BYTES: usize = 16 << 20;

/// The most elements one decoded value may hold, counting every null, number, string, list, map and object:
/// 100 000. Checked on the encoded bytes before anything is built, so that a list of a million nulls (one byte
/// each in msgpack) cannot expand into gigabytes of decoded values.
pub const MAX_VALUE_NODES: usize = 100_000;

/// The sentence for input over [`MAX_VALUE_BYTES`]: `None` when `len` is within it.
pub fn over_byte_limit(len: usize) -> Option<String> {
    (len > MAX_VALUE_BYTES).then(|| {
        format!(
            "the value is {len} bytes, over the limit of {MAX_VALUE_BYTES} bytes (16 MiB) the provider decodes"
        )
    })
}

/// The sentence for input over [`MAX_VALUE_NODES`].
pub fn over_node_limit() -> String {
    format!("the value holds more than {MAX_VALUE_NODES} elements, the most the provider decodes")
}

/// A Terraform number.
///
/// Terraform numbers are arbitrary-precision decimals. Integers that fit `i64` and floats are kept natively;
/// anything else (a `u64` above `i64::MAX`, a decimal beyond `f64`) keeps its exact decimal text.
#[derive(Debug, Clone)]
pub enum Number {
    /// An integer that fits in `i64`.
    Int(i64),
    /// A binary floating point number (never integral within `i64` range: those are [`Number::Int`]).
    Float(f64),
    /// The exact decimal text of a number that fits neither of the above.
    Big(String),
}

impl Number {
    /// Normalises a float: integral values that fit `i64` become [`Number::Int`].
    pub fn from_f64(f: f64) -> Number {
        // 2^63 as f64 is exact; the range check keeps the cast exact.
        if f.fract() == 0.0
            && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
        {
            #[allow(clippy::cast_possible_truncation)]
            return Number::Int(f as i64);
        }
        Number::Float(f)
    }

    /// Reads a decimal number as text (the form Terraform uses for numbers that fit no native type).
    /// Returns `None` if the text is not a finite decimal number.
    pub fn parse(text: &str) -> Option<Number> {
        let t = text.trim();
        if let Ok(i) = t.parse::<i64>() {
            return Some(Number::Int(i));
        }
        if t.is_empty()
            || !t
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        {
            return None;
        }
        let f: f64 = t.parse().ok()?;
        if !f.is_finite() {
            return None;
        }
        let digits = t.strip_prefix('-').unwrap_or(t);
        if digits.bytes().all(|b| b.is_ascii_digit()) {
            // An integer too large for i64: keep it exact.
            return Some(Number::Big(t.to_owned()));
        }
        Some(Number::from_f64(f))
    }

    /// The value as `i64`, if it is an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(*i),
            Number::Float(_) => None,
            Number::Big(s) => s.parse().ok(),
        }
    }

    /// The value as `u64`, if it is a non-negative integer in range.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Number::Int(i) => u64::try_from(*i).ok(),
            Number::Float(_) => None,
            Number::Big(s) => s.parse().ok(),
        }
    }

    /// The value as `f64` (possibly rounded).
    pub fn as_f64(&self) -> f64 {
        match self {
            #[allow(clippy::cast_precision_loss)]
            Number::Int(i) => *i as f64,
            Number::Float(f) => *f,
            Number::Big(s) => s.parse().unwrap_or(f64::NAN),
        }
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Number) -> bool {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a == b,
            (Number::Float(a), Number::Float(b)) => a == b,
            (Number::Big(a), Number::Big(b)) => a == b,
            (Number::Big(_), _) | (_, Number::Big(_)) => self.to_string() == other.to_string(),
            // Int against Float: Float is normally never integral, but compare by value anyway.
            (a, b) => a.as_f64() == b.as_f64(),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Float(x) => write!(f, "{x}"),
            Number::Big(s) => f.write_str(s),
        }
    }
}

impl From<i64> for Number {
    fn from(i: i64) -> Number {
        Number::Int(i)
    }
}

impl From<u64> for Number {
    fn from(u: u64) -> Number {
        i64::try_from(u).map_or_else(|_| Number::Big(u.to_string()), Number::Int)
    }
}

impl From<f64> for Number {
    fn from(f: f64) -> Number {
        Number::from_f64(f)
    }
}

/// A Terraform value, whose type is known from context (the schema).
///
/// Equality follows Terraform's: sets compare regardless of element order, numbers by value.
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// A null value of any type. `Default`.
    #[default]
    Null,
    /// A value not known until apply (Terraform's "known after apply").
    Unknown,
    /// A `bool`.
    Bool(bool),
    /// A `number`.
    Number(Number),
    /// A `string`.
    String(String),
    /// A `list(T)`.
    List(Vec<Value>),
    /// A `set(T)`; the order is whatever Terraform sent and carries no meaning.
    Set(Vec<Value>),
    /// A `map(T)`.
    Map(BTreeMap<String, Value>),
    /// An `object({...})`: every attribute of the type is present (null when unset).
    Object(BTreeMap<String, Value>),
    /// A `tuple([...])`.
    Tuple(Vec<Value>),
}

/// The null value, for returning references to absent attributes.
static NULL: Value = Value::Null;

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) | (Value::Unknown, Value::Unknown) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::List(a), Value::List(b)) | (Value::Tuple(a), Value::Tuple(b)) => a == b,
            (Value::Map(a), Value::Map(b)) | (Value::Object(a), Value::Object(b)) => a == b,
            (Value::Set(a), Value::Set(b)) => set_eq(a, b),
            _ => false,
        }
    }
}

/// Order-independent comparison of two sets (multiset semantics, quadratic: Terraform sets are small).
fn set_eq(a: &[Value], b: &[Value]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    'outer: for x in a {
        for (i, y) in b.iter().enumerate() {
            if !used[i] && x == y {
                used[i] = true;
                continue 'outer;
            }
        }
        return false;
    }
    true
}

impl Value {
    /// An object value from `(name, value)` pairs.
    pub fn object<K: Into<String>>(attrs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(attrs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A map value from `(key, value)` pairs.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Whether this is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether this is unknown (only the top level: see [`Value::is_wholly_known`]).
    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }

    /// Whether this value and everything inside it is known.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
                v.iter().all(Value::is_wholly_known)
            }
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            _ => true,
        }
    }

    /// The attribute `name` of an object (or the entry `name` of a map). Null when this is not an object or map,
    /// or has no such attribute: an unset optional attribute and an absent one read the same.
    pub fn get(&self, name: &str) -> &Value {
        match self {
            Value::Object(m) | Value::Map(m) => m.get(name).unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    /// Mutable access to attribute `name` of an object (inserting null if absent). `None` if not an object.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        match self {
            Value::Object(m) => Some(m.entry(name.to_owned()).or_default()),
            _ => None,
        }
    }

    /// Sets attribute `name` of an object (or an entry of a map). Returns `false` (and changes nothing) when
    /// this value is neither.
    pub fn set(&mut self, name: &str, value: impl Into<Value>) -> bool {
        match self {
            Value::Object(m) | Value::Map(m) => {
                m.insert(name.to_owned(), value.into());
                true
            }
            _ => false,
        }
    }

    /// Builder form of [`Value::set`].
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Value {
        self.set(name, value);
        self
    }

    /// The string, if this is a known string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The bool, if this is a known bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number, if this is a known number.
    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    /// The number as `i64`, if this is a known integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_number().and_then(Number::as_i64)
    }

    /// The elements, if this is a known list, set or tuple.
    pub fn as_slice(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// The entries, if this is a known map or object.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) | Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// A short name of this value's kind, for error messages (never the value itself: it may be secret).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Unknown => "unknown",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Map(_) => "map",
            Value::Object(_) => "object",
            Value::Tuple(_) => "tuple",
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Number(Number::Int(i))
    }
}

impl From<u64> for Value {
    fn from(u: u64) -> Value {
        Value::Number(u.into())
    }
}

impl From<i32> for Value {
    fn from(i: i32) -> Value {
        Value::Number(Number::Int(i.into()))
    }
}

impl From<u32> for Value {
    fn from(u: u32) -> Value {
        Value::Number(Number::Int(u.into()))
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Number(Number::from_f64(f))
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Value {
        Value::Number(n)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` is null.
    fn from(o: Option<T>) -> Value {
        o.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_spec_round_trip() {
        let t = Type::object([
            ("a", Type::String),
            ("b", Type::list(Type::map(Type::Number))),
            ("c", Type::Tuple(vec![Type::Bool, Type::Dynamic])),
            ("d", Type::set(Type::object([("x", Type::Bool)]))),
        ]);
        let spec = t.to_json_spec();
        assert_eq!(
            spec.to_string(),
            r#"["object",{"a":"string","b":["list",["map","number"]],"c":["tuple",["bool","dynamic"]],"d":["set",["object",{"x":"bool"}]]}]"#
        );
        assert_eq!(Type::from_json_spec(&spec), Ok(t));
    }

    #[test]
    fn type_spec_rejects_garbage() {
        for bad in [
            r#""float""#,
            r#"["list"]"#,
            r#"["object",[]]"#,
            "3",
            r#"["frob","string"]"#,
        ] {
            let j: serde_json::Value = serde_json::from_str(bad).unwrap_or_default();
            assert!(Type::from_json_spec(&j).is_err(), "{bad}");
        }
        let mut deep = serde_json::json!("string");
        for _ in 0..200 {
            deep = serde_json::json!(["list", deep]);
        }
        assert!(Type::from_json_spec(&deep).is_err());
    }

    #[test]
    fn sets_compare_without_order() {
        let a = Value::Set(vec!["x".into(), "y".into()]);
        let b = Value::Set(vec!["y".into(), "x".into()]);
        assert_eq!(a, b);
        assert_ne!(
            Value::List(vec!["x".into(), "y".into()]),
            Value::List(vec!["y".into(), "x".into()])
        );
        assert_ne!(a, Value::Set(vec!["x".into(), "x".into()]));
    }

    #[test]
    fn numbers() {
        assert_eq!(Number::from_f64(3.0), Number::Int(3));
        assert_eq!(Number::Int(3), Number::Float(3.0));
        assert_eq!(
            Number::from(u64::MAX),
            Number::Big("18446744073709551615".into())
        );
        assert_eq!(Number::parse("12"), Some(Number::Int(12)));
        assert_eq!(Number::parse("1.5"), Some(Number::Float(1.5)));
        assert_eq!(
            Number::parse("99999999999999999999"),
            Some(Number::Big("99999999999999999999".into()))
        );
        assert_eq!(Number::parse("abc"), None);
        assert_eq!(Number::parse("inf"), None);
    }

    #[test]
    fn object_access() {
        let v = Value::object([("a", Value::from("x"))]).with("b", 3i64);
        assert_eq!(v.get("a").as_str(), Some("x"));
        assert_eq!(v.get("b").as_i64(), Some(3));
        assert!(v.get("missing").is_null());
        assert!(Value::from("s").get("a").is_null());
    }
}
