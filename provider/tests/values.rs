//! The value layer through its public API: msgpack and JSON round trips over a schema's type, unknown values,
//! and decoding directed by the type (the same bytes mean different values under different types).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use terraform_provider_hsw::framework::json::{from_json, to_json, JsonOptions};
use terraform_provider_hsw::framework::{
    Attribute, Block, NestedBlock, Nesting, Number, Schema, Type, Value,
};
use terraform_provider_hsw::protocol::msgpack;

fn schema() -> Schema {
    Schema::new(
        Block::new()
            .attribute(Attribute::computed("id", Type::String))
            .attribute(Attribute::required("name", Type::String))
            .attribute(Attribute::optional("memory_mib", Type::Number))
            .attribute(Attribute::optional("autostart", Type::Bool))
            .attribute(Attribute::optional("tags", Type::map(Type::String)))
            .attribute(Attribute::optional("dns", Type::list(Type::String)))
            .attribute(Attribute::optional("ports", Type::set(Type::Number)))
            .attribute(Attribute::optional(
                "meta",
                Type::object([("a", Type::String), ("b", Type::list(Type::Bool))]),
            ))
            .block(NestedBlock::new(
                "disk",
                Nesting::List,
                Block::new()
                    .attribute(Attribute::required("size_gib", Type::Number))
                    .attribute(Attribute::optional("pool", Type::String)),
            ))
            .block(NestedBlock::new(
                "boot",
                Nesting::Single,
                Block::new().attribute(Attribute::optional("kernel", Type::String)),
            )),
    )
}

fn sample() -> Value {
    Value::object([
        ("id", Value::from("vm-1")),
        ("name", Value::from("node")),
        ("memory_mib", Value::from(4096i64)),
        ("autostart", Value::from(true)),
        (
            "tags",
            Value::map([("env", Value::from("dev")), ("empty", Value::from(""))]),
        ),
        ("dns", Value::List(vec!["1.1.1.1".into(), "9.9.9.9".into()])),
        ("ports", Value::Set(vec![22i64.into(), 443i64.into()])),
        (
            "meta",
            Value::object([
                ("a", Value::from("x")),
                ("b", Value::List(vec![true.into(), false.into()])),
            ]),
        ),
        (
            "disk",
            Value::List(vec![Value::object([
                ("size_gib", Value::from(1.5)),
                ("pool", Value::Null),
            ])]),
        ),
        ("boot", Value::Null),
    ])
}

#[test]
fn msgpack_and_json_round_trip() {
    let ty = schema().ty();
    let v = sample();
    let bytes = msgpack::encode(&ty, &v).unwrap();
    assert_eq!(msgpack::decode(&ty, &bytes).unwrap(), v);
    let j = to_json(&ty, &v).unwrap();
    assert_eq!(from_json(&ty, &j, JsonOptions::default()).unwrap(), v);
    // Both encodings agree.
    let via_json = from_json(&ty, &j, JsonOptions::default()).unwrap();
    assert_eq!(msgpack::encode(&ty, &via_json).unwrap(), bytes);
}

#[test]
fn empty_and_null_collections_stay_distinct() {
    // The Terraform 1.0.3 trap: an empty map set in configuration must come back as an empty map, not null.
    let ty = Type::object([("tags", Type::map(Type::String))]);
    for v in [
        Value::object([("tags", Value::Map(BTreeMap::new()))]),
        Value::object([("tags", Value::Null)]),
    ] {
        assert_eq!(
            msgpack::decode(&ty, &msgpack::encode(&ty, &v).unwrap()).unwrap(),
            v
        );
        assert_eq!(
            from_json(&ty, &to_json(&ty, &v).unwrap(), JsonOptions::default()).unwrap(),
            v
        );
    }
}

#[test]
fn unknowns_anywhere() {
    let ty = schema().ty();
    let mut v = sample();
    v.set("id", Value::Unknown);
    v.set("tags", Value::map([("env", Value::Unknown)]));
    v.set("ports", Value::Unknown);
    v.set(
        "disk",
        Value::List(vec![Value::object([
            ("size_gib", Value::Unknown),
            ("pool", Value::from("p")),
        ])]),
    );
    let back = msgpack::decode(&ty, &msgpack::encode(&ty, &v).unwrap()).unwrap();
    assert_eq!(back, v);
    assert!(!back.is_wholly_known());
    // Unknown values have no JSON form.
    assert!(to_json(&ty, &v).is_err());
}

#[test]
fn decoding_is_directed_by_the_type() {
    // One msgpack array of two strings...
    let bytes = msgpack::encode(
        &Type::list(Type::String),
        &Value::List(vec!["a".into(), "b".into()]),
    )
    .unwrap();
    // ...is a list, a set or a tuple depending on the type asked for.
    assert!(matches!(
        msgpack::decode(&Type::list(Type::String), &bytes).unwrap(),
        Value::List(_)
    ));
    assert!(matches!(
        msgpack::decode(&Type::set(Type::String), &bytes).unwrap(),
        Value::Set(_)
    ));
    assert!(matches!(
        msgpack::decode(&Type::Tuple(vec![Type::String, Type::String]), &bytes).unwrap(),
        Value::Tuple(_)
    ));
    // ...and not a list of numbers.
    let err = msgpack::decode(&Type::list(Type::Number), &bytes).unwrap_err();
    assert_eq!(err.path.to_string(), "[0]");
    // A string holding a number decodes as a number under the number type (cty writes big numbers that way).
    let s = msgpack::encode(&Type::String, &Value::from("12345678901234567890123")).unwrap();
    assert_eq!(
        msgpack::decode(&Type::Number, &s).unwrap(),
        Value::Number(Number::Big("12345678901234567890123".into()))
    );
    // A dynamic value carries its type.
    let d = msgpack::encode(&Type::Dynamic, &Value::map([("k", Value::from(1i64))])).unwrap();
    assert_eq!(
        msgpack::decode(&Type::Dynamic, &d).unwrap(),
        Value::map([("k", Value::from(1i64))])
    );
}

#[test]
fn the_schema_type_is_terraforms_json_type_spec() {
    let spec = schema().ty().to_json_spec();
    assert_eq!(spec[0], "object");
    assert_eq!(spec[1]["tags"], serde_json::json!(["map", "string"]));
    assert_eq!(
        spec[1]["disk"],
        serde_json::json!(["list", ["object", {"pool": "string", "size_gib": "number"}]])
    );
    assert_eq!(
        spec[1]["boot"],
        serde_json::json!(["object", {"kernel": "string"}])
    );
    assert_eq!(Type::from_json_spec(&spec).unwrap(), schema().ty());
}

#[test]
fn hostile_bytes_never_panic() {
    let ty = schema().ty();
    let seed = msgpack::encode(&ty, &sample()).unwrap();
    // Every truncation and many single-byte corruptions of a valid value.
    for n in 0..seed.len() {
        let _ = msgpack::decode(&ty, &seed[..n]);
        for b in [
            0x00, 0x7f, 0x80, 0xc0, 0xc1, 0xd4, 0xdc, 0xdd, 0xde, 0xdf, 0xff,
        ] {
            let mut m = seed.clone();
            m[n] = b;
            let _ = msgpack::decode(&ty, &m);
        }
    }
}
