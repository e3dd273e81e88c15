//! Terraform's msgpack encoding of values (`DynamicValue.msgpack`), type-directed.
//!
//! The encoding is cty's: null is msgpack nil; an unknown value is an extension value (cty writes type 0;
//! Terraform 1.6 and later may send type 12 for an unknown with refinements: every extension type reads as
//! unknown, as terraform-plugin-go does); numbers are ints, float64s, or decimal strings when neither fits; lists,
//! sets and tuples are arrays; maps and objects are maps with string keys (object attributes in sorted order); a
//! value of dynamic type is a two-element array `[type spec JSON as bytes, value]`.
//!
//! Malformed input is an error, never a panic (the reserved marker 0xc1 reads as nil, as `rmpv` does).

use std::collections::BTreeMap;

use rmpv::Value as M;

use crate::framework::json::ValueError;
use crate::framework::{over_byte_limit, over_node_limit, MAX_VALUE_NODES};
use crate::framework::{AttrPath, Number, Type, Value, MAX_DEPTH};

/// Decodes msgpack bytes as a value of type `ty`. Trailing bytes are an error; input over
/// [`crate::framework::MAX_VALUE_BYTES`] or [`MAX_VALUE_NODES`] is refused before anything is built.
pub fn decode(ty: &Type, bytes: &[u8]) -> Result<Value, ValueError> {
    check_size(bytes)?;
    let mut rd = bytes;
    let m = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
        .map_err(|e| ValueError::new(&AttrPath::root(), format!("invalid msgpack: {e}")))?;
    if !rd.is_empty() {
        return Err(ValueError::new(
            &AttrPath::root(),
            "trailing bytes after the msgpack value",
        ));
    }
    from_msgpack(ty, &m, &AttrPath::root(), 0)
}

/// Walks the msgpack markers, counting elements, without building anything. Malformed or truncated input passes
/// here and is reported by the decoder.
fn check_size(bytes: &[u8]) -> Result<(), ValueError> {
    if let Some(m) = over_byte_limit(bytes.len()) {
        return Err(ValueError::too_large(m));
    }
    let be = |at: usize, n: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(n)?)?;
        Some(b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    };
    // `pending`: elements announced by the containers read so far and not yet read.
    let (mut at, mut pending, mut nodes) = (0usize, 1usize, 0usize);
    while pending > 0 {
        let Some(&marker) = bytes.get(at) else {
            return Ok(());
        };
        at += 1;
        pending -= 1;
        nodes += 1;
        // (bytes of length field, fixed payload, children per length unit or 0 when the length counts bytes)
        let (len_bytes, fixed, per): (usize, usize, usize) = match marker {
            0x80..=0x8f => {
                pending += 2 * usize::from(marker & 0x0f);
                (0, 0, 0)
            }
            0x90..=0x9f => {
                pending += usize::from(marker & 0x0f);
                (0, 0, 0)
            }
            0xa0..=0xbf => (0, usize::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (1, 0, 0),
            0xc5 | 0xda => (2, 0, 0),
            0xc6 | 0xdb => (4, 0, 0),
            0xc7 => (1, 1, 0),
            0xc8 => (2, 1, 0),
            0xc9 => (4, 1, 0),
            0xca | 0xce | 0xd2 => (0, 4, 0),
            0xcb | 0xcf | 0xd3 => (0, 8, 0),
            0xcc | 0xd0 => (0, 1, 0),
            0xcd | 0xd1 => (0, 2, 0),
            0xd4 => (0, 2, 0),
            0xd5 => (0, 3, 0),
            0xd6 => (0, 5, 0),
            0xd7 => (0, 9, 0),
            0xd8 => (0, 17, 0),
            0xdc => (2, 0, 1),
            0xdd => (4, 0, 1),
            0xde => (2, 0, 2),
            0xdf => (4, 0, 2),
            _ => (0, 0, 0),
        };
        let len = if len_bytes == 0 {
            0
        } else {
            let Some(len) = be(at, len_bytes) else {
                return Ok(());
            };
            at += len_bytes;
            len
        };
        if per == 0 {
            at = at.saturating_add(fixed).saturating_add(len);
        } else {
            pending = pending.saturating_add(len.saturating_mul(per));
        }
        if nodes.saturating_add(pending) > MAX_VALUE_NODES {
            return Err(ValueError::too_large(over_node_limit()));
        }
    }
    Ok(())
}

/// Encodes a value of type `ty` as msgpack bytes.
pub fn encode(ty: &Type, v: &Value) -> Result<Vec<u8>, ValueError> {
    let m = to_msgpack(ty, v, &AttrPath::root(), 0)?;
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &m)
        .map_err(|e| ValueError::new(&AttrPath::root(), format!("cannot write msgpack: {e}")))?;
    Ok(out)
}

/// The msgpack encoding of an unknown value, as cty writes it (fixext1, type 0, payload 0).
pub const UNKNOWN_EXT: (i8, u8) = (0, 0);

fn msgpack_kind(m: &M) -> &'static str {
    match m {
        M::Nil => "nil",
        M::Boolean(_) => "bool",
        M::Integer(_) => "integer",
        M::F32(_) | M::F64(_) => "float",
        M::String(_) => "string",
        M::Binary(_) => "binary",
        M::Array(_) => "array",
        M::Map(_) => "map",
        M::Ext(..) => "extension",
    }
}

fn map_key<'a>(k: &'a M, path: &AttrPath) -> Result<&'a str, ValueError> {
    match k {
        M::String(s) => s
            .as_str()
            .ok_or_else(|| ValueError::new(path, "map key is not valid UTF-8")),
        _ => Err(ValueError::new(
            path,
            format!("map key must be a string, found {}", msgpack_kind(k)),
        )),
    }
}

fn from_msgpack(ty: &Type, m: &M, path: &AttrPath, depth: usize) -> Result<Value, ValueError> {
    if depth > MAX_DEPTH {
        return Err(ValueError::new(path, "value nested too deeply"));
    }
    match m {
        M::Nil => return Ok(Value::Null),
        M::Ext(..) => return Ok(Value::Unknown),
        _ => {}
    }
    let mismatch = || {
        ValueError::new(
            path,
            format!("expected {ty}, found msgpack {}", msgpack_kind(m)),
        )
    };
    match ty {
        Type::Bool => m.as_bool().map(Value::Bool).ok_or_else(mismatch),
        Type::String => match m {
            M::String(s) => s
                .as_str()
                .map(|s| Value::String(s.to_owned()))
                .ok_or_else(|| ValueError::new(path, "string is not valid UTF-8")),
            _ => Err(mismatch()),
        },
        Type::Number => match m {
            M::Integer(i) => {
                if let Some(i) = i.as_i64() {
                    Ok(Value::Number(Number::Int(i)))
                } else {
                    i.as_u64()
                        .map(|u| Value::Number(u.into()))
                        .ok_or_else(mismatch)
                }
            }
            M::F32(f) => Ok(Value::Number(Number::from_f64(f64::from(*f)))),
            M::F64(f) => Ok(Value::Number(Number::from_f64(*f))),
            M::String(s) => s
                .as_str()
                .and_then(Number::parse)
                .map(Value::Number)
                .ok_or_else(|| ValueError::new(path, "number string is not a decimal number")),
            _ => Err(mismatch()),
        },
        Type::List(e) | Type::Set(e) => {
            let items = m.as_array().ok_or_else(mismatch)?;
            let vals = items
                .iter()
                .enumerate()
                .map(|(i, item)| from_msgpack(e, item, &path.then_index(i), depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if matches!(ty, Type::List(_)) {
                Value::List(vals)
            } else {
                Value::Set(vals)
            })
        }
        Type::Tuple(elems) => {
            let items = m.as_array().ok_or_else(mismatch)?;
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
                .map(|(i, (t, item))| from_msgpack(t, item, &path.then_index(i), depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Tuple(vals))
        }
        Type::Map(e) => {
            let entries = m.as_map().ok_or_else(mismatch)?;
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                let k = map_key(k, path)?;
                out.insert(
                    k.to_owned(),
                    from_msgpack(e, v, &path.then_key(k), depth + 1)?,
                );
            }
            Ok(Value::Map(out))
        }
        Type::Object(attrs) => {
            let entries = m.as_map().ok_or_else(mismatch)?;
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                let k = map_key(k, path)?;
                let t = attrs
                    .get(k)
                    .ok_or_else(|| ValueError::new(path, format!("unsupported attribute {k:?}")))?;
                out.insert(
                    k.to_owned(),
                    from_msgpack(t, v, &path.then_attr(k), depth + 1)?,
                );
            }
            for k in attrs.keys() {
                out.entry(k.clone()).or_insert(Value::Null);
            }
            Ok(Value::Object(out))
        }
        Type::Dynamic => {
            let pair = m.as_array().filter(|a| a.len() == 2).ok_or_else(mismatch)?;
            let spec: &[u8] = match &pair[0] {
                M::Binary(b) => b,
                M::String(s) => s.as_bytes(),
                other => {
                    return Err(ValueError::new(
                        path,
                        format!("dynamic type must be bytes, found {}", msgpack_kind(other)),
                    ))
                }
            };
            let spec: serde_json::Value = serde_json::from_slice(spec)
                .map_err(|e| ValueError::new(path, format!("dynamic type is not JSON: {e}")))?;
            let ty =
                Type::from_json_spec(&spec).map_err(|e| ValueError::new(path, e.to_string()))?;
            if ty == Type::Dynamic {
                return Err(ValueError::new(
                    path,
                    "a dynamic value cannot have dynamic type",
                ));
            }
            from_msgpack(&ty, &pair[1], path, depth + 1)
        }
    }
}

fn to_msgpack(ty: &Type, v: &Value, path: &AttrPath, depth: usize) -> Result<M, ValueError> {
    if depth > MAX_DEPTH {
        return Err(ValueError::new(path, "value nested too deeply"));
    }
    let mismatch = || ValueError::new(path, format!("expected {ty}, found {}", v.kind()));
    match (ty, v) {
        (_, Value::Null) => Ok(M::Nil),
        (_, Value::Unknown) => Ok(M::Ext(UNKNOWN_EXT.0, vec![UNKNOWN_EXT.1])),
        (Type::Bool, Value::Bool(b)) => Ok(M::Boolean(*b)),
        (Type::String, Value::String(s)) => Ok(M::from(s.as_str())),
        (Type::Number, Value::Number(n)) => Ok(match n {
            Number::Int(i) => M::from(*i),
            Number::Float(f) => M::F64(*f),
            Number::Big(s) => M::from(s.as_str()),
        }),
        (Type::List(e), Value::List(items)) | (Type::Set(e), Value::Set(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| to_msgpack(e, item, &path.then_index(i), depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(M::Array),
        (Type::Tuple(elems), Value::Tuple(items)) if elems.len() == items.len() => elems
            .iter()
            .zip(items)
            .enumerate()
            .map(|(i, (t, item))| to_msgpack(t, item, &path.then_index(i), depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(M::Array),
        (Type::Map(e), Value::Map(entries)) => entries
            .iter()
            .map(|(k, item)| {
                Ok((
                    M::from(k.as_str()),
                    to_msgpack(e, item, &path.then_key(k.as_str()), depth + 1)?,
                ))
            })
            .collect::<Result<Vec<_>, ValueError>>()
            .map(M::Map),
        (Type::Object(attrs), Value::Object(entries)) => {
            if let Some(k) = entries.keys().find(|k| !attrs.contains_key(*k)) {
                return Err(ValueError::new(
                    path,
                    format!("unsupported attribute {k:?}"),
                ));
            }
            attrs
                .iter()
                .map(|(k, t)| {
                    let item = entries.get(k).unwrap_or(&Value::Null);
                    Ok((
                        M::from(k.as_str()),
                        to_msgpack(t, item, &path.then_attr(k.as_str()), depth + 1)?,
                    ))
                })
                .collect::<Result<Vec<_>, ValueError>>()
                .map(M::Map)
        }
        (Type::Dynamic, v) => {
            let ty = Type::infer(v);
            let spec = ty.to_json_spec().to_string().into_bytes();
            Ok(M::Array(vec![
                M::Binary(spec),
                to_msgpack(&ty, v, path, depth + 1)?,
            ]))
        }
        _ => Err(mismatch()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty() -> Type {
        Type::object([
            ("id", Type::String),
            ("n", Type::Number),
            ("tags", Type::map(Type::String)),
            ("set", Type::set(Type::String)),
            ("tuple", Type::Tuple(vec![Type::Bool, Type::Number])),
            ("any", Type::Dynamic),
        ])
    }

    #[test]
    fn round_trip_with_unknowns() {
        let v = Value::object([
            ("id", Value::Unknown),
            ("n", Value::from(1.5)),
            (
                "tags",
                Value::map([("a", Value::from("b")), ("c", Value::Unknown)]),
            ),
            ("set", Value::Set(vec!["x".into()])),
            ("tuple", Value::Tuple(vec![true.into(), 7i64.into()])),
            ("any", Value::from("dyn")),
        ]);
        let bytes = encode(&ty(), &v).unwrap();
        assert_eq!(decode(&ty(), &bytes).unwrap(), v);
    }

    #[test]
    fn unknown_is_ext_zero() {
        assert_eq!(
            encode(&Type::String, &Value::Unknown).unwrap(),
            vec![0xd4, 0, 0]
        );
        // A refined unknown (ext 12) reads as unknown too.
        assert_eq!(
            decode(&Type::String, &[0xc7, 1, 12, 0x80]).unwrap(),
            Value::Unknown
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[0xd9],
            &[0x92, 0x01],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xc0, 0xc0],
            &[0xa1, 0xff],
        ] {
            assert!(decode(&ty(), bad).is_err(), "{bad:?}");
        }
        let mut deep = vec![0x91; 10_000];
        deep.push(0xc0);
        assert!(decode(&Type::list(Type::String), &deep).is_err());
        // Unsupported attribute.
        let bytes = encode(
            &Type::object([("zz", Type::String)]),
            &Value::object([("zz", "a".into())]),
        )
        .unwrap();
        assert!(decode(&ty(), &bytes).is_err());
    }

    #[test]
    fn element_limit_counts_every_element() {
        let list = |n: u32| {
            let mut b = vec![0xdd];
            b.extend_from_slice(&n.to_be_bytes());
            b.resize(b.len() + n as usize, 0xc0);
            b
        };
        let ty = Type::list(Type::String);
        // The list itself and its elements: 100 000 in all is the limit.
        let ok = decode(&ty, &list(99_999)).unwrap();
        assert_eq!(ok.as_slice().map(<[Value]>::len), Some(99_999));
        let err = decode(&ty, &list(100_000)).unwrap_err();
        assert!(
            err.too_large && err.message.contains("100000 elements"),
            "{err}"
        );
        // A huge announced length with no elements behind it is refused the same way, without allocating.
        assert!(
            decode(&ty, &[0xdd, 0xff, 0xff, 0xff, 0xff])
                .unwrap_err()
                .too_large
        );
    }

    #[test]
    fn numbers_follow_cty() {
        assert_eq!(decode(&Type::Number, &[0x05]).unwrap(), Value::from(5i64));
        let big = encode(
            &Type::Number,
            &Value::Number(Number::Big("123456789012345678901234".into())),
        )
        .unwrap();
        assert_eq!(
            decode(&Type::Number, &big).unwrap(),
            Value::Number(Number::Big("123456789012345678901234".into()))
        );
        let u = encode(&Type::Number, &Value::from(u64::MAX)).unwrap();
        assert_eq!(decode(&Type::Number, &u).unwrap(), Value::from(u64::MAX));
    }
}
