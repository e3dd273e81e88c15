//! Schemas of the provider configuration, resources and data sources.
//!
//! A schema is a [`Block`] of [`Attribute`]s and nested blocks ([`NestedBlock`]), plus a version number for state
//! upgrades. Descriptions are meant for users: they are shown by `terraform providers schema` and feed the
//! generated documentation.

use std::collections::{BTreeMap, HashSet};

use super::diagnostics::{AttrPath, Diagnostic, Diagnostics};
use super::value::{Type, Value};

/// A versioned schema: the top-level block of a resource, data source or the provider configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// Bumped whenever stored state needs an upgrade (see [`crate::framework::Resource::upgrade_state`]).
    pub version: i64,
    /// The attributes and blocks.
    pub block: Block,
}

impl Schema {
    /// A schema of version 0.
    pub fn new(block: Block) -> Schema {
        Schema { version: 0, block }
    }

    /// The same schema with another version.
    #[must_use]
    pub fn version(mut self, version: i64) -> Schema {
        self.version = version;
        self
    }

    /// The type of values of this schema (an object type).
    pub fn ty(&self) -> Type {
        self.block.ty()
    }

    /// Checks that the schema is well formed (valid and unique names, a sensible required/optional/computed
    /// combination on every attribute). Resources should call this in a unit test; the server also checks every
    /// schema when Terraform asks for it and reports problems as errors.
    pub fn check(&self) -> Result<(), Diagnostics> {
        let mut diags = Diagnostics::new();
        self.block.check(&AttrPath::root(), &mut diags);
        if diags.has_errors() {
            Err(diags)
        } else {
            Ok(())
        }
    }
}

/// A block: attributes and nested blocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Block {
    /// The attributes, in the order they are documented.
    pub attributes: Vec<Attribute>,
    /// The nested blocks.
    pub blocks: Vec<NestedBlock>,
    /// What this block is, for users.
    pub description: String,
    /// Whether the whole block is deprecated.
    pub deprecated: bool,
}

impl Block {
    /// An empty block.
    pub fn new() -> Block {
        Block::default()
    }

    /// Sets the description.
    #[must_use]
    pub fn describe(mut self, description: impl Into<String>) -> Block {
        self.description = description.into();
        self
    }

    /// Adds an attribute.
    #[must_use]
    pub fn attribute(mut self, attribute: Attribute) -> Block {
        self.attributes.push(attribute);
        self
    }

    /// Adds a nested block.
    #[must_use]
    pub fn block(mut self, block: NestedBlock) -> Block {
        self.blocks.push(block);
        self
    }

    /// The attribute called `name`, if any.
    pub fn find_attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The nested block type called `name`, if any.
    pub fn find_block(&self, name: &str) -> Option<&NestedBlock> {
        self.blocks.iter().find(|b| b.type_name == name)
    }

    /// The object type of this block's values: one attribute per attribute and per nested block type.
    pub fn ty(&self) -> Type {
        let mut attrs: BTreeMap<String, Type> = self
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.ty.clone()))
            .collect();
        for b in &self.blocks {
            attrs.insert(b.type_name.clone(), b.ty());
        }
        Type::Object(attrs)
    }

    /// An object of this block's type with every attribute null (nested list/set/map blocks empty collections,
    /// as Terraform represents absent blocks). A handy start for building state, e.g. in `import`.
    pub fn null_object(&self) -> Value {
        let mut m: BTreeMap<String, Value> = self
            .attributes
            .iter()
            .map(|a| (a.name.clone(), Value::Null))
            .collect();
        for b in &self.blocks {
            let v = match b.nesting {
                Nesting::Single | Nesting::Group => Value::Null,
                Nesting::List => Value::List(Vec::new()),
                Nesting::Set => Value::Set(Vec::new()),
                Nesting::Map => Value::Map(BTreeMap::new()),
            };
            m.insert(b.type_name.clone(), v);
        }
        Value::Object(m)
    }

    /// Paths of all sensitive attributes found in `value` (a value of this block's type). Used to keep secrets
    /// out of logs and messages.
    pub fn sensitive_paths(&self, value: &Value, at: &AttrPath, out: &mut Vec<AttrPath>) {
        for a in &self.attributes {
            if a.sensitive {
                out.push(at.then_attr(a.name.as_str()));
            }
        }
        for b in &self.blocks {
            let here = at.then_attr(b.type_name.as_str());
            match value.get(&b.type_name) {
                Value::List(items) | Value::Set(items) => {
                    for (i, item) in items.iter().enumerate() {
                        b.block.sensitive_paths(item, &here.then_index(i), out);
                    }
                }
                Value::Map(items) => {
                    for (k, item) in items {
                        b.block
                            .sensitive_paths(item, &here.then_key(k.as_str()), out);
                    }
                }
                v @ Value::Object(_) => b.block.sensitive_paths(v, &here, out),
                _ => {}
            }
        }
    }

    fn check(&self, at: &AttrPath, diags: &mut Diagnostics) {
        let mut seen = HashSet::new();
        let names = self
            .attributes
            .iter()
            .map(|a| a.name.as_str())
            .chain(self.blocks.iter().map(|b| b.type_name.as_str()));
        for name in names {
            let path = at.then_attr(name);
            if !valid_name(name) {
                diags.push(
                    Diagnostic::error(
                        "Invalid schema name",
                        format!("{name:?} is not a valid attribute or block name: use lower case letters, digits and underscores, starting with a letter."),
                    )
                    .at(path.clone()),
                );
            }
            if !seen.insert(name) {
                diags.push(
                    Diagnostic::error(
                        "Duplicate schema name",
                        format!("{name:?} is defined twice."),
                    )
                    .at(path),
                );
            }
        }
        for a in &self.attributes {
            let path = at.then_attr(a.name.as_str());
            let problem = match (a.required, a.optional, a.computed) {
                (true, false, false) | (false, true, _) | (false, false, true) => None,
                (true, _, _) => Some("a required attribute can be neither optional nor computed"),
                (false, false, false) => {
                    Some("an attribute must be required, optional or computed")
                }
            };
            if let Some(p) = problem {
                diags.push(
                    Diagnostic::error(
                        "Invalid attribute flags",
                        format!("Attribute {}: {p}.", a.name),
                    )
                    .at(path),
                );
            }
        }
        for b in &self.blocks {
            let path = at.then_attr(b.type_name.as_str());
            if b.max_items > 0 && b.min_items > b.max_items {
                diags.push(
                    Diagnostic::error(
                        "Invalid block limits",
                        "min_items is larger than max_items.",
                    )
                    .at(path.clone()),
                );
            }
            if matches!(b.nesting, Nesting::Single | Nesting::Group) && b.min_items != b.max_items {
                // Terraform refuses such a schema ("MinItems and MaxItems must match in NestingSingle mode").
                diags.push(
                    Diagnostic::error(
                        "Invalid block limits",
                        "A single or group block must have equal min_items and max_items (0 and 0, or 1 and 1).",
                    )
                    .at(path.clone()),
                );
            }
            b.block.check(&path, diags);
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// One attribute of a block.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    /// The name (lower case, digits, underscores).
    pub name: String,
    /// The value type.
    pub ty: Type,
    /// What it means, for users.
    pub description: String,
    /// The configuration must set it.
    pub required: bool,
    /// The configuration may set it.
    pub optional: bool,
    /// The provider sets it (when the configuration does not, if also optional).
    pub computed: bool,
    /// A secret: Terraform hides it in plans and output, and this provider never logs it.
    pub sensitive: bool,
    /// Deprecated: Terraform warns when it is used.
    pub deprecated: bool,
    /// Changing it replaces the resource (destroy and create) instead of updating in place. Used by the default
    /// plan ([`crate::framework::PlanRequest::default_plan`]); not sent to Terraform.
    pub requires_replace: bool,
}

impl Attribute {
    fn new(name: impl Into<String>, ty: Type) -> Attribute {
        Attribute {
            name: name.into(),
            ty,
            description: String::new(),
            required: false,
            optional: false,
            computed: false,
            sensitive: false,
            deprecated: false,
            requires_replace: false,
        }
    }

    /// An attribute the configuration must set.
    pub fn required(name: impl Into<String>, ty: Type) -> Attribute {
        Attribute {
            required: true,
            ..Attribute::new(name, ty)
        }
    }

    /// An attribute the configuration may set; null otherwise.
    pub fn optional(name: impl Into<String>, ty: Type) -> Attribute {
        Attribute {
            optional: true,
            ..Attribute::new(name, ty)
        }
    }

    /// An attribute only the provider sets.
    pub fn computed(name: impl Into<String>, ty: Type) -> Attribute {
        Attribute {
            computed: true,
            ..Attribute::new(name, ty)
        }
    }

    /// An attribute the configuration may set, and the provider sets when it does not.
    pub fn optional_computed(name: impl Into<String>, ty: Type) -> Attribute {
        Attribute {
            optional: true,
            computed: true,
            ..Attribute::new(name, ty)
        }
    }

    /// Sets the description.
    #[must_use]
    pub fn describe(mut self, description: impl Into<String>) -> Attribute {
        self.description = description.into();
        self
    }

    /// Marks it sensitive.
    #[must_use]
    pub fn sensitive(mut self) -> Attribute {
        self.sensitive = true;
        self
    }

    /// Marks it deprecated.
    #[must_use]
    pub fn deprecated(mut self) -> Attribute {
        self.deprecated = true;
        self
    }

    /// Makes changes to it replace the resource.
    #[must_use]
    pub fn requires_replace(mut self) -> Attribute {
        self.requires_replace = true;
        self
    }
}

/// How a nested block repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// At most one; null when absent.
    Single,
    /// Exactly one; its attributes null when absent from the configuration.
    Group,
    /// Any number, ordered: a list of objects.
    List,
    /// Any number, unordered: a set of objects.
    Set,
    /// Any number, each with a label: a map of objects.
    Map,
}

/// A nested block type inside a block, such as `disk { ... }` inside a VM.
#[derive(Debug, Clone, PartialEq)]
pub struct NestedBlock {
    /// The block type name (as written in configuration).
    pub type_name: String,
    /// How it repeats.
    pub nesting: Nesting,
    /// Its content.
    pub block: Block,
    /// The least number of blocks (0: no minimum).
    pub min_items: i64,
    /// The largest number of blocks (0: no limit).
    pub max_items: i64,
}

impl NestedBlock {
    /// A nested block type.
    pub fn new(type_name: impl Into<String>, nesting: Nesting, block: Block) -> NestedBlock {
        NestedBlock {
            type_name: type_name.into(),
            nesting,
            block,
            min_items: 0,
            max_items: 0,
        }
    }

    /// Sets the number of blocks allowed.
    #[must_use]
    pub fn items(mut self, min: i64, max: i64) -> NestedBlock {
        self.min_items = min;
        self.max_items = max;
        self
    }

    /// The type of this block type's value inside its parent object.
    pub fn ty(&self) -> Type {
        let obj = self.block.ty();
        match self.nesting {
            Nesting::Single | Nesting::Group => obj,
            Nesting::List => Type::list(obj),
            Nesting::Set => Type::set(obj),
            Nesting::Map => Type::map(obj),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new(
            Block::new()
                .attribute(Attribute::computed("id", Type::String))
                .attribute(Attribute::required("name", Type::String).requires_replace())
                .attribute(Attribute::optional("password", Type::String).sensitive())
                .block(NestedBlock::new(
                    "disk",
                    Nesting::List,
                    Block::new()
                        .attribute(Attribute::required("size", Type::Number))
                        .attribute(Attribute::optional("key", Type::String).sensitive()),
                )),
        )
    }

    #[test]
    fn type_of_a_block() {
        assert_eq!(
            schema().ty().to_json_spec().to_string(),
            r#"["object",{"disk":["list",["object",{"key":"string","size":"number"}]],"id":"string","name":"string","password":"string"}]"#
        );
    }

    #[test]
    fn check_finds_mistakes() {
        assert!(schema().check().is_ok());
        let bad = Schema::new(
            Block::new()
                .attribute(Attribute::required("Name", Type::String))
                .attribute(Attribute::required("x", Type::String))
                .attribute(Attribute {
                    computed: true,
                    ..Attribute::required("x", Type::String)
                }),
        );
        let diags = bad.check().unwrap_err();
        assert_eq!(diags.0.len(), 3, "{diags}");
    }

    #[test]
    fn single_blocks_need_equal_limits() {
        let bad = Schema::new(
            Block::new().block(NestedBlock::new("dhcp", Nesting::Single, Block::new()).items(0, 1)),
        );
        assert_eq!(
            bad.check().unwrap_err().0[0].summary,
            "Invalid block limits"
        );
    }

    #[test]
    fn sensitive_paths_reach_into_blocks() {
        let s = schema();
        let v = s.block.null_object().with(
            "disk",
            Value::List(vec![Value::object([
                ("size", Value::from(1i64)),
                ("key", Value::Null),
            ])]),
        );
        let mut out = Vec::new();
        s.block.sensitive_paths(&v, &AttrPath::root(), &mut out);
        let out: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert_eq!(out, ["password", "disk[0].key"]);
    }
}
