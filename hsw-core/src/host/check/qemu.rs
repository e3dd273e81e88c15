//! The `qemu.privileges` check: how the host's libvirtd runs QEMU (`/etc/libvirt/qemu.conf`: `user`, `group`,
//! `dynamic_ownership`, `security_driver`) and whether the kernel has a security module for it. A guest that
//! escapes QEMU has what QEMU has: root, when `user = "root"`; everything its user may touch, without AppArmor
//! or SELinux. `hsw-cli up`'s sandbox writes its own qemu.conf (`scripts/sandbox.sh`) with the same rules.

use super::{shown, Check, Status};
use crate::host::env::{read_optional, Host};

/// The settings of `qemu.conf` this check reads (`None`: not set, libvirt's built-in default applies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QemuConf {
    /// `user` (Debian's built-in default is `libvirt-qemu`).
    pub user: Option<String>,
    /// `group`.
    pub group: Option<String>,
    /// `dynamic_ownership` (built-in default 1).
    pub dynamic_ownership: Option<bool>,
    /// `security_driver`, a string or a list (built-in default: the first security module the kernel runs).
    pub security_driver: Option<Vec<String>>,
}

/// Reads libvirt's configuration syntax (`key = value`, `#` comments, strings, numbers and lists that may span
/// lines) for the keys of [`QemuConf`]; other keys and lines it does not understand are ignored, as they do not
/// change what is judged.
pub fn parse_qemu_conf(text: &str) -> QemuConf {
    let mut conf = QemuConf::default();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = strip_comment(raw);
        if pending.is_empty() && line.trim().is_empty() {
            continue;
        }
        pending.push_str(line);
        pending.push(' ');
        if pending.contains('[') && !pending.contains(']') {
            continue;
        }
        let entry = std::mem::take(&mut pending);
        let Some((key, value)) = entry.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "user" => conf.user = unquote(value),
            "group" => conf.group = unquote(value),
            "dynamic_ownership" => {
                conf.dynamic_ownership = value.parse::<i64>().ok().map(|v| v != 0)
            }
            "security_driver" => {
                conf.security_driver = match value.strip_prefix('[') {
                    Some(list) => Some(
                        list.trim_end()
                            .trim_end_matches(']')
                            .split(',')
                            .filter_map(|v| unquote(v.trim()))
                            .collect(),
                    ),
                    None => unquote(value).map(|v| vec![v]),
                }
            }
            _ => {}
        }
    }
    conf
}

/// The line up to a `#` that is not inside a string.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(value: &str) -> Option<String> {
    let v = value.trim();
    v.strip_prefix('"')?.strip_suffix('"').map(str::to_owned)
}

/// The security module the host's kernel runs, as libvirt's `security_driver` names it.
pub fn kernel_security_module(host: &dyn Host) -> Option<&'static str> {
    let apparmor = read_optional(&host.sys_apparmor_enabled()).ok().flatten();
    if apparmor.is_some_and(|v| v.trim() == "Y") {
        Some("apparmor")
    } else if host.sys_selinux_enforce().exists() {
        Some("selinux")
    } else {
        None
    }
}

const RESTART: &str = "After a change to qemu.conf, restart libvirtd (`sudo systemctl restart libvirtd`); running VMs keep the old settings until they are restarted.";

pub(super) fn check_qemu(host: &dyn Host) -> Check {
    const ID: &str = "qemu.privileges";
    let path = host.etc_libvirt_qemu_conf();
    let file = shown(host, &path);
    let text = match read_optional(&path) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Check::new(
                ID,
                Status::Skip,
                format!("{file} does not exist (libvirt is not installed?), so how QEMU runs is not known."),
                "Install libvirt (`scripts/install-deps.sh full`, or `sudo apt-get install -y libvirt-daemon-system`), then run `hsw-cli check` again.",
            )
        }
        Err(e) => {
            return Check::new(
                ID,
                Status::Warn,
                format!("Cannot read {file}: {e}, so how QEMU runs is not known."),
                format!("Run `hsw-cli check` as root, or make {file} readable."),
            )
        }
    };
    let conf = parse_qemu_conf(&text);
    let lsm = kernel_security_module(host);
    let user = conf.user.as_deref();
    let as_root = matches!(user, Some("root" | "+0" | "0"));
    let shown_user = user.unwrap_or("libvirt's built-in user (libvirt-qemu on Debian)");
    let drivers = conf.security_driver.clone();
    let driver_none = drivers
        .as_ref()
        .is_some_and(|d| d.is_empty() || d.iter().all(|x| x == "none"));

    let mut problems = Vec::new();
    let mut remedy = Vec::new();
    let mut status = Status::Pass;
    if as_root {
        status = Status::Warn;
        problems.push(format!(
            "QEMU runs as root (`user = \"{}\"` in {file}), so a guest that escapes QEMU is root on this host",
            user.unwrap_or("root")
        ));
        remedy.push(format!(
            "In {file} set `user = \"libvirt-qemu\"`, `group = \"kvm\"` and `dynamic_ownership = 1` (libvirt then chowns each VM's 0600 disks to that user while it runs)."
        ));
    } else if conf.dynamic_ownership == Some(false) {
        status = Status::Warn;
        problems.push(format!(
            "QEMU runs as {shown_user} with `dynamic_ownership = 0` in {file}, so it cannot open the disks hsw creates (0600, root's)"
        ));
        remedy.push(format!("In {file} set `dynamic_ownership = 1`."));
    }
    match (lsm, driver_none) {
        (Some(m), true) => {
            status = Status::Warn;
            problems.push(format!(
                "QEMU is unconfined: the kernel runs {m}, but {file} says `security_driver = \"none\"`"
            ));
            remedy.push(format!(
                "In {file} remove the `security_driver = \"none\"` line (libvirt then confines each VM with {m})."
            ));
        }
        (None, _) => {
            status = Status::Warn;
            problems.push(
                "QEMU is unconfined: the kernel runs neither AppArmor nor SELinux, so libvirt has no security driver (a guest that escapes QEMU reaches whatever QEMU's user may)"
                    .to_owned(),
            );
            remedy.push("Boot a kernel with AppArmor enabled (Debian's has it: `apparmor=1 security=apparmor` on the kernel command line) and install `apparmor`; until then keep QEMU's user unprivileged.".to_owned());
        }
        (Some(_), false) => {}
    }
    if status == Status::Pass {
        let m = lsm.unwrap_or("none");
        return Check::new(
            ID,
            Status::Pass,
            format!("QEMU runs as {shown_user}, not root, with dynamic ownership, confined by {m} ({file})."),
            "",
        );
    }
    remedy.push(RESTART.to_owned());
    Check::new(
        ID,
        status,
        format!("{}. `hsw-cli up`'s sandbox (the default) writes its own qemu.conf: an unprivileged user with dynamic ownership, and the kernel's security module when it has one.", problems.join("; ")),
        remedy.join(" "),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_strings_numbers_lists_and_comments() {
        let c = parse_qemu_conf(
            "# user = \"nobody\"\nuser = \"root\" # as root\ngroup=\"kvm\"\ndynamic_ownership = 0\nsecurity_driver = [ \"selinux\",\n  \"apparmor\" ]\nother = 1\n",
        );
        assert_eq!(c.user.as_deref(), Some("root"));
        assert_eq!(c.group.as_deref(), Some("kvm"));
        assert_eq!(c.dynamic_ownership, Some(false));
        assert_eq!(
            c.security_driver,
            Some(vec!["selinux".to_owned(), "apparmor".to_owned()])
        );
        assert_eq!(
            parse_qemu_conf("security_driver = \"none\"").security_driver,
            Some(vec!["none".to_owned()])
        );
    }

    fn judged(conf: &str, selinux: bool) -> Check {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/libvirt")).unwrap();
        std::fs::write(dir.path().join("etc/libvirt/qemu.conf"), conf).unwrap();
        if selinux {
            std::fs::create_dir_all(dir.path().join("sys/fs/selinux")).unwrap();
            std::fs::write(dir.path().join("sys/fs/selinux/enforce"), "1").unwrap();
        }
        let host = crate::host::env::FixtureHost::new(dir.path(), "root", 1 << 40);
        check_qemu(&host)
    }

    #[test]
    fn an_unprivileged_user_needs_dynamic_ownership() {
        let c = judged("user = \"libvirt-qemu\"\ndynamic_ownership = 0\n", true);
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.message.contains("cannot open the disks hsw creates"),
            "{}",
            c.message
        );
        assert!(!c.message.contains("unconfined"), "{}", c.message);
        assert!(c.remedy.contains("`dynamic_ownership = 1`"), "{}", c.remedy);
    }

    #[test]
    fn selinux_with_the_default_driver_passes() {
        let c = judged("user = \"qemu\"\n", true);
        assert_eq!(c.status, Status::Pass, "{}", c.message);
        assert!(
            c.message.contains("as qemu, not root") && c.message.contains("selinux"),
            "{}",
            c.message
        );
        assert!(c.remedy.is_empty());
        let c = judged("user = \"+0\"\nsecurity_driver = [ \"none\" ]\n", true);
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.message.contains("QEMU runs as root") && c.message.contains("unconfined"),
            "{}",
            c.message
        );
    }

    #[test]
    fn debians_default_file_sets_nothing() {
        let c = parse_qemu_conf(
            "#user = \"libvirt-qemu\"\n#security_driver = \"selinux\"\n#dynamic_ownership = 1\n",
        );
        assert_eq!(c, QemuConf::default());
    }
}
