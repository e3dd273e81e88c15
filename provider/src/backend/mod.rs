//! The outside systems the provider drives, each behind a narrow trait with a real implementation and a faithful
//! fake: libvirt ([`libvirt`]) and the files of the pool directory ([`storage`]). Only this module touches libvirt
//! or runs programs.

pub mod libvirt;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use self::libvirt::fake::FakeLibvirt;
use self::libvirt::Libvirt;
use self::storage::{FakeStorage, Storage};

/// What the resources work through.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The libvirt connection.
    pub libvirt: Arc<dyn Libvirt>,
    /// The pool directory's files.
    pub storage: Arc<dyn Storage>,
    /// How long a create waits for other work: another apply creating an object of the same name, or a MIG
    /// instance that the same apply destroys and whose room on the GPU the create needs ([`LOCK_WAIT`] unless a
    /// test shortens it).
    pub lock_wait: Duration,
}

/// How long a create waits for the per-name lock that another apply's create of the same name holds.
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

impl Backend {
    /// A backend over a fake libvirt and a fake file tree that know about each other (a domain only starts when its
    /// disks exist in the tree), waiting 2 s for a busy name. Returns the fakes too, for tests to inspect and steer.
    pub fn fake() -> (Backend, FakeLibvirt, FakeStorage) {
        let storage = FakeStorage::new();
        let libvirt = FakeLibvirt::new().with_files(storage.file_check());
        (
            Backend {
                libvirt: Arc::new(libvirt.clone()),
                storage: Arc::new(storage.clone()),
                lock_wait: Duration::from_secs(2),
            },
            libvirt,
            storage,
        )
    }
}
