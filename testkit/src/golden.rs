//! Golden files: an output compared with the file committed next to the test, or the file rewritten.
//!
//! `check(path, actual)` passes when the file holds exactly `actual`; otherwise the test fails with a line diff
//! and the hint to rerun with `UPDATE_EXPECT=1`. With `UPDATE_EXPECT` set (to anything) it writes `actual` to the
//! file instead (creating its folder) and passes: review the change with `git diff` and commit it.

use std::fmt::Write as _;
use std::path::Path;

/// The variable that turns every check into a rewrite.
pub const UPDATE_VAR: &str = "UPDATE_EXPECT";

/// Lines of context shown around a difference.
const CONTEXT: usize = 3;
/// Differing lines shown at most, per side.
const MAX_LINES: usize = 40;

/// Whether the goldens are to be rewritten (`UPDATE_EXPECT` is set).
pub fn updating() -> bool {
    std::env::var_os(UPDATE_VAR).is_some()
}

/// Compares `actual` with the golden file `path`, or rewrites the file with `UPDATE_EXPECT` set.
pub fn check(path: impl AsRef<Path>, actual: &str) {
    check_with(path.as_ref(), actual, updating());
}

/// Compares every file of the golden folder `dir` with `files` (name, contents), and the set of names with the
/// files the folder holds; with `UPDATE_EXPECT` set, replaces the folder by exactly these files.
pub fn check_dir<N: AsRef<str>, C: AsRef<str>>(dir: impl AsRef<Path>, files: &[(N, C)]) {
    check_dir_with(dir.as_ref(), files, updating());
}

/// [`check_dir`] with the mode given: `update` replaces the folder, otherwise compares.
pub fn check_dir_with<N: AsRef<str>, C: AsRef<str>>(dir: &Path, files: &[(N, C)], update: bool) {
    if update {
        if dir.exists() {
            std::fs::remove_dir_all(dir).unwrap_or_else(|e| {
                panic!("cannot remove the golden folder {}: {e}", dir.display())
            });
        }
    } else {
        let mut want: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| {
                panic!(
                    "the golden folder {} cannot be read ({e}): {}",
                    shown(dir),
                    hint()
                )
            })
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        want.sort();
        let mut got: Vec<&str> = files.iter().map(|(n, _)| n.as_ref()).collect();
        got.sort_unstable();
        assert!(
            want == got,
            "the set of files in {} changed: committed {want:?}, produced {got:?}: {}",
            shown(dir),
            hint()
        );
    }
    for (name, contents) in files {
        check_with(&dir.join(name.as_ref()), contents.as_ref(), update);
    }
}

/// [`check`] with the mode given: `update` writes, otherwise compares.
pub fn check_with(path: &Path, actual: &str, update: bool) {
    if update {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(path, actual)
            .unwrap_or_else(|e| panic!("cannot write the golden file {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "the golden file {} cannot be read ({e}): {}",
            shown(path),
            hint()
        )
    });
    if let Err(message) = compare(path, &expected, actual) {
        panic!("{message}");
    }
}

/// `Ok` when `actual` equals `expected`, else the failure message: the file, a line diff and the hint.
pub fn compare(path: &Path, expected: &str, actual: &str) -> Result<(), String> {
    if expected == actual {
        return Ok(());
    }
    Err(format!(
        "{} differs from the output (- golden, + actual):\n{}{}",
        shown(path),
        diff(expected, actual),
        hint()
    ))
}

/// `path` relative to the repository root when it is inside it (resolving `..`), else as given.
fn shown(path: &Path) -> String {
    let resolved = path
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .zip(path.file_name())
        .map(|(dir, name)| dir.join(name));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|p| p.canonicalize().ok());
    match (resolved, root) {
        (Some(p), Some(root)) => p
            .strip_prefix(&root)
            .map_or_else(|_| p.display().to_string(), |rel| rel.display().to_string()),
        _ => path.display().to_string(),
    }
}

fn hint() -> String {
    format!(
        "rerun the test with {UPDATE_VAR}=1 to rewrite the golden file(s), then review `git diff`"
    )
}

/// A diff of the one region where the texts differ: the common leading and trailing lines trimmed, a few kept as
/// context (` `), then the golden's lines (`-`) and the output's (`+`). Cheap on long files, readable on short
/// changes; a difference only in the final newline is named.
pub fn diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.split('\n').collect();
    let a: Vec<&str> = actual.split('\n').collect();
    let prefix = e.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let suffix = e[prefix..]
        .iter()
        .rev()
        .zip(a[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut out = format!("@@ line {} @@\n", prefix + 1);
    for line in &e[prefix.saturating_sub(CONTEXT)..prefix] {
        let _ = writeln!(out, "  {line}");
    }
    for (sign, lines) in [
        ('-', &e[prefix..e.len() - suffix]),
        ('+', &a[prefix..a.len() - suffix]),
    ] {
        for line in lines.iter().take(MAX_LINES) {
            let _ = writeln!(out, "{sign} {line}");
        }
        if lines.len() > MAX_LINES {
            let _ = writeln!(out, "{sign} ... ({} more lines)", lines.len() - MAX_LINES);
        }
    }
    for line in e[e.len() - suffix..].iter().take(CONTEXT) {
        let _ = writeln!(out, "  {line}");
    }
    if expected.trim_end_matches('\n') == actual.trim_end_matches('\n') {
        out.push_str("(only the newlines at the end differ)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_equal_golden_passes_and_a_changed_one_fails_with_a_diff_and_the_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        check_with(&path, "one\ntwo\nthree\n", false);

        let failure = std::panic::catch_unwind(|| check_with(&path, "one\nTWO\nthree\n", false))
            .expect_err("a changed output must fail");
        let message = failure.downcast_ref::<String>().unwrap();
        assert!(message.contains("out.txt differs"), "{message}");
        assert!(
            message.contains("@@ line 2 @@\n  one\n- two\n+ TWO\n  three\n"),
            "{message}"
        );
        assert!(message.contains("UPDATE_EXPECT=1"), "{message}");
        // The file is left as it was.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\nthree\n");
    }

    #[test]
    fn a_missing_golden_fails_with_the_hint() {
        let dir = tempfile::tempdir().unwrap();
        let failure =
            std::panic::catch_unwind(|| check_with(&dir.path().join("nope.txt"), "x", false))
                .expect_err("a missing golden must fail");
        let message = failure.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("nope.txt cannot be read") && message.contains("UPDATE_EXPECT=1"),
            "{message}"
        );
    }

    #[test]
    fn update_mode_rewrites_the_golden_and_creates_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.txt");
        check_with(&path, "new\n", true);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        check_with(&path, "newer\n", true);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "newer\n");
        check_with(&path, "newer\n", false);
    }

    #[test]
    fn the_update_variable_turns_check_into_a_rewrite() {
        // Run in a child process so that setting the variable cannot race with the other tests.
        if std::env::var_os("TESTKIT_GOLDEN_CHILD").is_some() {
            let path = std::env::var_os("TESTKIT_GOLDEN_PATH").unwrap();
            check(&path, "rewritten\n");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("golden.txt");
        std::fs::write(&path, "stale\n").unwrap();
        let exe = std::env::current_exe().unwrap();
        let run = |update: bool| {
            let mut c = std::process::Command::new(&exe);
            c.args([
                "--exact",
                "golden::tests::the_update_variable_turns_check_into_a_rewrite",
            ])
            .env("TESTKIT_GOLDEN_CHILD", "1")
            .env("TESTKIT_GOLDEN_PATH", &path)
            .env_remove(UPDATE_VAR);
            if update {
                c.env(UPDATE_VAR, "1");
            }
            c.output().unwrap()
        };
        let o = run(false);
        assert!(
            !o.status.success(),
            "without {UPDATE_VAR} a stale golden fails"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "stale\n");
        let o = run(true);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "rewritten\n");
        assert!(run(false).status.success(), "the rewritten golden passes");
    }

    #[test]
    fn golden_folders_compare_the_set_of_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.tf"), "a\n").unwrap();
        check_dir_with(dir.path(), &[("a.tf", "a\n")], false);
        let two = [("a.tf", "a\n"), ("b.tf", "b\n")];
        let failure = std::panic::catch_unwind(|| check_dir_with(dir.path(), &two, false))
            .expect_err("a new file must fail");
        let message = failure.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("set of files") && message.contains("b.tf"),
            "{message}"
        );
        check_dir_with(dir.path(), &two, true);
        check_dir_with(dir.path(), &two, false);
    }

    #[test]
    fn the_diff_names_a_difference_in_the_final_newline() {
        assert!(diff("a\n", "a").contains("only the newlines at the end differ"));
    }
}
