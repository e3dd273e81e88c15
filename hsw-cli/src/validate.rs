//! `hsw-cli validate`.

use std::io::{IsTerminal, Write};
use std::path::Path;

use hsw_core::config::{self, DEFAULT_CONFIG, DEFAULT_CONFIG_NAME};

use crate::{exit, Format};

/// Reads a config file, or the embedded default. Errors are sentences for the operator.
pub fn read_config(file: Option<&Path>) -> Result<(String, String), String> {
    match file {
        None => Ok((DEFAULT_CONFIG_NAME.to_owned(), DEFAULT_CONFIG.to_owned())),
        Some(p) => match std::fs::read(p) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(s) => Ok((p.display().to_string(), s)),
                Err(e) => Err(format!(
                    "{} is not UTF-8 text (invalid byte at offset {})",
                    p.display(),
                    e.utf8_error().valid_up_to()
                )),
            },
            Err(e) => Err(format!("cannot read {}: {e}", p.display())),
        },
    }
}

/// Runs `validate`; returns the exit code.
pub fn run(file: Option<&Path>, format: Format, out: &mut dyn Write) -> u8 {
    let (name, source) = match read_config(file) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CANNOT_RUN;
        }
    };
    let validated = config::validate_str(&source);
    let written = match format {
        Format::Text => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            out.write_all(
                validated
                    .report
                    .render_text(&name, &source, color)
                    .as_bytes(),
            )
        }
        Format::Json => {
            let mut s =
                serde_json::to_string_pretty(&validated.report.to_json()).unwrap_or_default();
            s.push('\n');
            out.write_all(s.as_bytes())
        }
    };
    if written.is_err() {
        return exit::CANNOT_RUN;
    }
    if validated.report.has_errors() {
        exit::INVALID
    } else {
        exit::OK
    }
}
