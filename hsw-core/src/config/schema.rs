//! The JSON Schema of `cluster.yaml`: generated from [`crate::config::model`], committed as
//! `schemas/cluster.schema.json`, embedded in the binaries, and used to validate the file
//! before it is deserialized (so type errors get positions and all of them are reported).

use std::sync::OnceLock;

use serde_json::Value;

use crate::config::model::{ClusterConfig, SCHEMA_ID};
use crate::config::yaml::Positions;
use crate::diag::Diagnostic;

/// The schema as committed in `schemas/cluster.schema.json` and embedded in this binary.
pub const EMBEDDED: &str = include_str!("../../../schemas/cluster.schema.json");

/// Generates the schema from the model types (what `schemas/cluster.schema.json` must contain).
pub fn generate() -> Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<ClusterConfig>();
    let mut value = schema.to_value();
    strip_null(&mut value);
    if let Value::Object(map) = &mut value {
        // `$schema` first, then `$id`, then the rest: stable and readable.
        let mut out = serde_json::Map::new();
        if let Some(s) = map.remove("$schema") {
            out.insert("$schema".into(), s);
        }
        out.insert("$id".into(), Value::String(SCHEMA_ID.into()));
        out.append(map);
        value = Value::Object(out);
    }
    value
}

/// Optional keys are written by leaving them out, never as `null`: drop the `null` alternatives
/// schemars adds for `Option<T>`, so that a mistake inside an optional object is reported as
/// itself (`unknown key ...`) rather than as "matches none of anyOf".
fn strip_null(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(alts)) = map.get("anyOf") {
                let rest: Vec<Value> = alts
                    .iter()
                    .filter(|a| a.get("type") != Some(&Value::from("null")))
                    .cloned()
                    .collect();
                if rest.len() == 1 && rest.len() < alts.len() {
                    map.remove("anyOf");
                    if let Some(Value::Object(inner)) = rest.into_iter().next() {
                        for (k, v) in inner {
                            map.entry(k).or_insert(v);
                        }
                    }
                }
            }
            for v in map.values_mut() {
                strip_null(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// The generated schema as the text committed to the repository.
pub fn generate_text() -> String {
    let mut s = serde_json::to_string_pretty(&generate()).unwrap_or_default();
    s.push('\n');
    s
}

fn embedded_schema() -> Result<&'static (Value, jsonschema::Validator), String> {
    static CELL: OnceLock<Result<(Value, jsonschema::Validator), String>> = OnceLock::new();
    CELL.get_or_init(|| {
        let schema: Value = serde_json::from_str(EMBEDDED)
            .map_err(|e| format!("the embedded schema is not JSON: {e}"))?;
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| format!("the embedded schema is invalid: {e}"))?;
        Ok((schema, validator))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// A change that makes a schema violation go away, so the semantic rules can still look at
/// the rest of the file ("all errors at once"). Findings under a repaired node are dropped.
#[derive(Debug, Clone, PartialEq)]
pub enum Repair {
    /// Move `object/from` to `object/to` (a typo with an unambiguous suggestion).
    Rename {
        /// Pointer of the object.
        object: String,
        /// The key as written.
        from: String,
        /// The key the schema knows.
        to: String,
    },
    /// Drop `object/key`.
    Remove {
        /// Pointer of the object.
        object: String,
        /// The key.
        key: String,
    },
    /// Replace the node at `pointer` by a valid value.
    Set {
        /// Pointer of the node.
        pointer: String,
        /// Its stand-in.
        value: Value,
    },
}

impl Repair {
    /// The pointer under which semantic findings are not trustworthy after this repair.
    pub fn pointer(&self) -> String {
        match self {
            Repair::Rename { object, to, .. } => {
                format!("{object}/{}", crate::config::yaml::escape_token(to))
            }
            Repair::Remove { object, key } => {
                format!("{object}/{}", crate::config::yaml::escape_token(key))
            }
            Repair::Set { pointer, .. } => pointer.clone(),
        }
    }

    /// Applies the repair to a document.
    pub fn apply(&self, doc: &mut Value) {
        match self {
            Repair::Rename { object, from, to } => {
                if let Some(Value::Object(map)) = doc.pointer_mut(object) {
                    if !map.contains_key(to) {
                        if let Some(v) = map.remove(from) {
                            map.insert(to.clone(), v);
                        }
                    }
                }
            }
            Repair::Remove { object, key } => {
                if let Some(Value::Object(map)) = doc.pointer_mut(object) {
                    map.remove(key);
                }
            }
            Repair::Set { pointer, value } => {
                if let Some(node) = doc.pointer_mut(pointer) {
                    *node = value.clone();
                }
            }
        }
    }
}

/// Validates a document against the embedded schema; every violation becomes a diagnostic
/// with the position of the offending node, and, where one is obvious, a [`Repair`].
pub fn check(instance: &Value, positions: &Positions) -> (Vec<Diagnostic>, Vec<Repair>) {
    let (schema, validator) = match embedded_schema() {
        Ok(pair) => pair,
        Err(e) => {
            return (
                vec![Diagnostic::error("schema.internal", "", e)],
                Vec::new(),
            )
        }
    };
    let mut out = Vec::new();
    let mut repairs = Vec::new();
    for error in validator.iter_errors(instance) {
        let path = error.instance_path().as_str().to_owned();
        let schema_path = error.schema_path().as_str().to_owned();
        match error.kind() {
            jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                let known = known_properties(schema, &schema_path);
                for key in unexpected {
                    let key_ptr = format!("{path}/{}", crate::config::yaml::escape_token(key));
                    let mut d = Diagnostic::error(
                        "schema.unknown-key",
                        path.clone(),
                        format!("unknown key `{key}` in {}", describe(&path)),
                    )
                    .with_label("unknown key");
                    let suggestion = suggest(key, &known);
                    let present = instance.pointer(&path).and_then(Value::as_object);
                    repairs.push(match &suggestion {
                        Some(s) if present.is_some_and(|m| !m.contains_key(s)) => Repair::Rename {
                            object: path.clone(),
                            from: key.clone(),
                            to: s.clone(),
                        },
                        _ => Repair::Remove {
                            object: path.clone(),
                            key: key.clone(),
                        },
                    });
                    d = match suggestion {
                        Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                        None if !known.is_empty() => {
                            d.with_hint(format!("expected one of: {}", known.join(", ")))
                        }
                        None => d,
                    };
                    out.push(place(d, positions, &key_ptr, true));
                }
            }
            jsonschema::error::ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let d = Diagnostic::error(
                    "schema.missing-key",
                    path.clone(),
                    format!("missing required key `{name}` in {}", describe(&path)),
                )
                .with_hint(format!("add `{name}:` here"))
                .with_label(format!("`{name}` missing"));
                out.push(place(d, positions, &path, true));
            }
            kind @ (jsonschema::error::ValidationErrorKind::Enum { .. }
            | jsonschema::error::ValidationErrorKind::OneOfNotValid { .. })
                if enum_values(kind, schema, &schema_path).is_some() =>
            {
                let allowed = enum_values(kind, schema, &schema_path).unwrap_or_default();
                let got = error
                    .instance()
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| error.instance().to_string());
                let mut d = Diagnostic::error(
                    "schema.enum",
                    path.clone(),
                    format!(
                        "`{got}` is not allowed for {}; expected one of: {}",
                        describe(&path),
                        allowed.join(", ")
                    ),
                );
                if let Some(s) = suggest(&got, &allowed) {
                    d = d.with_hint(format!("did you mean `{s}`?"));
                }
                if let Some(first) = allowed.first() {
                    repairs.push(Repair::Set {
                        pointer: path.clone(),
                        value: Value::String(first.clone()),
                    });
                }
                out.push(place(d, positions, &path, false));
            }
            kind => {
                if let jsonschema::error::ValidationErrorKind::Minimum { limit }
                | jsonschema::error::ValidationErrorKind::Maximum { limit } = kind
                {
                    repairs.push(Repair::Set {
                        pointer: path.clone(),
                        value: limit.clone(),
                    });
                }
                let rule = format!("schema.{}", kind.keyword());
                let d = Diagnostic::error(
                    rule,
                    path.clone(),
                    format!("{} {error}", describe_cap(&path)),
                );
                let d = match kind {
                    jsonschema::error::ValidationErrorKind::Pattern { .. } => {
                        match pattern_hint(&path) {
                            Some(h) => d.with_hint(h),
                            None => d,
                        }
                    }
                    _ => d,
                };
                out.push(place(d, positions, &path, false));
            }
        }
    }
    // A typo'd key that we rename is reported once, as the unknown key with its suggestion,
    // not again as the missing key it stands for.
    out.retain(|d| {
        d.rule != "schema.missing-key"
            || !repairs.iter().any(|r| match r {
                Repair::Rename { object, to, .. } => {
                    *object == d.path
                        && d.message
                            .starts_with(&format!("missing required key `{to}`"))
                }
                _ => false,
            })
    });
    (out, repairs)
}

/// The allowed values of an `enum`, or of a `oneOf` made of constants.
fn enum_values(
    kind: &jsonschema::error::ValidationErrorKind,
    schema: &Value,
    schema_path: &str,
) -> Option<Vec<String>> {
    match kind {
        jsonschema::error::ValidationErrorKind::Enum { options } => options.as_array().map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        }),
        jsonschema::error::ValidationErrorKind::OneOfNotValid { .. } => {
            const_alternatives(schema, schema_path)
        }
        _ => None,
    }
}

/// Puts the node's (or its key's) position on a diagnostic.
pub fn place(d: Diagnostic, positions: &Positions, pointer: &str, prefer_key: bool) -> Diagnostic {
    match positions.nearest(pointer) {
        Some(pos) => {
            let p = if prefer_key {
                pos.key.unwrap_or(pos.value)
            } else {
                pos.value
            };
            d.at(p.line, p.column)
        }
        None => d,
    }
}

/// "`clusters.hpc.compute_nodes`" for a pointer; "the document" for the root.
pub fn describe(pointer: &str) -> String {
    if pointer.is_empty() {
        "the document".to_owned()
    } else {
        let dotted: Vec<String> = pointer
            .trim_start_matches('/')
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        let mut s = String::new();
        for t in dotted {
            if t.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() {
                s.push_str(&format!("[{t}]"));
            } else {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(&t);
            }
        }
        format!("`{s}`")
    }
}

fn describe_cap(pointer: &str) -> String {
    let d = describe(pointer);
    let mut c = d.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str() + ":",
        None => d,
    }
}

fn pattern_hint(path: &str) -> Option<String> {
    let last = path.rsplit('/').next()?;
    Some(
        match last {
            "pci_address" => "write the PCI address as DDDD:BB:DD.F, e.g. 0000:65:00.0 (see `lspci -D`)",
            "bridge" => "use at most 15 letters, digits, `-`, `_` or `.` (a Linux interface name)",
            "subnet" | "pod_subnet" | "service_subnet" => "write an IPv4 network in CIDR form, e.g. 192.168.100.0/24",
            "ip_range" => "write one address, a last-octet range like 192.168.100.11-14, or a full range like 172.20.1.1-172.20.4.250",
            "ip_address" | "gateway" => "write an IPv4 address, e.g. 192.168.100.10",
            "name" => "use lowercase letters, digits and hyphens, starting with a letter",
            "version" => "the only format version is \"1.0\" (quote it)",
            _ => return None,
        }
        .to_owned(),
    )
}

/// The schema node a validation error's schema path leads to, following `$ref` steps.
fn schema_node<'s>(schema: &'s Value, schema_path: &str) -> Option<&'s Value> {
    let mut node = schema;
    for token in schema_path
        .trim_start_matches('/')
        .split('/')
        .filter(|t| !t.is_empty())
    {
        let token = token.replace("~1", "/").replace("~0", "~");
        if token == "$ref" {
            let target = node.get("$ref").and_then(Value::as_str)?;
            node = target.strip_prefix('#').and_then(|p| schema.pointer(p))?;
            continue;
        }
        node = node
            .get(&token)
            .or_else(|| token.parse::<usize>().ok().and_then(|i| node.get(i)))?;
    }
    if let Some(target) = node.get("$ref").and_then(Value::as_str) {
        if let Some(resolved) = target.strip_prefix('#').and_then(|p| schema.pointer(p)) {
            node = resolved;
        }
    }
    Some(node)
}

/// The property names the schema allows at the object whose `additionalProperties` failed.
fn known_properties(schema: &Value, schema_path: &str) -> Vec<String> {
    let parent = schema_path
        .strip_suffix("/additionalProperties")
        .unwrap_or(schema_path);
    schema_node(schema, parent)
        .and_then(|n| n.get("properties"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The allowed values when a `oneOf` is a list of constants (how enums with documented
/// variants are written), else `None`.
fn const_alternatives(schema: &Value, schema_path: &str) -> Option<Vec<String>> {
    let alts = schema_node(schema, schema_path)?.as_array()?;
    alts.iter()
        .map(|a| a.get("const").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The closest candidate to `word`, if close enough to be a likely typo.
pub fn suggest(word: &str, candidates: &[String]) -> Option<String> {
    let w = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&w, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_schema_is_generated_from_the_model() {
        let generated = generate_text();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/cluster.schema.json"
        );
        testkit::golden::check(path, &generated);
    }

    #[test]
    fn embedded_schema_equals_the_file() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/cluster.schema.json"
        );
        assert_eq!(EMBEDDED, std::fs::read_to_string(path).unwrap());
    }

    #[test]
    fn schema_has_id_and_draft() {
        let v = generate();
        assert_eq!(v["$id"], SCHEMA_ID);
        assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    }

    /// Every property, at every level, has a description (editors show them).
    #[test]
    fn every_property_has_a_description() {
        fn walk(v: &Value, at: &str, missing: &mut Vec<String>) {
            if let Some(props) = v.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    if p.get("description").is_none() {
                        missing.push(format!("{at}/{k}"));
                    }
                    walk(p, &format!("{at}/{k}"), missing);
                }
            }
            if let Some(defs) = v.get("$defs").and_then(Value::as_object) {
                for (k, d) in defs {
                    walk(d, &format!("$defs/{k}"), missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&generate(), "", &mut missing);
        assert!(
            missing.is_empty(),
            "properties without description: {missing:?}"
        );
    }

    /// Unknown keys are rejected at every object level.
    #[test]
    fn objects_reject_unknown_keys() {
        let v = generate();
        let defs = v["$defs"].as_object().unwrap();
        for (name, d) in defs {
            if d.get("properties").is_some() {
                assert_eq!(
                    d["additionalProperties"], false,
                    "{name} accepts unknown keys"
                );
            }
        }
        assert_eq!(v["additionalProperties"], false);
    }

    #[test]
    fn suggestions() {
        let c = vec![
            "compute_nodes".to_owned(),
            "controller".to_owned(),
            "slurm_config".to_owned(),
        ];
        assert_eq!(
            suggest("compute_node", &c).as_deref(),
            Some("compute_nodes")
        );
        assert_eq!(
            suggest("computenodes", &c).as_deref(),
            Some("compute_nodes")
        );
        assert_eq!(suggest("zzz", &c), None);
    }
}
