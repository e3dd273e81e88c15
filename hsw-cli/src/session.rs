//! The session every command that reads cluster.yaml starts from: the config read (from its file or the
//! embedded default), validated and GPU-planned once, its warnings kept to be printed once, and the name and
//! source it is shown under in diagnostics.

use std::path::{Path, PathBuf};

use hsw_core::config::{
    self, ClusterConfig, DEFAULT_CONFIG, DEFAULT_CONFIG_NAME, MAX_SOURCE_BYTES,
};
use hsw_core::diag::Severity;
use hsw_core::gpu::plan::GpuPlan;

use crate::error::Error;

/// A read, validated and planned cluster definition.
#[derive(Debug)]
pub struct Session {
    /// The name the config is shown under: the path as given, or the embedded default's name.
    pub name: String,
    /// The file it was read from (`None`: the embedded default).
    pub file: Option<PathBuf>,
    /// The text of the config.
    pub source: String,
    /// The valid config.
    pub config: ClusterConfig,
    plan: Result<GpuPlan, String>,
    warnings: Option<String>,
}

/// Reads a config file, or the embedded default: `(name shown, text)`. Only a regular file of at most
/// [`MAX_SOURCE_BYTES`] is read: a device such as `/dev/zero` would grow without end and a FIFO would block,
/// so the file is opened without blocking and refused by its type before anything is read.
pub fn read_config(file: Option<&Path>) -> Result<(String, String), Error> {
    use std::os::unix::fs::OpenOptionsExt;

    let Some(p) = file else {
        return Ok((DEFAULT_CONFIG_NAME.to_owned(), DEFAULT_CONFIG.to_owned()));
    };
    let cannot = |e: std::io::Error| Error::cannot_run(format!("cannot read {}: {e}", p.display()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .map_err(cannot)?;
    let meta = f.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(Error::cannot_run(format!(
            "{} is not a regular file; give the path of a cluster definition (a YAML file)",
            p.display()
        )));
    }
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(too_large(p));
    }
    let bytes = hsw_core::fsx::read_at_most(f, MAX_SOURCE_BYTES)
        .map_err(cannot)?
        .ok_or_else(|| too_large(p))?;
    String::from_utf8(bytes)
        .map(|s| (p.display().to_string(), s))
        .map_err(|e| {
            Error::cannot_run(format!(
                "{} is not UTF-8 text (invalid byte at offset {})",
                p.display(),
                e.utf8_error().valid_up_to()
            ))
        })
}

fn too_large(p: &Path) -> Error {
    Error::cannot_run(format!(
        "{} is larger than {} MiB, the most hsw reads as a cluster definition; is it the right file?",
        p.display(),
        MAX_SOURCE_BYTES / (1024 * 1024)
    ))
}

impl Session {
    /// Reads `file` (or the embedded default), validates it and plans its GPUs. An unreadable file is
    /// [`Error::CannotRun`], an invalid one [`Error::InvalidConfig`] with its diagnostics. A config whose GPUs
    /// cannot be planned still makes a session: [`Session::plan`] says why (not every command plans).
    pub fn load(file: Option<&Path>) -> Result<Session, Error> {
        let (name, source) = read_config(file)?;
        Session::from_source(name, file.map(Path::to_path_buf), source)
    }

    /// A session over a config's text (`name` is how diagnostics show it).
    pub fn from_source(
        name: String,
        file: Option<PathBuf>,
        source: String,
    ) -> Result<Session, Error> {
        let validated = config::validate_str(&source);
        let Some(cfg) = validated.valid_config().cloned() else {
            let errors = validated
                .report
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            return Err(Error::InvalidConfig {
                report: validated.report.render_text(&name, &source, false),
                name,
                errors,
            });
        };
        let warnings = (!validated.report.diagnostics.is_empty())
            .then(|| validated.report.render_text(&name, &source, false));
        let plan = config::gpu::plan(&cfg).map_err(|e| e.to_string());
        Ok(Session {
            name,
            file,
            source,
            config: cfg,
            plan,
            warnings,
        })
    }

    /// The GPU plan, or why there is none.
    pub fn plan(&self) -> Result<&GpuPlan, Error> {
        self.plan
            .as_ref()
            .map_err(|e| Error::invalid(format!("no GPU plan exists for {}: {e}", self.name)))
    }

    /// Prints the validation's warnings (if any) to stderr.
    pub fn print_warnings(&self) {
        if let Some(w) = &self.warnings {
            eprint!("{w}");
        }
    }

    /// The config's file name (without its directory), or the embedded default's name: what generated
    /// files' headers name.
    pub fn file_name(&self) -> String {
        match &self.file {
            Some(p) => p
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
            None => self.name.clone(),
        }
    }
}

/// Session helpers for unit tests.
#[cfg(test)]
pub mod testing {
    use super::Session;

    /// The session of the embedded default config.
    pub fn default_session() -> Session {
        Session::load(None).unwrap_or_else(|e| panic!("the embedded default does not load: {e}"))
    }

    /// A session over the embedded default with `from` replaced by `to` in its text.
    pub fn edited_session(edits: &[(&str, &str)]) -> Session {
        let mut text = hsw_core::config::DEFAULT_CONFIG.to_owned();
        for (from, to) in edits {
            assert!(text.contains(from), "the default config has no `{from}`");
            text = text.replace(from, to);
        }
        Session::from_source("edited.yaml".into(), None, text)
            .unwrap_or_else(|e| panic!("the edited config does not load: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("c.yaml");
        std::fs::write(&ok, "a: 1\n").unwrap();
        assert_eq!(read_config(Some(&ok)).unwrap().1, "a: 1\n");

        let refused = |p: &Path| match read_config(Some(p)) {
            Err(e @ Error::CannotRun(_)) => e.to_string(),
            other => panic!("{} was not refused: {other:?}", p.display()),
        };
        // A device that never ends, a FIFO nobody writes to (opening it must not block), a directory.
        assert!(refused(Path::new("/dev/zero")).contains("is not a regular file"));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert!(refused(&fifo).contains("is not a regular file"));
        }
        assert!(refused(dir.path()).contains("is not a regular file"));
        // A (sparse) file over the limit is refused before it is read.
        let big = dir.path().join("big.yaml");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_SOURCE_BYTES + 1)
            .unwrap();
        assert!(refused(&big).contains("larger than 4 MiB"));
        assert!(refused(&dir.path().join("missing.yaml")).contains("cannot read"));
    }

    #[test]
    fn the_default_loads_and_plans() {
        let s = testing::default_session();
        assert_eq!(s.name, DEFAULT_CONFIG_NAME);
        assert_eq!(s.file_name(), DEFAULT_CONFIG_NAME);
        assert!(s.plan().is_ok());
        assert_eq!(s.source, DEFAULT_CONFIG);
    }

    #[test]
    fn an_invalid_config_carries_its_diagnostics() {
        let e = Session::from_source(
            "bad.yaml".into(),
            Some(PathBuf::from("/x/bad.yaml")),
            "version: \"1.0\"\nmetadata: {name: x}\n".into(),
        )
        .map(|_| ())
        .unwrap_err();
        match e {
            Error::InvalidConfig {
                name,
                report,
                errors,
            } => {
                assert_eq!(name, "bad.yaml");
                assert!(errors > 0);
                assert!(report.contains("bad.yaml"), "{report}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unreadable_file_cannot_run() {
        let e = Session::load(Some(Path::new("/nonexistent/c.yaml"))).unwrap_err();
        assert_eq!(e.code(), crate::exit::CANNOT_RUN);
        assert!(e.to_string().starts_with("cannot read /nonexistent/c.yaml"));
    }
}
