//! The one error type of hsw-cli: a sentence for the operator (what failed, where, and the fix) and the exit
//! code it maps to (see [`crate::exit`]).

use crate::exit;

/// The troubleshooting page: the symptom, cause and fix of every `check` id, every step `up` stops at, and every
/// `down:` line of `status`.
pub const TROUBLESHOOTING: &str = "docs/troubleshooting.md";

/// A link to the section of [`TROUBLESHOOTING`] with this heading: GitHub's anchor (lower case; letters, digits,
/// `-` and `_` kept, spaces to `-`, the rest dropped).
pub fn troubleshooting(heading: &str) -> String {
    let anchor: String = heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect();
    format!("{TROUBLESHOOTING}#{anchor}")
}

/// Why a command stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input or the host is not acceptable (exit 1).
    #[error("{0}")]
    Invalid(String),
    /// The command could not run: a missing file or program, bad usage (exit 2).
    #[error("{0}")]
    CannotRun(String),
    /// The cluster definition is not valid; `report` is its rendered diagnostics (exit 1).
    #[error("{name} is not valid")]
    InvalidConfig {
        /// The name the config is shown under.
        name: String,
        /// The rendered diagnostics (text, no colour).
        report: String,
        /// How many diagnostics are errors.
        errors: usize,
    },
}

impl Error {
    /// An [`Error::Invalid`] from anything printable.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }

    /// An [`Error::CannotRun`] from anything printable.
    pub fn cannot_run(message: impl Into<String>) -> Error {
        Error::CannotRun(message.into())
    }

    /// The same error with `; see <link>` at the end of its sentence (a config's diagnostics stay as they are).
    pub fn see(self, link: &str) -> Error {
        match self {
            Error::Invalid(m) => Error::Invalid(format!("{m}; see {link}")),
            Error::CannotRun(m) => Error::CannotRun(format!("{m}; see {link}")),
            other => other,
        }
    }

    /// The exit code of this error.
    pub fn code(&self) -> u8 {
        match self {
            Error::Invalid(_) | Error::InvalidConfig { .. } => exit::INVALID,
            Error::CannotRun(_) => exit::CANNOT_RUN,
        }
    }

    /// Prints the error to stderr (`error: <sentence>`; an invalid config prints its diagnostics) and
    /// returns its exit code.
    pub fn report(&self) -> u8 {
        match self {
            Error::InvalidConfig { report, .. } => eprintln!("{}", report.trim_end()),
            other => eprintln!("error: {other}"),
        }
        self.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_kind() {
        assert_eq!(Error::invalid("x").code(), exit::INVALID);
        assert_eq!(Error::cannot_run("x").code(), exit::CANNOT_RUN);
        let e = Error::InvalidConfig {
            name: "c.yaml".into(),
            report: "r".into(),
            errors: 1,
        };
        assert_eq!(e.code(), exit::INVALID);
        assert_eq!(e.to_string(), "c.yaml is not valid");
        assert_eq!(
            Error::cannot_run("cannot read x").to_string(),
            "cannot read x"
        );
    }

    #[test]
    fn links_take_githubs_anchors_and_end_the_sentence() {
        assert_eq!(
            troubleshooting("up step: terraform apply"),
            "docs/troubleshooting.md#up-step-terraform-apply"
        );
        assert_eq!(
            troubleshooting("cpu.virtualization"),
            "docs/troubleshooting.md#cpuvirtualization"
        );
        assert_eq!(
            troubleshooting("What `hsw-cli status` reports down"),
            "docs/troubleshooting.md#what-hsw-cli-status-reports-down"
        );
        let e = Error::invalid("it broke").see("docs/t.md#x");
        assert_eq!(e.to_string(), "it broke; see docs/t.md#x");
        assert_eq!(e.code(), exit::INVALID);
        assert_eq!(Error::cannot_run("no").see("L").code(), exit::CANNOT_RUN);
    }
}
