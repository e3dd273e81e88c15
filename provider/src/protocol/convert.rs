//! Conversions between framework types and tfplugin6 messages.

use crate::framework::{
    AttrPath, Attribute, Block, Diagnostic, Diagnostics, NestedBlock, Nesting, PathStep, Schema,
    Severity, Type, Value,
};

use super::msgpack;
use super::tfplugin6 as pb;

/// A framework schema as a tfplugin6 schema.
pub(crate) fn schema_to_pb(schema: &Schema) -> pb::Schema {
    pb::Schema {
        version: schema.version,
        block: Some(block_to_pb(schema.version, &schema.block)),
    }
}

fn block_to_pb(version: i64, block: &Block) -> pb::schema::Block {
    pb::schema::Block {
        version,
        attributes: block.attributes.iter().map(attribute_to_pb).collect(),
        block_types: block
            .blocks
            .iter()
            .map(|b| nested_block_to_pb(version, b))
            .collect(),
        description: block.description.clone(),
        description_kind: pb::StringKind::Markdown.into(),
        deprecated: block.deprecated,
    }
}

fn attribute_to_pb(a: &Attribute) -> pb::schema::Attribute {
    pb::schema::Attribute {
        name: a.name.clone(),
        r#type: a.ty.to_json_spec().to_string().into_bytes(),
        nested_type: None,
        description: a.description.clone(),
        required: a.required,
        optional: a.optional,
        computed: a.computed,
        sensitive: a.sensitive,
        description_kind: pb::StringKind::Markdown.into(),
        deprecated: a.deprecated,
    }
}

fn nested_block_to_pb(version: i64, b: &NestedBlock) -> pb::schema::NestedBlock {
    use pb::schema::nested_block::NestingMode;
    let nesting = match b.nesting {
        Nesting::Single => NestingMode::Single,
        Nesting::Group => NestingMode::Group,
        Nesting::List => NestingMode::List,
        Nesting::Set => NestingMode::Set,
        Nesting::Map => NestingMode::Map,
    };
    pb::schema::NestedBlock {
        type_name: b.type_name.clone(),
        block: Some(block_to_pb(version, &b.block)),
        nesting: nesting.into(),
        min_items: b.min_items,
        max_items: b.max_items,
    }
}

/// An attribute path as tfplugin6 steps.
pub(crate) fn path_to_pb(path: &AttrPath) -> pb::AttributePath {
    use pb::attribute_path::step::Selector;
    pb::AttributePath {
        steps: path
            .steps()
            .iter()
            .map(|s| pb::attribute_path::Step {
                selector: Some(match s {
                    PathStep::Attr(a) => Selector::AttributeName(a.clone()),
                    PathStep::Key(k) => Selector::ElementKeyString(k.clone()),
                    PathStep::Index(i) => Selector::ElementKeyInt(*i),
                }),
            })
            .collect(),
    }
}

/// Diagnostics as tfplugin6 diagnostics.
pub(crate) fn diagnostics_to_pb(diags: &Diagnostics) -> Vec<pb::Diagnostic> {
    diags
        .iter()
        .map(|d: &Diagnostic| pb::Diagnostic {
            severity: match d.severity {
                Severity::Error => pb::diagnostic::Severity::Error,
                Severity::Warning => pb::diagnostic::Severity::Warning,
            }
            .into(),
            summary: d.summary.clone(),
            detail: d.detail.clone(),
            attribute: d.path.as_ref().filter(|p| !p.is_root()).map(path_to_pb),
        })
        .collect()
}

/// Decodes a `DynamicValue` (msgpack, else JSON; absent means null) as a value of type `ty`. `what` names the
/// value in the error ("prior state of hsw_vm").
pub(crate) fn decode_dynamic(
    ty: &Type,
    dv: Option<&pb::DynamicValue>,
    what: &str,
) -> Result<Value, Diagnostics> {
    let result = match dv {
        None => return Ok(Value::Null),
        Some(dv) if !dv.msgpack.is_empty() => msgpack::decode(ty, &dv.msgpack),
        Some(dv) if !dv.json.is_empty() => crate::framework::json::from_json_bytes(
            ty,
            &dv.json,
            crate::framework::json::JsonOptions::default(),
        ),
        Some(_) => return Ok(Value::Null),
    };
    result.map_err(|e| {
        if e.too_large {
            return Diagnostics::error(
                "Value too large",
                format!("The {what} was refused before decoding: {}. hsw's resources need far less; split the configuration, or check what sent this request.", e.message),
            );
        }
        Diagnostics::error(
            "Invalid value from Terraform",
            format!("The {what} does not match the provider's schema ({e}). This is a bug in the provider or in Terraform."),
        )
    })
}

/// Encodes a value of type `ty` as a msgpack `DynamicValue`.
pub(crate) fn encode_dynamic(
    ty: &Type,
    v: &Value,
    what: &str,
) -> Result<pb::DynamicValue, Diagnostics> {
    msgpack::encode(ty, v).map(|msgpack| pb::DynamicValue { msgpack, json: Vec::new() }).map_err(|e| {
        Diagnostics::from(
            Diagnostic::error(
                "Provider produced an invalid value",
                format!("The {what} does not match the provider's schema: {}. This is a bug in the provider.", e.message),
            )
            .at(e.path),
        )
    })
}

/// The path of the first unknown value inside `v`, if any.
pub(crate) fn first_unknown(v: &Value, at: &AttrPath) -> Option<AttrPath> {
    match v {
        Value::Unknown => Some(at.clone()),
        Value::List(items) | Value::Set(items) | Value::Tuple(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| first_unknown(item, &at.then_index(i))),
        Value::Map(m) => m
            .iter()
            .find_map(|(k, item)| first_unknown(item, &at.then_key(k.as_str()))),
        Value::Object(m) => m
            .iter()
            .find_map(|(k, item)| first_unknown(item, &at.then_attr(k.as_str()))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_diagnostics() {
        let d = Diagnostics::from(
            Diagnostic::error("bad", "worse").at(AttrPath::attr("a").then_key("k").then_index(2)),
        );
        let pbd = diagnostics_to_pb(&d);
        assert_eq!(pbd[0].severity, pb::diagnostic::Severity::Error as i32);
        assert_eq!(pbd[0].attribute.as_ref().map(|p| p.steps.len()), Some(3));
    }

    #[test]
    fn dynamic_values() {
        let ty = Type::object([("a", Type::String)]);
        assert_eq!(decode_dynamic(&ty, None, "x").unwrap(), Value::Null);
        let dv = pb::DynamicValue {
            msgpack: Vec::new(),
            json: br#"{"a":"b"}"#.to_vec(),
        };
        assert_eq!(
            decode_dynamic(&ty, Some(&dv), "x")
                .unwrap()
                .get("a")
                .as_str(),
            Some("b")
        );
        let bad = pb::DynamicValue {
            msgpack: vec![0x92, 0x01],
            json: Vec::new(),
        };
        assert!(decode_dynamic(&ty, Some(&bad), "x").is_err());
        let enc = encode_dynamic(&ty, &Value::object([("a", Value::Unknown)]), "x").unwrap();
        assert_eq!(
            decode_dynamic(&ty, Some(&enc), "x").unwrap().get("a"),
            &Value::Unknown
        );
        assert!(encode_dynamic(&ty, &Value::from(true), "x").is_err());
        let v = Value::object([("a", Value::List(vec![Value::Null, Value::Unknown]))]);
        assert_eq!(
            first_unknown(&v, &AttrPath::root()).map(|p| p.to_string()),
            Some("a[1]".into())
        );
    }
}
