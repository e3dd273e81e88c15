//! A tiny HCL writer whose output is already in `terraform fmt` form: attributes of consecutive single-line
//! values are aligned on `=`, multi-line values and blank lines end an alignment run, lists and objects that
//! span lines carry trailing commas.

use std::fmt::Write as _;

/// An HCL expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A string literal (escaped when written).
    Str(String),
    /// An expression written verbatim (a reference, a number, `null`, a function call).
    Raw(String),
    /// A list: on one line when short and every element is one line, else one element per line.
    List(Vec<Expr>),
    /// An object over several lines, keys aligned.
    Object(Vec<(String, Expr)>),
    /// An object on one line: `{ a = 1, b = 2 }`.
    Inline(Vec<(String, Expr)>),
}

impl Expr {
    /// A string literal.
    pub fn str(s: impl Into<String>) -> Expr {
        Expr::Str(s.into())
    }

    /// A verbatim expression.
    pub fn raw(s: impl Into<String>) -> Expr {
        Expr::Raw(s.into())
    }

    /// A number.
    pub fn num(n: impl Into<u64>) -> Expr {
        Expr::Raw(n.into().to_string())
    }

    /// A boolean.
    pub fn bool(b: bool) -> Expr {
        Expr::Raw(b.to_string())
    }

    /// A string literal, or `null`.
    pub fn opt_str(s: Option<&str>) -> Expr {
        s.map_or_else(|| Expr::raw("null"), Expr::str)
    }
}

/// One item of a body (a file, a block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `key = value`.
    Attr(String, Expr),
    /// An empty line.
    Blank,
    /// `# text` (one line per line of text).
    Comment(String),
    /// `header {` body `}`, such as `module "hpc"`.
    Block(String, Vec<Item>),
}

/// An HCL string literal: quotes, backslashes, control characters and template sequences escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An object key or attribute name: bare when it is an identifier, else quoted.
pub fn key(s: &str) -> String {
    let ident = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ident {
        s.to_owned()
    } else {
        quote(s)
    }
}

const INDENT: &str = "  ";
const MAX_INLINE_LIST: usize = 100;

fn render_expr(e: &Expr, indent: usize) -> String {
    match e {
        Expr::Str(s) => quote(s),
        Expr::Raw(s) => s.clone(),
        Expr::List(items) => {
            if items.is_empty() {
                return "[]".into();
            }
            let parts: Vec<String> = items.iter().map(|i| render_expr(i, indent + 1)).collect();
            let one_line = format!("[{}]", parts.join(", "));
            if !one_line.contains('\n') && one_line.len() <= MAX_INLINE_LIST {
                return one_line;
            }
            let pad = INDENT.repeat(indent + 1);
            let mut out = String::from("[\n");
            for p in parts {
                let _ = writeln!(out, "{pad}{p},");
            }
            out.push_str(&INDENT.repeat(indent));
            out.push(']');
            out
        }
        Expr::Object(entries) => {
            if entries.is_empty() {
                return "{}".into();
            }
            let items: Vec<Item> = entries
                .iter()
                .map(|(k, v)| Item::Attr(k.clone(), v.clone()))
                .collect();
            let mut out = String::from("{\n");
            render_body(&items, indent + 1, &mut out);
            out.push_str(&INDENT.repeat(indent));
            out.push('}');
            out
        }
        Expr::Inline(entries) => {
            if entries.is_empty() {
                return "{}".into();
            }
            let parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), render_expr(v, indent)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
    }
}

/// An expression as one would write it at the top level (an inline object or a short list stays on one line).
pub fn inline(e: &Expr) -> String {
    render_expr(e, 0)
}

/// Writes a body at an indentation level.
pub fn render_body(items: &[Item], indent: usize, out: &mut String) {
    let pad = INDENT.repeat(indent);
    let mut i = 0;
    while i < items.len() {
        match &items[i] {
            Item::Attr(..) => {
                // An alignment run: consecutive attributes with one-line values.
                let mut run = Vec::new();
                while let Some(Item::Attr(k, v)) = items.get(i) {
                    let value = render_expr(v, indent);
                    let multi = value.contains('\n');
                    if multi && !run.is_empty() {
                        break;
                    }
                    run.push((key(k), value));
                    i += 1;
                    if multi {
                        break;
                    }
                }
                let width = if run.len() == 1 && run[0].1.contains('\n') {
                    0
                } else {
                    run.iter().map(|(k, _)| k.len()).max().unwrap_or(0)
                };
                for (k, v) in run {
                    let _ = writeln!(out, "{pad}{k:<width$} = {v}");
                }
            }
            Item::Blank => {
                out.push('\n');
                i += 1;
            }
            Item::Comment(text) => {
                for line in text.lines() {
                    if line.is_empty() {
                        let _ = writeln!(out, "{pad}#");
                    } else {
                        let _ = writeln!(out, "{pad}# {line}");
                    }
                }
                i += 1;
            }
            Item::Block(header, body) => {
                if body.is_empty() {
                    let _ = writeln!(out, "{pad}{header} {{}}");
                } else {
                    let _ = writeln!(out, "{pad}{header} {{");
                    render_body(body, indent + 1, out);
                    let _ = writeln!(out, "{pad}}}");
                }
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("${x} %{y} $z"), r#""$${x} %%{y} $z""#);
        assert_eq!(quote("a\nb"), r#""a\nb""#);
    }

    #[test]
    fn keys_are_bare_when_identifiers() {
        assert_eq!(key("hsw-dev-compute-1"), "hsw-dev-compute-1");
        assert_eq!(key("GPU-0.mig"), "\"GPU-0.mig\"");
        assert_eq!(key("1a"), "\"1a\"");
    }

    #[test]
    fn alignment_stops_at_multiline_values() {
        let items = vec![
            Item::Attr("source".into(), Expr::str("x")),
            Item::Attr("attach_devices".into(), Expr::bool(false)),
            Item::Attr(
                "m".into(),
                Expr::Object(vec![
                    ("a".into(), Expr::num(1u32)),
                    ("bbb".into(), Expr::num(2u32)),
                ]),
            ),
            Item::Attr("w".into(), Expr::Object(vec![])),
        ];
        let mut out = String::new();
        render_body(&items, 0, &mut out);
        assert_eq!(
            out,
            "source         = \"x\"\nattach_devices = false\nm = {\n  a   = 1\n  bbb = 2\n}\nw = {}\n"
        );
    }
}
