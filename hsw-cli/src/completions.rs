//! `hsw-cli completions bash|zsh|fish` and `hsw-cli man`: generated from the clap definitions themselves
//! (`clap_complete`, `clap_mangen`), so they name every subcommand and flag there is.

use std::io::Write;
use std::path::Path;

use clap::ValueEnum;

use crate::error::Error;

/// A shell to complete in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// bash (source it, or put it in /usr/share/bash-completion/completions/hsw-cli).
    Bash,
    /// zsh (put it on $fpath as _hsw-cli).
    Zsh,
    /// fish (put it in ~/.config/fish/completions/hsw-cli.fish).
    Fish,
}

/// Writes the completion script of `cmd` for `shell`.
pub fn completions(shell: Shell, cmd: &mut clap::Command, out: &mut dyn Write) {
    let name = cmd.get_name().to_owned();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, cmd, name, out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, cmd, name, out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, cmd, name, out),
    }
}

/// The man page (roff) of `cmd` alone: its options and the list of its subcommands.
fn page(cmd: &clap::Command) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .map_err(|e| {
            Error::cannot_run(format!(
                "cannot render the man page of {}: {e}",
                cmd.get_name()
            ))
        })?;
    Ok(buf)
}

/// `hsw-cli man`: the page of hsw-cli on `out`; with `dir`, also one page per subcommand
/// (`hsw-cli-<sub>[-<subsub>].1`) written there, and their names on `out` instead.
pub fn man(cmd: &clap::Command, dir: Option<&Path>, out: &mut dyn Write) -> Result<(), Error> {
    let Some(dir) = dir else {
        let _ = out.write_all(&page(cmd)?);
        return Ok(());
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::cannot_run(format!("cannot create {}: {e}", dir.display())))?;
    let mut pages = Vec::new();
    collect(cmd, cmd.get_name(), &mut pages);
    for (name, c) in pages {
        let path = dir.join(format!("{name}.1"));
        hsw_core::fsx::write_atomic(&path, &page(&c)?, 0o644)
            .map_err(|e| Error::cannot_run(format!("cannot write {}: {e}", path.display())))?;
        let _ = writeln!(out, "wrote {}", path.display());
    }
    Ok(())
}

/// `cmd` named `name`, then each subcommand (recursively) named `name-<sub>`.
fn collect(cmd: &clap::Command, name: &str, pages: &mut Vec<(String, clap::Command)>) {
    // clap names are `&'static str` without its `string` feature; a page per subcommand, once a process.
    let static_name: &'static str = String::leak(name.to_owned());
    pages.push((name.to_owned(), cmd.clone().name(static_name)));
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        collect(sub, &format!("{name}-{}", sub.get_name()), pages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand path, e.g. `["gpu", "plan"]`.
    fn paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for s in cmd.get_subcommands() {
            let mut p = prefix.to_vec();
            p.push(s.get_name().to_owned());
            out.push(p.clone());
            paths(s, &p, out);
        }
    }

    #[test]
    fn every_shell_completes_every_subcommand() {
        let mut cmd = crate::Cli::command();
        let mut all = Vec::new();
        paths(&cmd, &[], &mut all);
        assert!(all.iter().any(|p| p == &["provider", "install"]), "{all:?}");
        assert!(all.iter().any(|p| p == &["graph"]), "{all:?}");
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completions(shell, &mut cmd, &mut out);
            let text = String::from_utf8(out).unwrap();
            for p in &all {
                let last = p.last().unwrap();
                assert!(text.contains(last.as_str()), "{shell:?} lacks {p:?}");
            }
        }
    }

    #[test]
    fn the_man_page_lists_every_subcommand_and_dir_writes_one_page_each() {
        let cmd = crate::Cli::command();
        let mut out = Vec::new();
        man(&cmd, None, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(".TH hsw-cli 1 "), "{text}");
        for s in cmd.get_subcommands() {
            let entry = format!(r"hsw\-cli\-{}(1)", s.get_name().replace('-', r"\-"));
            assert!(text.contains(&entry), "the page lacks {entry}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        man(&cmd, Some(tmp.path()), &mut out).unwrap();
        for name in [
            "hsw-cli",
            "hsw-cli-gpu-plan",
            "hsw-cli-provider-install",
            "hsw-cli-graph",
        ] {
            let page = std::fs::read_to_string(tmp.path().join(format!("{name}.1"))).unwrap();
            assert!(page.contains(&format!(".TH {name} ")), "{name}: {page}");
        }
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("hsw-cli-provider-install.1"));
    }
}
