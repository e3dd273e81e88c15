//! The `groups` check: the judged user's membership of the libvirt and kvm groups.

use super::{capitalize, plural, shown, Check, Policy, Status};
use crate::config::model::{Accelerator, DEFAULT_LIBVIRT_URI};
use crate::host::env::{read_optional, Host, User};
use crate::host::parse;

/// Group membership of the judged user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// The user.
    pub user: User,
    /// Groups it needs (libvirt; kvm unless the accelerator is tcg).
    pub needed: Vec<&'static str>,
    /// Needed groups it is not a member of (and that exist).
    pub missing: Vec<&'static str>,
    /// Needed groups that `/etc/group` does not have.
    pub absent: Vec<&'static str>,
    /// Why `/etc/group` could not be read.
    pub error: Option<String>,
    /// The user has no entry in `/etc/passwd` (so it cannot be added to groups).
    pub unknown_user: bool,
}

/// Reads `/etc/group` for the user's memberships.
pub fn group_state(host: &dyn Host, policy: &Policy) -> GroupState {
    let user = host.current_user();
    let mut needed = vec!["libvirt"];
    if policy.accelerator != Accelerator::Tcg {
        needed.push("kvm");
    }
    let mut st = GroupState {
        user,
        needed: needed.clone(),
        missing: Vec::new(),
        absent: Vec::new(),
        error: None,
        unknown_user: false,
    };
    if st.user.is_root() {
        return st;
    }
    if st.user.gid.is_none() {
        st.unknown_user = true;
        return st;
    }
    let path = host.etc_group();
    let text = match read_optional(&path) {
        Ok(Some(t)) => t,
        Ok(None) => {
            st.error = Some(format!("{} does not exist", shown(host, &path)));
            return st;
        }
        Err(e) => {
            st.error = Some(format!("cannot read {}: {e}", shown(host, &path)));
            return st;
        }
    };
    let entries = parse::groups(&text);
    for g in needed {
        match entries.iter().find(|e| e.name == g) {
            None => st.absent.push(g),
            Some(e) => {
                let member =
                    e.members.contains(&st.user.name) || (e.gid.is_some() && e.gid == st.user.gid);
                if !member {
                    st.missing.push(g);
                }
            }
        }
    }
    st
}

pub(super) fn check_groups(host: &dyn Host, policy: &Policy) -> Check {
    const ID: &str = "groups";
    let st = group_state(host, policy);
    let name = &st.user.name;
    if st.user.is_root() {
        return Check::new(
            ID,
            Status::Pass,
            "Running as root (uid 0): no group membership is needed.",
            "",
        );
    }
    if st.unknown_user {
        return Check::new(
            ID,
            Status::Fail,
            format!("User {name} has no entry in /etc/passwd, so it cannot be in any group (does HSW_USER or SUDO_USER name someone else?)."),
            format!("Create the user (`sudo adduser {name}`), or set HSW_USER to an existing login."),
        );
    }
    if let Some(e) = &st.error {
        return Check::new(
            ID,
            Status::Fail,
            format!(
                "{}, so the groups of user {name} are unknown.",
                capitalize(e)
            ),
            "Restore /etc/group from a backup.",
        );
    }
    let mut problems = Vec::new();
    let mut status = Status::Pass;
    for g in &st.absent {
        problems.push(format!(
            "there is no `{g}` group in /etc/group (is libvirt-daemon-system installed?)"
        ));
        status = Status::Fail;
    }
    if !st.missing.is_empty() {
        problems.push(format!(
            "user {name} is not in the {} group{} of /etc/group",
            st.missing.join(" and "),
            plural(st.missing.len())
        ));
        if st.missing.contains(&"libvirt") {
            status = Status::Fail;
            problems.push(format!(
                "without libvirt it cannot manage VMs through {DEFAULT_LIBVIRT_URI}"
            ));
        }
        if st.missing.contains(&"kvm") {
            let (s, why) = policy.kvm_missing();
            status = status.max(s);
            problems.push(format!(
                "without kvm, QEMU started by {name} cannot use /dev/kvm: {why}"
            ));
        }
    }
    if status == Status::Pass {
        let note = if policy.accelerator == Accelerator::Tcg {
            " (kvm is not needed: host.accelerator is tcg)"
        } else {
            ""
        };
        return Check::new(
            ID,
            Status::Pass,
            format!("User {name} is in {} per /etc/group{note}; a membership added since the last login takes effect at the next one.", st.needed.join(" and ")),
            "",
        );
    }
    let mut remedy = Vec::new();
    if !st.absent.is_empty() {
        remedy.push("Install libvirt (`sudo apt-get install -y libvirt-daemon-system`), which creates the libvirt and kvm groups.".to_owned());
    }
    if !st.missing.is_empty() {
        remedy.push(format!(
            "Run `sudo usermod -aG {} {name}` (or `sudo hsw-cli prepare --apply`), then log out and back in.",
            st.missing.join(",")
        ));
    }
    Check::new(
        ID,
        status,
        format!("{}.", capitalize(&problems.join("; "))),
        remedy.join(" "),
    )
}
