//! `docs/troubleshooting.md` has a section (symptom, cause, fix) for every `hsw-cli check` id
//! (`hsw_core::host::check::CHECK_IDS`) and every step of `hsw-cli up` (`UP_STEPS_TABLE` in
//! `hsw-cli/src/up/mod.rs`): a check or step added without its section fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use testkit::repo;

/// The `### ` sections of the page, each with its text.
fn sections() -> Vec<(String, String)> {
    let page = std::fs::read_to_string(repo().join("docs/troubleshooting.md")).unwrap();
    page.split("\n### ")
        .skip(1)
        .map(|s| {
            let (title, body) = s.split_once('\n').unwrap_or((s, ""));
            let body = body.split("\n## ").next().unwrap_or("");
            (title.trim().to_owned(), body.to_owned())
        })
        .collect()
}

fn assert_complete(title: &str, all: &[(String, String)]) {
    let (_, body) = all
        .iter()
        .find(|(t, _)| t == title)
        .unwrap_or_else(|| panic!("docs/troubleshooting.md has no section `### {title}`"));
    for part in ["- **Symptom**:", "- **Cause**:", "- **Fix**:"] {
        assert!(body.contains(part), "`### {title}` lacks {part}");
    }
}

#[test]
fn every_check_id_has_a_section() {
    let all = sections();
    for id in hsw_core::host::check::CHECK_IDS {
        assert_complete(id, &all);
    }
}

/// The step names of `UP_STEPS_TABLE`, read from its source (the binary's table is not a library item).
fn up_steps() -> Vec<String> {
    let src = std::fs::read_to_string(repo().join("hsw-cli/src/up/mod.rs")).unwrap();
    let table = src
        .split("pub const UP_STEPS_TABLE")
        .nth(1)
        .unwrap()
        .split("];")
        .next()
        .unwrap();
    table
        .lines()
        .filter_map(|l| l.trim().strip_prefix('('))
        .filter_map(|l| l.split('"').nth(1))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_up_step_has_a_section() {
    let steps = up_steps();
    assert!(steps.len() >= 9, "{steps:?}");
    assert!(steps.iter().any(|s| s == "terraform init"), "{steps:?}");
    let all = sections();
    for step in steps {
        assert_complete(&format!("up step: {step}"), &all);
    }
}
