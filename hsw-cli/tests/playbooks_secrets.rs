//! Secrets in the playbooks, checked on the files themselves (no Ansible needed):
//! - every task that touches a secret (a variable made by the `password` lookup or named for a password, secret,
//!   token or key, anything derived from one, the output a task registers under such a name, a template that
//!   uses one) has `no_log: true`, and a `copy` or `template` of one also `diff: false`;
//! - no command line carries a secret (commands take them on stdin or from a 0600 file);
//! - no container command line expands an environment variable that a Kubernetes Secret feeds;
//! - every `pip install` or `pip download` the project runs (in `ansible/`, `scripts/`, `tests/` and the scripts
//!   those call) is `--require-hashes`, from requirements pinned by version and sha256.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use testkit::repo;

/// How the name of a variable that holds a secret ends.
const SECRET_ENDINGS: [&str; 4] = ["password", "secret", "token", "join_command"];

/// Files whose content is a secret (a task that copies one must neither log nor diff it).
const SECRET_FILES: [&str; 4] = [
    "hsw_munge_key_file",
    "munge.key",
    "admin.conf",
    "nvidia_guest_license_token_file",
];

/// Every file under `dir` (recursively) whose name ends with one of `exts`, sorted.
fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if exts.iter().any(|x| p.to_string_lossy().ends_with(x)) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    hsw_core::config::yaml::parse(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .0
}

/// Whether `text` names `ident` as a whole identifier, other than to select only the names of its items
/// (`| map(attribute='name')`: the users of a list of users with passwords).
fn mentions(text: &str, ident: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(ident).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let rest = &text[i + ident.len()..];
        !before.is_some_and(is_ident)
            && !rest.starts_with(is_ident)
            && !rest.starts_with(" | map(attribute='name')")
    })
}

fn secret_name(name: &str) -> bool {
    SECRET_ENDINGS.iter().any(|w| name.ends_with(w))
}

/// One task, where it is, and the role it belongs to (for its templates).
struct Task {
    file: PathBuf,
    role_dir: Option<PathBuf>,
    body: serde_json::Map<String, Value>,
}

impl Task {
    fn name(&self) -> String {
        format!(
            "{}: {}",
            self.file.strip_prefix(repo()).unwrap().display(),
            self.body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)")
        )
    }

    /// The module's key and arguments (the one key that is not a task keyword).
    fn module(&self) -> Option<(&str, &Value)> {
        const KEYWORDS: [&str; 24] = [
            "name",
            "when",
            "register",
            "loop",
            "loop_control",
            "notify",
            "no_log",
            "diff",
            "tags",
            "changed_when",
            "failed_when",
            "check_mode",
            "become",
            "become_user",
            "delegate_to",
            "run_once",
            "environment",
            "vars",
            "until",
            "retries",
            "delay",
            "ignore_errors",
            "listen",
            "args",
        ];
        self.body
            .iter()
            .find(|(k, _)| !KEYWORDS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
    }

    fn flag(&self, key: &str) -> Option<bool> {
        self.body.get(key).and_then(Value::as_bool)
    }

    /// What the task hands to its module and keywords (not its name), plus the text of the template it renders.
    fn text(&self) -> String {
        let mut body = self.body.clone();
        body.remove("name");
        let mut text = Value::Object(body).to_string();
        if let Some(("ansible.builtin.template", args)) = self.module() {
            if let (Some(src), Some(role)) =
                (args.get("src").and_then(Value::as_str), &self.role_dir)
            {
                let path = role.join("templates").join(src);
                if let Ok(t) = std::fs::read_to_string(&path) {
                    text.push_str(&t);
                }
            }
        }
        text
    }
}

/// Every task of `value` (a playbook or a task file), through plays and blocks.
fn collect_tasks(value: &Value, file: &Path, role_dir: Option<&Path>, out: &mut Vec<Task>) {
    let Some(list) = value.as_array() else { return };
    for item in list {
        let Some(map) = item.as_object() else {
            continue;
        };
        let nested: Vec<&str> = [
            "tasks",
            "pre_tasks",
            "post_tasks",
            "handlers",
            "block",
            "rescue",
            "always",
        ]
        .into_iter()
        .filter(|k| map.contains_key(*k))
        .collect();
        for k in &nested {
            collect_tasks(&map[*k], file, role_dir, out);
        }
        if nested.is_empty() && !map.contains_key("hosts") && !map.contains_key("import_playbook") {
            out.push(Task {
                file: file.to_path_buf(),
                role_dir: role_dir.map(Path::to_path_buf),
                body: map.clone(),
            });
        }
    }
}

fn all_tasks() -> Vec<Task> {
    let ansible = repo().join("ansible");
    let mut out = Vec::new();
    for f in files(&ansible, &[".yml"]) {
        let rel = f.strip_prefix(&ansible).unwrap();
        let parts: Vec<_> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let role_dir = match parts.as_slice() {
            [roles, role, kind, ..]
                if roles == "roles" && (kind == "tasks" || kind == "handlers") =>
            {
                Some(ansible.join("roles").join(role))
            }
            [playbook] if playbook.starts_with("playbook-") => None,
            _ => continue,
        };
        collect_tasks(&read_yaml(&f), &f, role_dir.as_deref(), &mut out);
    }
    assert!(out.len() > 100, "found only {} tasks", out.len());
    out
}

/// The variables that hold a secret: named for one, made by the `password` lookup, registered under such a name,
/// or derived from one of those (to a fixed point).
fn secret_vars(tasks: &[Task]) -> BTreeSet<String> {
    let ansible = repo().join("ansible");
    let mut defs: Vec<(String, String)> = Vec::new();
    for f in files(&ansible, &[".yml"]) {
        let rel = f
            .strip_prefix(&ansible)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let is_vars =
            rel.starts_with("group_vars/") || rel.contains("/defaults/") || rel.contains("/vars/");
        if !is_vars {
            continue;
        }
        if let Value::Object(m) = read_yaml(&f) {
            defs.extend(m.into_iter().map(|(k, v)| (k, v.to_string())));
        }
    }
    let mut secrets: BTreeSet<String> = defs
        .iter()
        .filter(|(k, v)| secret_name(k) || v.contains("ansible.builtin.password"))
        .map(|(k, _)| k.clone())
        .collect();
    secrets.extend(
        tasks
            .iter()
            .filter_map(|t| t.body.get("register").and_then(Value::as_str))
            .filter(|r| secret_name(r))
            .map(str::to_owned),
    );
    loop {
        let more: Vec<String> = defs
            .iter()
            .filter(|(k, v)| !secrets.contains(k) && secrets.iter().any(|s| mentions(v, s)))
            .map(|(k, _)| k.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        secrets.extend(more);
    }
    secrets
}

#[test]
fn the_secrets_are_found() {
    let tasks = all_tasks();
    let s = secret_vars(&tasks);
    for v in [
        "mlops_postgres_password",
        "mlops_minio_root_password",
        "grafana_admin_password",
        "postgresql_server_users",
        "kubeadm_join_command",
        "slurmdbd_storage_password",
    ] {
        assert!(s.contains(v), "{v} is not seen as a secret: {s:?}");
    }
    for v in ["ssh_hardening_password_auth", "postgresql_server_databases"] {
        assert!(!s.contains(v), "{v} is seen as a secret");
    }
}

#[test]
fn every_task_that_touches_a_secret_has_no_log_and_no_diff() {
    let tasks = all_tasks();
    let secrets = secret_vars(&tasks);
    let mut bad = Vec::new();
    for t in &tasks {
        let text = t.text();
        let writes = matches!(
            t.module(),
            Some(("ansible.builtin.copy" | "ansible.builtin.template", _))
        );
        let secret_file = SECRET_FILES.iter().find(|f| writes && text.contains(*f));
        let Some(secret) = secrets
            .iter()
            .map(String::as_str)
            .find(|s| mentions(&text, s))
            .or(secret_file.copied())
        else {
            continue;
        };
        if t.flag("no_log") != Some(true) {
            bad.push(format!("{} uses {secret} without no_log: true", t.name()));
        }
        if writes && t.flag("diff") != Some(false) {
            bad.push(format!("{} writes {secret} without diff: false", t.name()));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn no_secret_on_a_command_line() {
    let tasks = all_tasks();
    let secrets = secret_vars(&tasks);
    let mut bad = Vec::new();
    let mut commands = 0;
    for t in &tasks {
        let Some((module, args)) = t.module() else {
            continue;
        };
        if !matches!(
            module,
            "ansible.builtin.command" | "ansible.builtin.shell" | "ansible.builtin.raw"
        ) {
            continue;
        }
        commands += 1;
        // The command line only: stdin and the task's other keywords may carry a secret.
        let line = match args {
            Value::Object(m) => ["argv", "cmd", "_raw_params"]
                .iter()
                .filter_map(|k| m.get(*k))
                .map(Value::to_string)
                .collect::<String>(),
            other => other.to_string(),
        };
        let line = match t.body.get("args") {
            Some(a) => format!(
                "{line}{}",
                a.get("cmd").map(Value::to_string).unwrap_or_default()
            ),
            None => line,
        };
        if let Some(s) = secrets.iter().find(|s| mentions(&line, s)) {
            bad.push(format!("{} puts {s} on a command line: {line}", t.name()));
        }
    }
    assert!(commands > 20, "found only {commands} commands");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The keys of every Kubernetes Secret the templates write (each becomes an environment variable through
/// `secretKeyRef` or `envFrom`).
fn kubernetes_secret_keys(templates: &[PathBuf]) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for f in templates {
        let text = std::fs::read_to_string(f).unwrap();
        for doc in text.split("\n---") {
            if !doc.contains("kind: Secret") {
                continue;
            }
            let mut in_data = false;
            for line in doc.lines() {
                if line.starts_with("stringData:") || line.starts_with("data:") {
                    in_data = true;
                } else if !line.starts_with(' ') {
                    in_data = false;
                } else if in_data && !line.starts_with("   ") {
                    if let Some((k, _)) = line.trim().split_once(':') {
                        keys.insert(k.to_owned());
                    }
                }
            }
        }
    }
    keys
}

#[test]
fn no_container_command_line_expands_a_kubernetes_secret() {
    let templates = files(&repo().join("ansible/roles"), &[".j2"]);
    let keys = kubernetes_secret_keys(&templates);
    for k in [
        "MLFLOW_BACKEND_STORE_URI",
        "MINIO_ROOT_PASSWORD",
        "MC_HOST_hsw",
    ] {
        assert!(
            keys.contains(k),
            "{k} not found among the Secrets' keys {keys:?}"
        );
    }
    let mut bad = Vec::new();
    for f in &templates {
        let text = std::fs::read_to_string(f).unwrap();
        for k in &keys {
            for form in [format!("${k}"), format!("${{{k}}}")] {
                if text.match_indices(&form).any(|(i, _)| {
                    !text[i + form.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                }) {
                    bad.push(format!("{} expands {form} on a command line", f.display()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The `pip install` / `pip download` command lines of a file: from `pip` to the end of the line and the next one,
/// and on through the lines a trailing backslash continues (comments and messages that mention pip are not
/// commands).
fn pip_commands(text: &str) -> Vec<String> {
    text.match_indices("pip")
        .filter_map(|(i, _)| {
            let rest = text[i + 3..].trim_start_matches('"');
            let rest = rest.trim_start_matches([' ', '\t']);
            let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
            let before = &text[line_start..i];
            let prose = before.trim_start().starts_with('#')
                || before.contains("die ")
                || before.contains("echo ")
                || before.contains('`');
            (!prose && (rest.starts_with("install ") || rest.starts_with("download "))).then(|| {
                let mut lines = Vec::new();
                for l in text[i..].lines() {
                    lines.push(l);
                    if lines.len() >= 2 && !l.trim_end().ends_with('\\') {
                        break;
                    }
                }
                lines.join(" ")
            })
        })
        .collect()
}

/// The scripts a file runs from another part of the repository (`provider/scripts/X.sh` and the like).
fn scripts_called(text: &str) -> Vec<PathBuf> {
    text.split(|c: char| {
        c.is_whitespace() || matches!(c, '"' | '\'' | '(' | ')' | '`' | '$' | '{' | '}')
    })
    .filter(|w| w.ends_with(".sh") && w.contains("scripts/"))
    .map(|w| repo().join(w.trim_start_matches('/').trim_start_matches("root/")))
    .filter(|p| p.is_file())
    .collect()
}

#[test]
fn every_pip_install_requires_pinned_hashes() {
    let mut sources: Vec<PathBuf> = ["ansible", "scripts", "tests", "packer"]
        .iter()
        .flat_map(|d| files(&repo().join(d), &[".yml", ".j2", ".sh"]))
        .collect();
    let called: Vec<PathBuf> = sources
        .iter()
        .flat_map(|f| scripts_called(&std::fs::read_to_string(f).unwrap()))
        .collect();
    sources.extend(called);
    sources.sort();
    sources.dedup();
    let mut installs = 0;
    let mut bad = Vec::new();
    for f in &sources {
        let text = std::fs::read_to_string(f).unwrap();
        for cmd in pip_commands(&text) {
            installs += 1;
            if !cmd.contains("--require-hashes") || !cmd.contains(" -r ") {
                bad.push(format!("{}: `{cmd}` does not require hashes", f.display()));
            }
        }
        if text.contains("ansible.builtin.pip") {
            bad.push(format!(
                "{}: the pip module installs unpinned packages",
                f.display()
            ));
        }
    }
    assert!(installs >= 3, "only {installs} pip commands found");
    let reqs: Vec<PathBuf> = ["ansible", "scripts", "packer"]
        .iter()
        .flat_map(|d| files(&repo().join(d), &["requirements.txt", ".txt"]))
        .filter(|p| p.to_string_lossy().contains("requirements"))
        .collect();
    assert!(reqs.len() >= 4, "requirements files: {reqs:?}");
    for f in reqs {
        let text = std::fs::read_to_string(&f).unwrap().replace("\\\n", " ");
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let mut words = line.split_whitespace();
            let spec = words.next().unwrap();
            let pinned = spec
                .split_once("==")
                .is_some_and(|(n, v)| !n.is_empty() && !v.is_empty());
            let hashes: Vec<&str> = words
                .filter_map(|w| w.strip_prefix("--hash=sha256:"))
                .collect();
            let hashed = !hashes.is_empty()
                && hashes
                    .iter()
                    .all(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !pinned || !hashed {
                bad.push(format!(
                    "{}: `{line}` is not pinned by version and sha256",
                    f.display()
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
