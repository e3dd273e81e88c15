//! Diagnostics (errors and warnings shown by Terraform) and attribute paths.

use std::fmt;

/// One step of an [`AttrPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathStep {
    /// An attribute of an object (or a nested block, by its type name).
    Attr(String),
    /// A map key.
    Key(String),
    /// A list or tuple index.
    Index(i64),
}

/// A path to a value inside a resource's configuration or state: `network[0].name`, `tags["env"]`.
///
/// Diagnostics that carry a path make Terraform point at the offending line of configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AttrPath(pub Vec<PathStep>);

impl AttrPath {
    /// The empty path (the whole value).
    pub fn root() -> AttrPath {
        AttrPath(Vec::new())
    }

    /// A path naming one top-level attribute.
    pub fn attr(name: impl Into<String>) -> AttrPath {
        AttrPath(vec![PathStep::Attr(name.into())])
    }

    /// This path extended by an attribute step.
    #[must_use]
    pub fn then_attr(&self, name: impl Into<String>) -> AttrPath {
        self.then(PathStep::Attr(name.into()))
    }

    /// This path extended by a map key step.
    #[must_use]
    pub fn then_key(&self, key: impl Into<String>) -> AttrPath {
        self.then(PathStep::Key(key.into()))
    }

    /// This path extended by a list index step.
    #[must_use]
    pub fn then_index(&self, index: usize) -> AttrPath {
        self.then(PathStep::Index(i64::try_from(index).unwrap_or(i64::MAX)))
    }

    /// This path extended by one step.
    #[must_use]
    pub fn then(&self, step: PathStep) -> AttrPath {
        let mut steps = self.0.clone();
        steps.push(step);
        AttrPath(steps)
    }

    /// The steps.
    pub fn steps(&self) -> &[PathStep] {
        &self.0
    }

    /// Whether this is the root path.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(root)");
        }
        for (i, step) in self.0.iter().enumerate() {
            match step {
                PathStep::Attr(a) if i == 0 => f.write_str(a)?,
                PathStep::Attr(a) => write!(f, ".{a}")?,
                PathStep::Key(k) => write!(f, "[{k:?}]")?,
                PathStep::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The operation failed.
    Error,
    /// The operation went on; Terraform shows the warning.
    Warning,
}

/// One error or warning for Terraform to show: a one-line summary, a detail (say what failed, on what object,
/// and the fix), and optionally the attribute it is about.
///
/// Never put secret values (attributes marked sensitive) in a summary or detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// One line, shown after "Error:".
    pub summary: String,
    /// The explanation, possibly several lines.
    pub detail: String,
    /// The attribute this is about, if any.
    pub path: Option<AttrPath>,
}

impl Diagnostic {
    /// An error.
    pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            summary: summary.into(),
            detail: detail.into(),
            path: None,
        }
    }

    /// A warning.
    pub fn warning(summary: impl Into<String>, detail: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            summary: summary.into(),
            detail: detail.into(),
            path: None,
        }
    }

    /// This diagnostic, attached to an attribute.
    #[must_use]
    pub fn at(mut self, path: AttrPath) -> Diagnostic {
        self.path = Some(path);
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.summary)?;
        if let Some(p) = &self.path {
            write!(f, " (at {p})")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// A list of diagnostics. The error type of every fallible framework call: any `std::error::Error` converts into
/// it (summary = the error's message, detail = its causes), so `?` works on library errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// No diagnostics.
    pub fn new() -> Diagnostics {
        Diagnostics(Vec::new())
    }

    /// A list holding one error.
    pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Diagnostics {
        Diagnostics(vec![Diagnostic::error(summary, detail)])
    }

    /// A list holding one error about an attribute.
    pub fn error_at(
        path: AttrPath,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) -> Diagnostics {
        Diagnostics(vec![Diagnostic::error(summary, detail).at(path)])
    }

    /// Adds one diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Adds an error.
    pub fn add_error(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Diagnostic::error(summary, detail));
    }

    /// Adds a warning.
    pub fn add_warning(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Diagnostic::warning(summary, detail));
    }

    /// Appends all of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// Whether there are none at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The diagnostics.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// `Ok(())` when there is no error, else `Err(self)`: for ending a validation that collected diagnostics.
    pub fn into_result(self) -> Result<Diagnostics, Diagnostics> {
        if self.has_errors() {
            Err(self)
        } else {
            Ok(self)
        }
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Diagnostics {
        Diagnostics(vec![d])
    }
}

impl<E: std::error::Error> From<E> for Diagnostics {
    /// The error's message becomes the summary; its chain of causes, one per line, the detail.
    fn from(e: E) -> Diagnostics {
        let mut detail = Vec::new();
        let mut source = e.source();
        while let Some(s) = source {
            detail.push(s.to_string());
            source = s.source();
        }
        Diagnostics::error(e.to_string(), detail.join("\n"))
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open pool")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn errors_convert_with_their_chain() {
        let d: Diagnostics = Outer(std::io::Error::other("disk full")).into();
        assert!(d.has_errors());
        assert_eq!(d.0[0].summary, "cannot open pool");
        assert_eq!(d.0[0].detail, "disk full");
    }

    #[test]
    fn path_display() {
        let p = AttrPath::attr("net")
            .then_index(0)
            .then_attr("tags")
            .then_key("env");
        assert_eq!(p.to_string(), r#"net[0].tags["env"]"#);
    }
}
