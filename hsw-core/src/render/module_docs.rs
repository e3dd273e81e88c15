//! terraform-docs-style tables of a Terraform module's inputs and outputs, read from its `variables.tf` and
//! `outputs.tf`: each `variable` block's `description`, `type` and `default`, each `output` block's
//! `description`. The module READMEs carry them between [`BEGIN`] and [`END`]; `hsw-cli/tests/modules_reuse.rs`
//! fails when a README's tables differ from its module and rewrites them with `UPDATE_EXPECT=1`.
//!
//! The reader knows the part of HCL's native syntax that module files use: blocks with quoted labels,
//! attributes whose expressions end at the line's end outside brackets, quoted strings with escapes and
//! `${...}` templates, heredocs (`<<EOT` and the indented `<<-EOT`), and the three comment forms. It reads
//! only; expressions other than the description are shown as written, on one line.

use std::fmt::Write as _;

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
    for b in blocks("variables.tf", variables_tf, "variable")? {
        let ty = b.attr("type").map_or_else(|| "any".to_owned(), one_line);
        let default = b
            .attr("default")
            .map_or_else(|| "required".to_owned(), |d| format!("`{}`", one_line(d)));
        let _ = writeln!(
            out,
            "| `{}` | `{ty}` | {default} | {} |",
            b.name,
            b.description("variables.tf")?
        );
    }
    out.push_str("\n## Outputs\n\n| name | description |\n|---|---|\n");
    for b in blocks("outputs.tf", outputs_tf, "output")? {
        let _ = writeln!(out, "| `{}` | {} |", b.name, b.description("outputs.tf")?);
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

/// One `variable` or `output` block: its name and its attributes as written.
#[derive(Debug)]
struct Block {
    name: String,
    line: usize,
    attrs: Vec<(String, String)>,
}

impl Block {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The description as one table cell: a string literal or heredoc, on one line, `|` escaped.
    fn description(&self, file: &str) -> Result<String, ReadError> {
        let err = |message: String| ReadError {
            file: file.to_owned(),
            line: self.line,
            message,
        };
        let raw = self
            .attr("description")
            .ok_or_else(|| err(format!("`{}` has no description: give it one", self.name)))?;
        let text = string_value(raw).ok_or_else(|| {
            err(format!(
                "the description of `{}` is not a string literal or heredoc: write it as one",
                self.name
            ))
        })?;
        Ok(text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "\\|"))
    }
}

/// The top-level blocks of `kind` in a file, in order (other blocks and attributes are read and left out).
fn blocks(file: &str, text: &str, kind: &str) -> Result<Vec<Block>, ReadError> {
    let mut s = Scanner { text, pos: 0 };
    let items = s.body(true).map_err(|(pos, message)| ReadError {
        file: file.to_owned(),
        line: text[..pos].matches('\n').count() + 1,
        message,
    })?;
    Ok(items
        .into_iter()
        .filter_map(|i| match i {
            Item::Block {
                kind: k,
                labels,
                line,
                body,
            } if k == kind && labels.len() == 1 => Some(Block {
                name: labels.into_iter().next().unwrap_or_default(),
                line,
                attrs: body
                    .into_iter()
                    .filter_map(|i| match i {
                        Item::Attr(k, v) => Some((k, v)),
                        Item::Block { .. } => None,
                    })
                    .collect(),
            }),
            _ => None,
        })
        .collect())
}

#[derive(Debug)]
enum Item {
    Attr(String, String),
    Block {
        kind: String,
        labels: Vec<String>,
        line: usize,
        body: Vec<Item>,
    },
}

/// A position in the text and what was wrong there.
type Fail = (usize, String);

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Moves past one character.
    fn bump(&mut self) {
        self.pos += self.rest().chars().next().map_or(1, char::len_utf8);
    }

    fn fail<T>(&self, message: &str) -> Result<T, Fail> {
        Err((self.pos, message.to_owned()))
    }

    /// Skips blanks and comments, and line ends when `newlines`.
    fn skip_space(&mut self, newlines: bool) -> Result<(), Fail> {
        loop {
            let r = self.rest();
            if r.starts_with('#') || r.starts_with("//") {
                self.pos += r.find('\n').unwrap_or(r.len());
            } else if r.starts_with("/*") {
                match r.find("*/") {
                    Some(i) => self.pos += i + 2,
                    None => return self.fail("a `/*` comment is not closed: end it with `*/`"),
                }
            } else if matches!(self.peek(), Some(b' ' | b'\t' | b'\r'))
                || (newlines && self.peek() == Some(b'\n'))
            {
                self.pos += 1;
            } else {
                return Ok(());
            }
        }
    }

    fn ident(&mut self) -> Option<String> {
        let r = self.rest();
        let n = r
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
            .count();
        if n == 0 || !r.as_bytes()[0].is_ascii_alphabetic() && r.as_bytes()[0] != b'_' {
            return None;
        }
        self.pos += n;
        Some(r[..n].to_owned())
    }

    /// The items of a body, up to its closing `}` (consumed) or, at the top, the end of the text.
    fn body(&mut self, top: bool) -> Result<Vec<Item>, Fail> {
        let mut items = Vec::new();
        loop {
            self.skip_space(true)?;
            match self.peek() {
                None if top => return Ok(items),
                None => return self.fail("a block is not closed: end it with `}`"),
                Some(b'}') if !top => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => {}
            }
            let start = self.pos;
            let Some(name) = self.ident() else {
                return self.fail("expected an attribute or block name here");
            };
            self.skip_space(false)?;
            if self.peek() == Some(b'=') && !self.rest().starts_with("==") {
                self.pos += 1;
                let value = self.expr()?;
                items.push(Item::Attr(name, value));
                continue;
            }
            let mut labels = Vec::new();
            while self.peek() == Some(b'"') {
                let from = self.pos;
                self.string()?;
                let label = string_value(&self.text[from..self.pos])
                    .ok_or((from, "a block label must be a plain string".to_owned()))?;
                labels.push(label);
                self.skip_space(false)?;
            }
            if self.peek() != Some(b'{') {
                return self.fail("expected `=` or `{` after the name");
            }
            self.pos += 1;
            let line = self.text[..start].matches('\n').count() + 1;
            let body = self.body(false)?;
            items.push(Item::Block {
                kind: name,
                labels,
                line,
                body,
            });
        }
    }

    /// An attribute's expression as written (trimmed): up to the line's end outside brackets, a comment, or a
    /// `}` that closes the enclosing block.
    fn expr(&mut self) -> Result<String, Fail> {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            let r = self.rest();
            match c {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'<' if r.starts_with("<<") && heredoc_marker(r).is_some() => {
                    self.heredoc()?;
                    continue;
                }
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' if depth == 0 => break,
                b')' | b']' | b'}' => depth -= 1,
                b'\n' if depth == 0 => break,
                b'#' | b'/' if r.starts_with('#') || r.starts_with("//") || r.starts_with("/*") => {
                    if depth == 0 {
                        break;
                    }
                    self.skip_space(false)?;
                    continue;
                }
                _ => {}
            }
            self.bump();
        }
        if depth > 0 {
            return Err((
                start,
                "a bracket is not closed in this expression".to_owned(),
            ));
        }
        Ok(self.text[start..self.pos].trim().to_owned())
    }

    /// A quoted string with escapes and `${...}` / `%{...}` templates (which may hold strings), from its `"`.
    fn string(&mut self) -> Result<(), Fail> {
        let start = self.pos;
        self.pos += 1;
        loop {
            let r = self.rest();
            match r.as_bytes().first() {
                None | Some(b'\n') => {
                    return Err((
                        start,
                        "a string is not closed on its line: end it with `\"`".to_owned(),
                    ))
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.bump();
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'$' | b'%') if r.starts_with("${") || r.starts_with("%{") => {
                    self.pos += 1;
                    self.template()?;
                }
                Some(_) => self.bump(),
            }
        }
    }

    /// A template's `{...}`, from its `{`.
    fn template(&mut self) -> Result<(), Fail> {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        self.pos += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.bump();
        }
        Err((
            start,
            "a `${` template is not closed: end it with `}`".to_owned(),
        ))
    }

    /// A heredoc, from its `<<` to the end of its closing marker's line.
    fn heredoc(&mut self) -> Result<(), Fail> {
        let start = self.pos;
        let (marker, _) =
            heredoc_marker(self.rest()).ok_or((start, "a heredoc needs a marker".to_owned()))?;
        let Some(first) = self.rest().find('\n') else {
            return self.fail("a heredoc's text must start on the next line");
        };
        self.pos += first + 1;
        loop {
            let r = self.rest();
            if r.is_empty() {
                return Err((
                    start,
                    format!("the heredoc is not closed: end it with a line `{marker}`"),
                ));
            }
            let line_end = r.find('\n').unwrap_or(r.len());
            let line = &r[..line_end];
            self.pos += line_end;
            if line.trim() == marker {
                return Ok(());
            }
            self.pos += 1.min(self.rest().len());
        }
    }
}

/// A heredoc's marker and whether it is the indented form (`<<-`), when `r` starts one.
fn heredoc_marker(r: &str) -> Option<(String, bool)> {
    let r = r.strip_prefix("<<")?;
    let (r, indented) = match r.strip_prefix('-') {
        Some(r) => (r, true),
        None => (r, false),
    };
    let n = r
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    (n > 0 && r.as_bytes()[0].is_ascii_alphabetic()).then(|| (r[..n].to_owned(), indented))
}

/// The value of an expression that is one string literal or one heredoc; `None` for anything else.
fn string_value(raw: &str) -> Option<String> {
    if let Some((marker, indented)) = heredoc_marker(raw) {
        let body = raw.split_once('\n')?.1;
        let body = body.trim_end().strip_suffix(marker.as_str())?;
        let lines: Vec<&str> = body.lines().collect();
        let indent = if indented {
            lines
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0)
        } else {
            0
        };
        let text: Vec<&str> = lines
            .iter()
            .map(|l| l.get(indent..).unwrap_or(""))
            .collect();
        return Some(text.join("\n").trim_end().to_owned());
    }
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                c @ ('"' | '\\') => out.push(c),
                _ => return None,
            },
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out.replace("$${", "${").replace("%%{", "%{"))
}

/// An expression on one line the way `terraform fmt` writes a short one: `{ a = b, c = d }`, `f(x)`, `[1, 2]`.
/// Line ends between object attributes become `, `.
fn one_line(raw: &str) -> String {
    let mut tokens: Vec<String> = Vec::new();
    let mut s = Scanner { text: raw, pos: 0 };
    while let Some(c) = s.peek() {
        let from = s.pos;
        match c {
            b' ' | b'\t' | b'\r' => s.pos += 1,
            b'\n' => {
                s.pos += 1;
                tokens.push("\n".to_owned());
            }
            b'"' => {
                if s.string().is_err() {
                    s.pos = raw.len();
                }
                tokens.push(raw[from..s.pos].to_owned());
            }
            b'(' | b')' | b'[' | b']' | b'{' | b'}' | b',' | b'=' | b':' => {
                s.pos += 1;
                tokens.push((c as char).to_string());
            }
            _ => {
                let n = s
                    .rest()
                    .find(|c: char| c.is_whitespace() || "()[]{},=:\"".contains(c))
                    .unwrap_or(s.rest().len())
                    .max(1);
                s.pos += n;
                tokens.push(raw[from..s.pos].to_owned());
            }
        }
    }
    // Line ends: a separator between two items, nothing after an opener or a comma or before a closer.
    let mut sig: Vec<&str> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if t == "\n" {
            let prev = sig.last().copied();
            let next = tokens[i + 1..]
                .iter()
                .find(|t| *t != "\n")
                .map(String::as_str);
            let after_open = matches!(prev, None | Some("{" | "(" | "[" | ","));
            let before_close = matches!(next, None | Some("}" | ")" | "]"));
            if !after_open && !before_close {
                sig.push(",");
            }
        } else if matches!(t.as_str(), "}" | ")" | "]") && sig.last() == Some(&",") {
            sig.pop();
            sig.push(t);
        } else {
            sig.push(t);
        }
    }
    let mut out = String::new();
    for (i, t) in sig.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| sig[p]);
        let spaced = match (prev, *t) {
            (None, _) => false,
            (Some("{"), "}") => false,
            (Some("{"), _) | (_, "}") => true,
            (Some("(" | "["), _) | (_, ")" | "]" | "," | "(" | "[") => false,
            (Some(","), _) | (_, "=" | ":") | (Some("=" | ":"), _) => true,
            (Some(p), _) => !matches!(p, "(" | "["),
        };
        if spaced {
            out.push(' ');
        }
        out.push_str(t);
    }
    out
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

    #[test]
    fn one_line_keeps_inline_forms() {
        assert_eq!(
            one_line("list(object({ ip = string, hostnames = list(string) }))"),
            "list(object({ ip = string, hostnames = list(string) }))"
        );
        assert_eq!(one_line("[\n  \"a\",\n  \"b\",\n]"), "[\"a\", \"b\"]");
        assert_eq!(one_line("null"), "null");
    }

    #[test]
    fn unreadable_files_name_the_line() {
        let e = tables("variable \"a\" {\n  description = \"x\n}\n", "").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("variables.tf", 2));
        assert!(e.message.contains("not closed"), "{e}");
        let e = tables("variable \"a\" {\n  type = string\n}\n", "").unwrap_err();
        assert!(e.to_string().contains("`a` has no description"), "{e}");
        let e = tables("variable \"a\" {\n  description = var.x\n}\n", "").unwrap_err();
        assert!(e.to_string().contains("not a string literal"), "{e}");
        let e = tables("variable \"a\" {\n  description = \"x\"\n", "").unwrap_err();
        assert!(e.message.contains("block is not closed"), "{e}");
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
