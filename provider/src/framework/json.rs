//! Terraform's JSON encoding of values (the form of stored state), type-directed.
//!
//! Terraform stores resource state as JSON and hands it back in `UpgradeResourceState`; the JSON carries no type
//! information, so decoding needs the schema's [`Type`]. Unknown values cannot appear in JSON. A value of dynamic
//! type is encoded as `{"value": ..., "type": <type spec>}`, as Terraform does.

use std::collections::BTreeMap;

use serde_json::Value as J;

use super::diagnostics::AttrPath;
use super::value::{
    over_byte_limit, over_node_limit, Number, Type, Value, MAX_DEPTH, MAX_VALUE_NODES,
};

/// A value that does not fit its type, found while decoding or encoding. Names the path, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at {path}: {message}")]
pub struct ValueError {
    /// Where in the value.
    pub path: AttrPath,
    /// What is wrong.
    pub message: String,
    /// Whether the input was refused for its size ([`crate::framework::MAX_VALUE_BYTES`],
    /// [`MAX_VALUE_NODES`]) rather than for its shape.
    pub too_large: bool,
}

impl ValueError {
    /// A new error at `path`.
    pub fn new(path: &AttrPath, message: impl Into<String>) -> ValueError {
        ValueError {
            path: path.clone(),
            message: message.into(),
            too_large: false,
        }
    }

    /// Input refused for its size, before decoding.
    pub fn too_large(message: impl Into<String>) -> ValueError {
        ValueError {
            too_large: true,
            ..ValueError::new(&AttrPath::root(), message)
        }
    }
}

/// Refuses JSON text over the byte or element limits without building anything: every element but the first
/// follows a `[`, `{` or `,` outside a string, so counting those bounds the element count from above.
fn check_json_size(bytes: &[u8]) -> Result<(), ValueError> {
    if let Some(m) = over_byte_limit(bytes.len()) {
        return Err(ValueError::too_large(m));
    }
    let (mut in_string, mut escaped, mut nodes) = (false, false, 1usize);
    for &b in bytes {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') | (false, _, b'"') => in_string = !in_string,
            (false, _, b'[' | b'{' | b',') => {
                nodes += 1;
                if nodes > MAX_VALUE_NODES + 1 {
                    return Err(ValueError::too_large(over_node_limit()));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Options for [`from_json`].
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonOptions {
    /// Drop object attributes that the type does not have instead of failing. Used when reading stored state
    /// written by an older version of a resource that had more attributes.
    pub ignore_undefined_attributes: bool,
}

/// Decodes JSON text as a value of type `ty`.
pub fn from_json_bytes(ty: &Type, bytes: &[u8], opts: JsonOptions) -> Result<Value, ValueError> {
    check_json_size(bytes)?;
    let j: J = serde_json::from_slice(bytes)
        .map_err(|e| ValueError::new(&AttrPath::root(), format!("not valid JSON: {e}")))?;
    from_json(ty, &j, opts)
}

/// Decodes a JSON value as a value of type `ty`. Object attributes missing from the JSON become null.
pub fn from_json(ty: &Type, j: &J, opts: JsonOptions) -> Result<Value, ValueError> {
    decode(ty, j, &AttrPath::root(), opts, 0)
}

fn decode(
    ty: &Type,
    j: &J,
    path: &AttrPath,
    opts: JsonOptions,
    depth: usize,
) -> Result<Value, ValueError> {
    if depth > MAX_DEPTH {
        return Err(ValueError::new(path, "value nested too deeply"));
    }
    if j.is_null() {
        return Ok(Value::Null);
    }
    let mismatch = || ValueError::new(path, format!("expected {ty}, found JSON {}", json_kind(j)));
    match ty {
        Type::Bool => j.as_bool().map(Value::Bool).ok_or_else(mismatch),
        Type::String => j
            .as_str()
            .map(|s| Value::String(s.to_owned()))
            .ok_or_else(mismatch),
        Type::Number => match j {
            J::Number(n) => json_number(n).map(Value::Number).ok_or_else(mismatch),
            // Terraform accepts numbers written as strings in state.
            J::String(s) => Number::parse(s).map(Value::Number).ok_or_else(mismatch),
            _ => Err(mismatch()),
        },
        Type::List(e) | Type::Set(e) => {
            let items = j.as_array().ok_or_else(mismatch)?;
            let vals = items
                .iter()
                .enumerate()
                .map(|(i, item)| decode(e, item, &path.then_index(i), opts, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if matches!(ty, Type::List(_)) {
                Value::List(vals)
            } else {
                Value::Set(vals)
            })
        }
        Type::Tuple(elems) => {
            let items = j.as_array().ok_or_else(mismatch)?;
            if items.len() != elems.len() {
                return Err(ValueError::new(
                    path,
                    format!(
                        "expected {} tuple elements, found {}",
                        elems.len(),
                        items.len()
                    ),
                ));
            }
            let vals = elems
                .iter()
                .zip(items)
                .enumerate()
                .map(|(i, (t, item))| decode(t, item, &path.then_index(i), opts, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Tuple(vals))
        }
        Type::Map(e) => {
            let obj = j.as_object().ok_or_else(mismatch)?;
            let mut out = BTreeMap::new();
            for (k, v) in obj {
                out.insert(
                    k.clone(),
                    decode(e, v, &path.then_key(k.as_str()), opts, depth + 1)?,
                );
            }
            Ok(Value::Map(out))
        }
        Type::Object(attrs) => {
            let obj = j.as_object().ok_or_else(mismatch)?;
            let mut out = BTreeMap::new();
            for (k, v) in obj {
                match attrs.get(k) {
                    Some(t) => {
                        out.insert(
                            k.clone(),
                            decode(t, v, &path.then_attr(k.as_str()), opts, depth + 1)?,
                        );
                    }
                    None if opts.ignore_undefined_attributes => {}
                    None => {
                        return Err(ValueError::new(
                            path,
                            format!("unsupported attribute {k:?}"),
                        ))
                    }
                }
            }
            for k in attrs.keys() {
                out.entry(k.clone()).or_insert(Value::Null);
            }
            Ok(Value::Object(out))
        }
        Type::Dynamic => {
            let obj = j.as_object().ok_or_else(mismatch)?;
            let (Some(spec), Some(inner)) = (obj.get("type"), obj.get("value")) else {
                return Err(ValueError::new(
                    path,
                    "a dynamic value needs \"type\" and \"value\"",
                ));
            };
            let ty =
                Type::from_json_spec(spec).map_err(|e| ValueError::new(path, e.to_string()))?;
            if ty == Type::Dynamic {
                return Err(ValueError::new(
                    path,
                    "a dynamic value cannot have dynamic type",
                ));
            }
            decode(&ty, inner, path, opts, depth + 1)
        }
    }
}

fn json_number(n: &serde_json::Number) -> Option<Number> {
    if let Some(i) = n.as_i64() {
        Some(Number::Int(i))
    } else if let Some(u) = n.as_u64() {
        Some(Number::from(u))
    } else {
        n.as_f64().map(Number::from_f64)
    }
}

fn json_kind(j: &J) -> &'static str {
    match j {
        J::Null => "null",
        J::Bool(_) => "bool",
        J::Number(_) => "number",
        J::String(_) => "string",
        J::Array(_) => "array",
        J::Object(_) => "object",
    }
}

/// Encodes a wholly known value of type `ty` as JSON. Fails on unknown values and on values that do not fit the
/// type.
pub fn to_json(ty: &Type, v: &Value) -> Result<J, ValueError> {
    encode(ty, v, &AttrPath::root(), 0)
}

fn encode(ty: &Type, v: &Value, path: &AttrPath, depth: usize) -> Result<J, ValueError> {
    if depth > MAX_DEPTH {
        return Err(ValueError::new(path, "value nested too deeply"));
    }
    let mismatch = || ValueError::new(path, format!("expected {ty}, found {}", v.kind()));
    match (ty, v) {
        (_, Value::Null) => Ok(J::Null),
        (_, Value::Unknown) => Err(ValueError::new(
            path,
            "an unknown value cannot be encoded as JSON",
        )),
        (Type::Bool, Value::Bool(b)) => Ok(J::Bool(*b)),
        (Type::String, Value::String(s)) => Ok(J::String(s.clone())),
        (Type::Number, Value::Number(n)) => Ok(match n {
            Number::Int(i) => J::from(*i),
            Number::Float(f) => {
                serde_json::Number::from_f64(*f)
                    .map(J::Number)
                    .ok_or_else(|| {
                        ValueError::new(path, "a number that is not finite cannot be encoded")
                    })?
            }
            Number::Big(s) => serde_json::from_str::<serde_json::Number>(s)
                .map(J::Number)
                .unwrap_or_else(|_| J::String(s.clone())),
        }),
        (Type::List(e), Value::List(items)) | (Type::Set(e), Value::Set(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| encode(e, item, &path.then_index(i), depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(J::Array),
        (Type::Tuple(elems), Value::Tuple(items)) if elems.len() == items.len() => elems
            .iter()
            .zip(items)
            .enumerate()
            .map(|(i, (t, item))| encode(t, item, &path.then_index(i), depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(J::Array),
        (Type::Map(e), Value::Map(m)) => {
            let mut out = serde_json::Map::new();
            for (k, item) in m {
                out.insert(
                    k.clone(),
                    encode(e, item, &path.then_key(k.as_str()), depth + 1)?,
                );
            }
            Ok(J::Object(out))
        }
        (Type::Object(attrs), Value::Object(m)) => {
            if let Some(k) = m.keys().find(|k| !attrs.contains_key(*k)) {
                return Err(ValueError::new(
                    path,
                    format!("unsupported attribute {k:?}"),
                ));
            }
            let mut out = serde_json::Map::new();
            for (k, t) in attrs {
                let item = m.get(k).unwrap_or(&Value::Null);
                out.insert(
                    k.clone(),
                    encode(t, item, &path.then_attr(k.as_str()), depth + 1)?,
                );
            }
            Ok(J::Object(out))
        }
        (Type::Dynamic, v) => {
            let ty = Type::infer(v);
            let mut out = serde_json::Map::new();
            out.insert("value".into(), encode(&ty, v, path, depth + 1)?);
            out.insert("type".into(), ty.to_json_spec());
            Ok(J::Object(out))
        }
        _ => Err(mismatch()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ty() -> Type {
        Type::object([
            ("id", Type::String),
            ("count", Type::Number),
            ("ratio", Type::Number),
            ("on", Type::Bool),
            ("tags", Type::map(Type::String)),
            ("ports", Type::set(Type::Number)),
            ("rules", Type::list(Type::object([("cidr", Type::String)]))),
            ("any", Type::Dynamic),
        ])
    }

    #[test]
    fn round_trip() {
        let j = json!({
            "id": "a", "count": 3, "ratio": 0.5, "on": true, "tags": {"env": "dev"},
            "ports": [22, 80], "rules": [{"cidr": "10.0.0.0/8"}],
            "any": {"value": ["x"], "type": ["list", "string"]}
        });
        let v = from_json(&ty(), &j, JsonOptions::default()).unwrap();
        assert_eq!(v.get("count").as_i64(), Some(3));
        assert_eq!(v.get("any"), &Value::List(vec!["x".into()]));
        assert_eq!(to_json(&ty(), &v).unwrap(), j);
    }

    #[test]
    fn missing_attributes_are_null_and_unknown_ones_fail() {
        let v = from_json(&ty(), &json!({"id": "a"}), JsonOptions::default()).unwrap();
        assert!(v.get("tags").is_null());
        assert_eq!(v.as_map().map(|m| m.len()), Some(8));
        let err = from_json(&ty(), &json!({"gone": 1}), JsonOptions::default()).unwrap_err();
        assert!(err.message.contains("gone"));
        let opts = JsonOptions {
            ignore_undefined_attributes: true,
        };
        assert!(from_json(&ty(), &json!({"gone": 1}), opts).is_ok());
    }

    #[test]
    fn mismatches_name_the_path() {
        let err = from_json(
            &ty(),
            &json!({"rules": [{"cidr": 5}]}),
            JsonOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.path.to_string(), "rules[0].cidr");
        assert!(to_json(&Type::String, &Value::Unknown).is_err());
        assert!(to_json(&Type::String, &Value::Bool(true)).is_err());
    }
}
