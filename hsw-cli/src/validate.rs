//! `hsw-cli validate`.

use std::io::{IsTerminal, Write};
use std::path::Path;

use hsw_core::config;

use crate::session::read_config;
use crate::{exit, Format};

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
