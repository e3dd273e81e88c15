//! Diagnostics about a configuration file: collected, never thrown, rendered once.
//!
//! Every finding carries a stable rule id, the RFC 6901 pointer of the offending node, a
//! sentence-style message, an optional hint (`did you mean compute_nodes?`), and the 1-based
//! line/column of the node in the source. Text rendering is rustc-style (annotate-snippets);
//! the JSON form is the contract of `hsw-cli validate --format json`.

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// Usable, but probably not what was meant.
    Warning,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    #[serde(skip)]
    pub severity: Severity,
    /// RFC 6901 JSON pointer of the offending node (the parent object for a missing or unknown key).
    pub path: String,
    /// 1-based line of the node, when it is in the file.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the node, when it is in the file.
    pub column: Option<usize>,
    /// What is wrong, as a sentence.
    pub message: String,
    /// Stable id of the rule (`schema.additional-properties`, `network.subnet-overlap`, ...).
    pub rule: String,
    /// How to fix it, when we can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The short label under the caret in the text form (default: the node's name).
    #[serde(skip)]
    pub label: Option<String>,
}

impl Diagnostic {
    /// An error at `path`.
    pub fn error(
        rule: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            path: path.into(),
            line: None,
            column: None,
            message: message.into(),
            rule: rule.into(),
            hint: None,
            label: None,
        }
    }

    /// A warning at `path`.
    pub fn warning(
        rule: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(rule, path, message)
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the label under the caret.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Sets the position.
    #[must_use]
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

/// All findings about one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The findings, errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// Orders findings by position (those without one last), then by path and rule,
    /// and drops exact duplicates.
    pub fn sort(&mut self) {
        self.diagnostics.sort_by(|a, b| {
            (
                a.line.is_none(),
                a.line,
                a.column,
                &a.path,
                &a.rule,
                &a.message,
            )
                .cmp(&(
                    b.line.is_none(),
                    b.line,
                    b.column,
                    &b.path,
                    &b.rule,
                    &b.message,
                ))
        });
        self.diagnostics.dedup();
    }

    /// The JSON form: `{"valid", "errors": [...], "warnings": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "valid": !self.has_errors(),
            "errors": self.errors().collect::<Vec<_>>(),
            "warnings": self.warnings().collect::<Vec<_>>(),
        })
    }

    /// rustc-style text: one block per finding with `file:line:col`, the source line, a caret
    /// under the node, the rule id and the hint; then a summary line.
    pub fn render_text(&self, file: &str, source: &str, color: bool) -> String {
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let index = LineIndex::new(source);
        let mut out = String::new();
        for d in self.diagnostics.iter().take(MAX_SHOWN) {
            let level = match d.severity {
                Severity::Error => Level::ERROR,
                Severity::Warning => Level::WARNING,
            };
            let title = level.primary_title(d.message.as_str()).id(d.rule.as_str());
            let mut group = match (d.line, d.column) {
                (Some(line), Some(column)) => {
                    // Only the line the finding points at goes to the renderer: handing it the whole file
                    // made each finding cost the file's length (quadratic in the number of findings).
                    let (text, first_line, span) = index.line_span(line, column);
                    title.element(
                        Snippet::source(text)
                            .line_start(first_line)
                            .path(file)
                            .annotation(AnnotationKind::Primary.span(span).label(label_for(d))),
                    )
                }
                _ => title.element(annotate_snippets::Origin::path(file)),
            };
            if !d.path.is_empty() {
                group = group.element(Level::NOTE.message(format!("at {}", d.path)));
            }
            if let Some(hint) = &d.hint {
                group = group.element(Level::HELP.message(hint.as_str()));
            }
            out.push_str(&renderer.render(&[group]));
            out.push_str("\n\n");
        }
        if self.diagnostics.len() > MAX_SHOWN {
            let rest = self.diagnostics.len() - MAX_SHOWN;
            out.push_str(&format!(
                "... and {rest} more finding{} not shown (the first {MAX_SHOWN} are above; `--format json` lists \
                 them all)\n",
                plural(rest)
            ));
        }
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        let summary = match (errors, warnings) {
            (0, 0) => format!("{file}: valid"),
            (0, w) => format!("{file}: valid, with {w} warning{}", plural(w)),
            (e, 0) => format!("{file}: invalid: {e} error{}", plural(e)),
            (e, w) => format!(
                "{file}: invalid: {e} error{}, {w} warning{}",
                plural(e),
                plural(w)
            ),
        };
        out.push_str(&summary);
        out.push('\n');
        out
    }
}

/// Most findings `render_text` shows; the rest are counted (the JSON form has them all).
pub const MAX_SHOWN: usize = 200;

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn label_for(d: &Diagnostic) -> String {
    if let Some(label) = &d.label {
        return label.clone();
    }
    match d.path.rsplit('/').next() {
        Some(last) if last.bytes().all(|b| b.is_ascii_digit()) => "here".to_owned(),
        Some(last) if !last.is_empty() => {
            format!("`{}`", last.replace("~1", "/").replace("~0", "~"))
        }
        _ => String::new(),
    }
}

/// Maps 1-based (line, character column) to byte spans.
struct LineIndex<'a> {
    source: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(source: &'a str) -> Self {
        let mut starts = vec![0];
        for (i, b) in source.bytes().enumerate() {
            if b == b'\n' {
                starts.push(i + 1);
            }
        }
        LineIndex { source, starts }
    }

    /// The text a finding at (line, column) is shown in, the 1-based number of its first line, and the token's
    /// byte span inside that text: the one line (with its newline), or the empty end of the file when the line
    /// is past it.
    fn line_span(&self, line: usize, column: usize) -> (&'a str, usize, std::ops::Range<usize>) {
        let span = self.span(line, column);
        let Some(&line_start) = self.starts.get(line.saturating_sub(1)) else {
            let last = self.starts.len();
            let start = self.starts[last - 1];
            return (
                &self.source[start..],
                last,
                span.start - start..span.end - start,
            );
        };
        let line_end = self.source[line_start..]
            .find('\n')
            .map_or(self.source.len(), |i| line_start + i + 1);
        (
            &self.source[line_start..line_end],
            line,
            span.start - line_start..span.end - line_start,
        )
    }

    /// The byte span of the token at (line, column): up to the next space, comma, bracket or
    /// end of line, and never empty unless the line is.
    fn span(&self, line: usize, column: usize) -> std::ops::Range<usize> {
        let Some(&line_start) = self.starts.get(line.saturating_sub(1)) else {
            return self.source.len()..self.source.len();
        };
        let line_end = self.source[line_start..]
            .find('\n')
            .map_or(self.source.len(), |i| line_start + i);
        let text = &self.source[line_start..line_end];
        let start = text
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(line_end, |(i, _)| line_start + i);
        let rest = &self.source[start..line_end];
        let len = match rest.chars().next() {
            Some('"') | Some('\'') => {
                let q = rest.as_bytes()[0];
                rest[1..]
                    .bytes()
                    .position(|b| b == q)
                    .map_or(rest.len(), |i| i + 2)
            }
            _ => {
                let bytes = rest.as_bytes();
                rest.char_indices()
                    .find(|&(i, c)| {
                        matches!(c, ',' | ']' | '}' | '#')
                            || c.is_whitespace()
                            || (c == ':'
                                && bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()))
                    })
                    .map_or(rest.len(), |(i, _)| i)
            }
        };
        let len = if len == 0 {
            rest.chars().next().map_or(0, char::len_utf8)
        } else {
            len
        };
        start..start + len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_covers_the_token() {
        let src = "a: 1\nclusters:\n  hpc: {computenodes: 3}\n";
        let idx = LineIndex::new(src);
        let s = idx.span(3, 9);
        assert_eq!(&src[s], "computenodes");
        let s = idx.span(1, 4);
        assert_eq!(&src[s], "1");
    }

    #[test]
    fn quoted_spans_include_quotes() {
        let src = "x: \"1.2.3.4\"  # c\n";
        let idx = LineIndex::new(src);
        assert_eq!(&src[idx.span(1, 4)], "\"1.2.3.4\"");
    }

    #[test]
    fn text_shows_the_findings_line_with_its_number() {
        let src = "a: 1\nb: 2\nc: oops\nd: 4\n";
        let mut r = Report::default();
        r.diagnostics
            .push(Diagnostic::error("r.x", "/c", "bad").at(3, 4));
        let text = r.render_text("f.yaml", src, false);
        assert!(text.contains("--> f.yaml:3:4"), "{text}");
        assert!(text.contains("3 | c: oops"), "{text}");
        assert!(!text.contains("b: 2") && !text.contains("d: 4"), "{text}");
        // A position past the end of the file still renders.
        let mut r = Report::default();
        r.diagnostics
            .push(Diagnostic::error("r.x", "", "bad").at(99, 1));
        assert!(r.render_text("f.yaml", src, false).contains("bad"));
    }

    #[test]
    fn text_caps_the_findings_shown_and_counts_the_rest() {
        let src = "k: v\n".repeat(3);
        let mut r = Report::default();
        for i in 0..MAX_SHOWN + 7 {
            r.diagnostics
                .push(Diagnostic::error("r.x", format!("/k{i}"), format!("finding {i}")).at(1, 1));
        }
        let text = r.render_text("f.yaml", &src, false);
        assert_eq!(text.matches("error[r.x]").count(), MAX_SHOWN, "{text}");
        assert!(text.contains("... and 7 more findings not shown"), "{text}");
        assert!(text.ends_with(&format!("f.yaml: invalid: {} errors\n", MAX_SHOWN + 7)));
    }

    #[test]
    fn json_form() {
        let mut r = Report::default();
        r.diagnostics
            .push(Diagnostic::error("r.x", "/a", "bad").at(1, 2));
        r.diagnostics.push(Diagnostic::warning("r.y", "/b", "meh"));
        let j = r.to_json();
        assert_eq!(j["valid"], false);
        assert_eq!(j["errors"][0]["line"], 1);
        assert_eq!(j["errors"][0]["rule"], "r.x");
        assert_eq!(j["warnings"][0]["line"], serde_json::Value::Null);
    }
}
