//! The registry documentation (`provider/docs/`), rendered from the schemas' descriptions and the example files.
//! Pure: the caller reads the examples and writes the pages (see `provider/tests/docs.rs`, which regenerates them
//! with `UPDATE_EXPECT=1` and fails when the committed pages differ).

use crate::framework::{Attribute, Block, Nesting, Provider, Schema, Type};

use super::HswProvider;

/// One page: its path under `provider/docs/` and its Markdown.
pub type Page = (String, String);

/// Example files, by path relative to the repository root (`examples/...`); `None` when missing.
pub type Examples<'a> = &'a dyn Fn(&str) -> Option<String>;

fn type_name(t: &Type) -> String {
    match t {
        Type::Bool => "Boolean".into(),
        Type::Number => "Number".into(),
        Type::String => "String".into(),
        Type::Dynamic => "Dynamic".into(),
        Type::List(e) => format!("List of {}", type_name(e)),
        Type::Set(e) => format!("Set of {}", type_name(e)),
        Type::Map(e) => format!("Map of {}", type_name(e)),
        Type::Object(_) => "Object".into(),
        Type::Tuple(_) => "Tuple".into(),
    }
}

fn attr_line(a: &Attribute) -> String {
    let mut flags = vec![type_name(&a.ty)];
    if a.sensitive {
        flags.push("Sensitive".into());
    }
    if a.deprecated {
        flags.push("Deprecated".into());
    }
    let mut desc = a.description.clone();
    if a.requires_replace && !desc.is_empty() {
        desc.push_str(" Changing it replaces the resource.");
    }
    format!("- `{}` ({}) {}\n", a.name, flags.join(", "), desc.trim())
}

fn anchor(path: &str) -> String {
    format!("nestedblock--{}", path.replace('.', "--"))
}

fn block_kind(n: Nesting, min: i64, max: i64) -> String {
    let base = match n {
        Nesting::Single | Nesting::Group => "Block",
        Nesting::List => "Block List",
        Nesting::Set => "Block Set",
        Nesting::Map => "Block Map",
    };
    match (min, max) {
        (0, 0) => base.to_owned(),
        (m, 0) => format!("{base}, Min: {m}"),
        (0, x) => format!("{base}, Max: {x}"),
        (m, x) => format!("{base}, Min: {m}, Max: {x}"),
    }
}

fn render_block(block: &Block, path: &str, out: &mut String, nested: &mut Vec<(String, Block)>) {
    let required: Vec<&Attribute> = block.attributes.iter().filter(|a| a.required).collect();
    let optional: Vec<&Attribute> = block.attributes.iter().filter(|a| a.optional).collect();
    let computed: Vec<&Attribute> = block
        .attributes
        .iter()
        .filter(|a| a.computed && !a.optional)
        .collect();
    let (req_blocks, opt_blocks): (Vec<_>, Vec<_>) =
        block.blocks.iter().partition(|b| b.min_items > 0);
    let section = |title: &str,
                   attrs: &[&Attribute],
                   blocks: &[&crate::framework::NestedBlock],
                   out: &mut String,
                   nested: &mut Vec<(String, Block)>| {
        if attrs.is_empty() && blocks.is_empty() {
            return;
        }
        if path.is_empty() {
            out.push_str(&format!("\n### {title}\n\n"));
        } else {
            out.push_str(&format!("\n{title}:\n\n"));
        }
        let mut lines: Vec<(String, String)> = attrs
            .iter()
            .map(|a| (a.name.clone(), attr_line(a)))
            .collect();
        for b in blocks {
            let p = if path.is_empty() {
                b.type_name.clone()
            } else {
                format!("{path}.{}", b.type_name)
            };
            lines.push((
                b.type_name.clone(),
                format!(
                    "- `{}` ({}) {} (see [below for nested schema](#{}))\n",
                    b.type_name,
                    block_kind(b.nesting, b.min_items, b.max_items),
                    b.block.description.trim(),
                    anchor(&p)
                ),
            ));
            nested.push((p, b.block.clone()));
        }
        lines.sort();
        for (_, l) in lines {
            out.push_str(&l);
        }
    };
    section("Required", &required, &req_blocks, out, nested);
    section("Optional", &optional, &opt_blocks, out, nested);
    section("Read-Only", &computed, &[], out, nested);
}

fn schema_section(schema: &Schema) -> String {
    let mut out = String::from("## Schema\n");
    let mut nested = Vec::new();
    render_block(&schema.block, "", &mut out, &mut nested);
    let mut i = 0;
    while i < nested.len() {
        let (path, block) = nested[i].clone();
        out.push_str(&format!(
            "\n<a id=\"{}\"></a>\n### Nested Schema for `{path}`\n",
            anchor(&path)
        ));
        let mut more = Vec::new();
        render_block(&block, &path, &mut out, &mut more);
        nested.extend(more);
        i += 1;
    }
    out
}

fn front_matter(title: &str, description: &str) -> String {
    let first = description
        .split(". ")
        .next()
        .unwrap_or_default()
        .trim_end_matches('.');
    format!("---\npage_title: \"{title}\"\nsubcategory: \"\"\ndescription: |-\n  {first}.\n---\n\n")
}

fn code(lang: &str, text: &str) -> String {
    format!("```{lang}\n{}\n```\n", text.trim_end())
}

/// The page of a resource or data source.
pub fn render_page(
    kind: &str,
    type_name: &str,
    schema: &Schema,
    example: Option<&str>,
    import: Option<&str>,
) -> String {
    let kind_title = if kind == "resource" {
        "Resource"
    } else {
        "Data Source"
    };
    let mut out = front_matter(
        &format!("{type_name} {kind_title} - hsw"),
        &schema.block.description,
    );
    out.push_str(&format!(
        "# {type_name} ({kind_title})\n\n{}\n\n",
        schema.block.description.trim()
    ));
    if let Some(e) = example {
        out.push_str("## Example Usage\n\n");
        out.push_str(&code("terraform", e));
        out.push('\n');
    }
    out.push_str(&schema_section(schema));
    if let Some(i) = import {
        out.push_str("\n## Import\n\nImport is supported using the following syntax:\n\n");
        out.push_str(&code("shell", i));
    }
    out
}

/// The page path under `provider/docs/` of a resource (`resources/vm.md`) or data source
/// (`data-sources/host.md`).
fn page_path(dir: &str, type_name: &str) -> String {
    format!("{dir}/{}.md", type_name.trim_start_matches("hsw_"))
}

/// Every page: the provider index, the resources and the data sources, in the order the provider lists them
/// ([`Provider::resources`], [`Provider::data_sources`]), so a new type gets its page and its line in the index.
pub fn render_all(examples: Examples<'_>) -> Vec<Page> {
    let provider = HswProvider::default();
    let resources: Vec<(String, Schema)> = provider
        .resources()
        .iter()
        .map(|r| (r.type_name().to_owned(), r.schema()))
        .collect();
    let data_sources: Vec<(String, Schema)> = provider
        .data_sources()
        .iter()
        .map(|d| (d.type_name().to_owned(), d.schema()))
        .collect();
    let schema = super::provider_schema();
    let mut index = front_matter("hsw Provider", &schema.block.description);
    index.push_str(&format!(
        "# hsw Provider\n\n{}\n\n",
        schema.block.description.trim()
    ));
    for (title, dir, list) in [
        ("Resources", "resources", &resources),
        ("Data Sources", "data-sources", &data_sources),
    ] {
        index.push_str(&format!("## {title}\n\n"));
        for (type_name, s) in list {
            let first = s.block.description.split(". ").next().unwrap_or_default();
            index.push_str(&format!(
                "- [`{type_name}`]({}): {}.\n",
                page_path(dir, type_name),
                first.trim().trim_end_matches('.')
            ));
        }
        index.push('\n');
    }
    if let Some(e) = examples("examples/provider/provider.tf") {
        index.push_str("## Example Usage\n\n");
        index.push_str(&code("terraform", &e));
        index.push('\n');
    }
    index.push_str(&schema_section(&schema));
    let mut pages = vec![("index.md".to_owned(), index)];
    for (type_name, s) in &resources {
        pages.push((
            page_path("resources", type_name),
            render_page(
                "resource",
                type_name,
                s,
                examples(&format!("examples/resources/{type_name}/resource.tf")).as_deref(),
                examples(&format!("examples/resources/{type_name}/import.sh")).as_deref(),
            ),
        ));
    }
    for (type_name, s) in &data_sources {
        pages.push((
            page_path("data-sources", type_name),
            render_page(
                "data source",
                type_name,
                s,
                examples(&format!("examples/data-sources/{type_name}/data-source.tf")).as_deref(),
                None,
            ),
        ));
    }
    pages
}
