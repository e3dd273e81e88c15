//! terraform-docs-style tables of a Terraform module's inputs and outputs, read from its `variables.tf` and
//! `outputs.tf`: each `variable` block's `description`, `type` and `default`, each `output` block's
//! `description`. The module READMEs carry them between [`BEGIN`] and [`END`]; `hsw-cli/tests/modules_reuse.rs`
//! fails when a README's tables differ from its module and rewrites them with `UPDATE_EXPECT=1`.
//!
//! The files are parsed by `hcl-rs` (its `hcl-edit` parser, which keeps each block's place for the errors).
//! A type is shown as written, formatted by `hcl::format` on one line; a default as its value (heredocs and
//! escapes resolved), formatted the same way; a description as its text on one line.

use std::fmt::Write as _;

use hcl::edit::parser::parse_body;
use hcl::edit::structure::{Block, Body};
use hcl::edit::Span;
use hcl::eval::{Context, Evaluate};
use hcl::format::{Format, Formatter};
use hcl::{Expression, Value};

/// The line before the generated tables in a module README.
pub const BEGIN: &str = "<!-- BEGIN_TF_DOCS: generated from variables.tf and outputs.tf; rewrite with UPDATE_EXPECT=1 cargo test -p hsw-cli --test modules_reuse -->";
/// The line after them.
pub const END: &str = "<!-- END_TF_DOCS -->";

/// A module file that this reader cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}, line {line}: {message}")]
pub struct ReadError {
    /// The file's name, as the caller gave it.
    pub file: String,
    /// The 1-based line where reading stopped.
    pub line: usize,
    /// What was wrong there.
    pub message: String,
}

/// The `## Inputs` and `## Outputs` sections of a module, from the text of its `variables.tf` and `outputs.tf`.
pub fn tables(variables_tf: &str, outputs_tf: &str) -> Result<String, ReadError> {
    let mut out =
        String::from("## Inputs\n\n| name | type | default | description |\n|---|---|---|---|\n");
    let vars = File::parse("variables.tf", variables_tf)?;
    for b in vars.blocks("variable") {
        let ty = b
            .attr("type")
            .map_or_else(|| "any".to_owned(), |t| one_line(t.expr));
        let default = match b.attr("default") {
            None => "required".to_owned(),
            Some(d) => code(&one_line(vars.value(&b, "default", d)?)),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {default} | {} |",
            b.name,
            code(&ty),
            vars.description(&b)?
        );
    }
    out.push_str("\n## Outputs\n\n| name | description |\n|---|---|\n");
    let outs = File::parse("outputs.tf", outputs_tf)?;
    for b in outs.blocks("output") {
        let _ = writeln!(out, "| `{}` | {} |", b.name, outs.description(&b)?);
    }
    Ok(out)
}

/// `readme` with the text between its [`BEGIN`] and [`END`] lines replaced by `tables`.
pub fn replace_tables(readme: &str, tables: &str) -> Result<String, String> {
    let start = readme.find(BEGIN).ok_or_else(|| {
        format!("the README has no `{BEGIN}` line: add it and `{END}` where the tables go")
    })? + BEGIN.len();
    let end = readme[start..]
        .find(END)
        .ok_or_else(|| format!("the README has no `{END}` line after `{BEGIN}`: add it"))?
        + start;
    Ok(format!("{}\n{tables}{}", &readme[..start], &readme[end..]))
}

/// A parsed module file, with its name and text for the errors.
struct File<'a> {
    name: &'a str,
    text: &'a str,
    body: Body,
}

/// One `variable` or `output` block: its name and the block.
struct Labelled<'a> {
    name: &'a str,
    block: &'a Block,
}

/// An attribute's expression and its byte offset in the file.
struct Attr {
    expr: Expression,
    at: usize,
}

impl Labelled<'_> {
    fn attr(&self, key: &str) -> Option<Attr> {
        self.block.body.get_attribute(key).map(|a| Attr {
            expr: Expression::from(a.value.clone()),
            at: a.span().map_or(0, |s| s.start),
        })
    }
}

impl<'a> File<'a> {
    fn parse(name: &'a str, text: &'a str) -> Result<Self, ReadError> {
        let body = parse_body(text).map_err(|e| ReadError {
            file: name.to_owned(),
            line: e.location().line(),
            message: format!(
                "this is not valid HCL at column {} ({}): fix the syntax there",
                e.location().column(),
                e.message()
            ),
        })?;
        Ok(File { name, text, body })
    }

    /// The top-level blocks of `kind` with one label, in order (other blocks and attributes are left out).
    fn blocks<'b>(&'b self, kind: &'b str) -> impl Iterator<Item = Labelled<'b>> + 'b {
        self.body
            .get_blocks(kind)
            .filter_map(|block| match block.labels.as_slice() {
                [label] => Some(Labelled {
                    name: label.as_str(),
                    block,
                }),
                _ => None,
            })
    }

    /// An error at byte offset `at`.
    fn error(&self, at: usize, message: String) -> ReadError {
        ReadError {
            file: self.name.to_owned(),
            line: self
                .text
                .get(..at)
                .map_or(1, |t| t.matches('\n').count() + 1),
            message,
        }
    }

    /// The value of `attr`, the attribute `key` of `b`, which must be a literal (no variables or functions).
    fn value(&self, b: &Labelled<'_>, key: &str, attr: Attr) -> Result<Value, ReadError> {
        attr.expr.evaluate(&Context::new()).map_err(|e| {
            self.error(
                attr.at,
                format!(
                    "the {key} of `{}` is not a literal value ({e}): write it as one",
                    b.name
                ),
            )
        })
    }

    /// The description of `b` as one table cell: its text on one line, `|` escaped.
    fn description(&self, b: &Labelled<'_>) -> Result<String, ReadError> {
        let attr = b.attr("description").ok_or_else(|| {
            self.error(
                b.block.span().map_or(0, |s| s.start),
                format!("`{}` has no description: give it one", b.name),
            )
        })?;
        let at = attr.at;
        match self.value(b, "description", attr)? {
            Value::String(text) => Ok(text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace('|', "\\|")),
            _ => Err(self.error(
                at,
                format!(
                    "the description of `{}` is not a string: write it as a quoted string or heredoc",
                    b.name
                ),
            )),
        }
    }
}

/// `value` the way `terraform fmt` writes a short expression, on one line: `{ a = b, c = d }`, `f(x)`,
/// `["a", "b"]`. Line ends left inside it (a heredoc in a type) become spaces.
fn one_line<T: Format>(value: T) -> String {
    let mut f = Formatter::builder()
        .compact(true)
        .prefer_ident_keys(true)
        .build_vec();
    value
        .format_string(&mut f)
        .unwrap_or_default()
        .split('\n')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` as a code span inside a table cell: `|` escaped, fenced with more backticks than it holds in a row.
fn code(text: &str) -> String {
    let mut run = 0;
    let mut longest = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if longest > 0 { " " } else { "" };
    format!("{fence}{pad}{}{pad}{fence}", text.replace('|', "\\|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_from_variables_and_outputs() {
        let vars = r#"
# comment { with a brace
variable "name" {
  description = "The name: `a|b`, with \"quotes\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{1,3}$", var.name)) && "${var.name}x" != "}"
    error_message = "Bad."
  }
}

variable "items" {
  description = <<-EOT
    Items by key:
      `a` and `b`.
  EOT
  type = map(object({
    a = string
    b = list(string)
  }))
  default = {}
}

/* block comment */
variable "mode" {
  description = "Mode."
  type        = string
  default     = "auto" // trailing
}
"#;
        let outs = "output \"x\" {\n  description = \"X.\"\n  value = { a = 1 }\n}\nlocals {\n  y = 1\n}\n";
        let t = tables(vars, outs).unwrap();
        assert_eq!(
            t,
            "## Inputs\n\n| name | type | default | description |\n|---|---|---|---|\n\
             | `name` | `string` | required | The name: `a\\|b`, with \"quotes\". |\n\
             | `items` | `map(object({ a = string, b = list(string) }))` | `{}` | Items by key: `a` and `b`. |\n\
             | `mode` | `string` | `\"auto\"` | Mode. |\n\
             \n## Outputs\n\n| name | description |\n|---|---|\n| `x` | X. |\n"
        );
    }

    /// The table row of one variable block.
    fn row(variable: &str) -> String {
        let t = tables(variable, "").unwrap();
        t.lines().nth(4).unwrap().to_owned()
    }

    #[test]
    fn types_and_defaults_on_one_line() {
        let v = "variable \"a\" {\n  description = \"A.\"\n  type = list(object({\n    ip        = string\n    hostnames = list(string)\n  }))\n  default = [\n    { ip = \"10.0.0.1\", hostnames = [\"a\", \"b\"] },\n  ]\n}\n";
        assert_eq!(
            row(v),
            "| `a` | `list(object({ ip = string, hostnames = list(string) }))` | \
             `[{ ip = \"10.0.0.1\", hostnames = [\"a\", \"b\"] }]` | A. |"
        );
        // A default is its value: heredoc text and escapes resolved, on one line; `|` escaped for the table.
        let v = "variable \"b\" {\n  description = \"B.\"\n  default = <<-EOT\n    x | y\n    z\n  EOT\n}\n";
        assert_eq!(row(v), "| `b` | `any` | `\"x \\| y\\nz\\n\"` | B. |");
        let v =
            "variable \"c\" {\n  description = \"C.\"\n  type = string\n  default = \"`x`\"\n}\n";
        assert_eq!(row(v), "| `c` | `string` | `` \"`x`\" `` | C. |");
        let v = "variable \"d\" {\n  description = \"D.\"\n  type = number\n  default = null\n}\n";
        assert_eq!(row(v), "| `d` | `number` | `null` | D. |");
    }

    #[test]
    fn malformed_files_name_the_file_and_line() {
        let e = tables("variable \"a\" {\n  description = \"x\n}\n", "").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("variables.tf", 2), "{e}");
        assert!(e.message.contains("not valid HCL at column"), "{e}");
        let e = tables("", "output \"a\" {\n  description = \"x\"\n\n  value = {\n").unwrap_err();
        assert_eq!(e.file, "outputs.tf", "{e}");
        assert!(e.line >= 4, "{e}");
        let e = tables(
            "variable \"a\" {\n  description = \"x\"\n  default = [\n}\n",
            "",
        )
        .unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("variables.tf", 4), "{e}");
    }

    /// The error for these files, which must start with `start`.
    fn fails_with(vars: &str, outs: &str, start: &str) {
        let e = tables(vars, outs).unwrap_err().to_string();
        assert!(e.starts_with(start), "{e}");
    }

    #[test]
    fn descriptions_and_defaults_must_be_literals() {
        fails_with(
            "\nvariable \"a\" {\n  type = string\n}\n",
            "",
            "variables.tf, line 2: `a` has no description: give it one",
        );
        fails_with(
            "variable \"a\" {\n  description = var.x\n}\n",
            "",
            "variables.tf, line 2: the description of `a` is not a literal value (undefined variable",
        );
        fails_with(
            "variable \"a\" {\n  description = 1\n}\n",
            "",
            "variables.tf, line 2: the description of `a` is not a string",
        );
        fails_with(
            "variable \"a\" {\n  description = \"A.\"\n  default = upper(\"x\")\n}\n",
            "",
            "variables.tf, line 3: the default of `a` is not a literal value (undefined function",
        );
        fails_with(
            "",
            "locals {}\n\noutput \"o\" {\n  value = 1\n}\n",
            "outputs.tf, line 3: `o` has no description: give it one",
        );
    }

    #[test]
    fn replace_tables_keeps_the_rest() {
        let readme = format!("# m\n\n{BEGIN}\nold\n{END}\n\nmore\n");
        assert_eq!(
            replace_tables(&readme, "new\n").unwrap(),
            format!("# m\n\n{BEGIN}\nnew\n{END}\n\nmore\n")
        );
        assert!(replace_tables("# m\n", "x")
            .unwrap_err()
            .contains("BEGIN_TF_DOCS"));
    }
}
