//! `hsw-cli completions bash|zsh|fish` and `hsw-cli man` from the binary: each names every command `hsw-cli
//! --help` lists; each script passes its own shell's syntax check (`-n`), and the bash and fish ones complete
//! `hsw-cli pro` to `provider` once sourced. A missing zsh or fish is skipped unless `HSW_REQUIRE_SHELLS=1`
//! (`scripts/install-deps.sh test` installs both).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

/// The commands `hsw-cli --help` lists.
fn commands() -> Vec<String> {
    let help = support::hsw().ok(&["--help"]);
    let list = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    let names: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect();
    for want in ["provider", "graph", "completions", "man", "up", "status"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    names
}

#[test]
fn each_shell_script_names_every_command() {
    let cmds = commands();
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let script = support::hsw().ok(&["completions", shell]);
        for c in &cmds {
            assert!(script.contains(c.as_str()), "the {shell} script lacks {c}");
        }
        let file = tmp.path().join(format!("hsw-cli.{shell}"));
        std::fs::write(&file, &script).unwrap();
        let Some(bin) = testkit::require::tool(shell, testkit::require::SHELLS) else {
            continue;
        };
        let o = Command::new(bin).arg("-n").arg(&file).output().unwrap();
        assert!(o.status.success(), "{shell} -n: {}", testkit::describe(&o));
    }
    // Sourced into fish, it completes `hsw-cli pro` to `provider` (with its description).
    if let Some(fish) = testkit::require::tool("fish", testkit::require::SHELLS) {
        let o = Command::new(fish)
            .arg("--no-config")
            .arg("-c")
            .arg("source $argv[1]; complete -C 'hsw-cli pro'")
            .arg(tmp.path().join("hsw-cli.fish"))
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&o.stdout);
        assert!(
            got.lines()
                .any(|l| l.split('\t').next() == Some("provider")),
            "{}",
            testkit::describe(&o)
        );
    }
    // Sourced into bash, it completes `hsw-cli pro` to `provider`.
    let file = tmp.path().join("hsw-cli.bash");
    let o = Command::new("bash")
        .arg("-c")
        .arg(
            "source \"$1\"; COMP_WORDS=(hsw-cli pro); COMP_CWORD=1; _hsw__cli hsw-cli pro hsw-cli; \
             printf '%s\\n' \"${COMPREPLY[@]}\"",
        )
        .arg("bash")
        .arg(&file)
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&o.stdout);
    assert!(
        got.lines().any(|l| l == "provider"),
        "{}",
        testkit::describe(&o)
    );
}

#[test]
fn the_man_page_names_every_command() {
    let page = support::hsw().ok(&["man"]);
    assert!(page.contains(".TH hsw-cli 1 "), "{page}");
    for c in commands() {
        let entry = format!(r"hsw\-cli\-{}(1)", c.replace('-', r"\-"));
        assert!(page.contains(&entry), "the page lacks {entry}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let listed = support::hsw().ok(&["man", "--dir", tmp.path().to_str().unwrap()]);
    for c in commands() {
        let file = tmp.path().join(format!("hsw-cli-{c}.1"));
        assert!(file.is_file(), "no {}: {listed}", file.display());
    }
}
