//! The host: can this machine run the clusters (`check`), and what would make it able (`prepare`).
//!
//! # Design
//!
//! * **The host is a rooted trait** ([`Host`], after mdevctl's `Environment`). Its one required
//!   method is `root()`; every `/proc`, `/sys`, `/dev`, `/etc` and `/var` path is a default method
//!   built from it, so the real machine (`/`) and a fixture tree (`tests/fixtures/hosts/<case>`)
//!   go through the same code. The root comes from `--root` or `HSW_ROOT`.
//! * **What is not a file is a narrow method**: the user judged ([`Host::current_user`]), free
//!   disk space (statvfs), whether `/dev/kvm` answers `KVM_GET_API_VERSION` (only a character
//!   device can; a fixture's regular file is reported as checked for open-ability only), and a
//!   [`Runner`] for tools. [`SystemHost`] is the real machine; [`FixtureHost`] pins those facts
//!   for reproducible tests.
//! * **Parsing is pure** ([`parse`]): `/proc/cpuinfo`, `/proc/net/route`, `/etc/group`, dpkg
//!   status and the byte-preserving edits of `/etc/group` and `/etc/default/grub` are functions
//!   over text, tested without a tree.
//! * **Checks judge facts against the config** ([`check`]): each has a stable id and returns
//!   pass / warn / fail / skip, a message and a remedy. Severity follows the config
//!   (`host.accelerator`, `host.gpu_backend`, the GPUs named).
//! * **Changes are planned, then applied with backups** ([`prepare`]): a plan is data (file
//!   writes with their whole new content, commands as argv); apply backs up first and writes a
//!   manifest; rollback is exact and refuses to overwrite later edits. Commands never go through
//!   a shell, and never run under a root other than `/`.

pub mod check;
pub mod diff;
pub mod env;
pub mod parse;
pub mod prepare;
pub mod run;

pub use check::{
    run_checks, run_checks_with, Check, CheckReport, GpuFacts, Policy, Status, CHECK_IDS,
};
pub use env::{FixtureHost, Host, KvmProbe, SystemHost, User};
pub use prepare::{apply, plan, rollback, Plan, RollbackOutcome, Step};
pub use run::{CommandSpec, RunOutcome, Runner, SystemRunner};
