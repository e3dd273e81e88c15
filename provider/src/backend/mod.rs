//! The outside systems the provider drives, each behind a narrow trait with a real implementation and a faithful
//! fake: libvirt ([`libvirt`]) and the files of the pool directory ([`storage`]). Only this module touches libvirt
//! or runs programs.

pub mod libvirt;
pub mod storage;

use std::sync::Arc;

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
}

impl Backend {
    /// A backend over a fake libvirt and a fake file tree that know about each other (a domain only starts when its
    /// disks exist in the tree). Returns the fakes too, for tests to inspect and steer.
    pub fn fake() -> (Backend, FakeLibvirt, FakeStorage) {
        let storage = FakeStorage::new();
        let libvirt = FakeLibvirt::new().with_files(storage.file_check());
        (
            Backend {
                libvirt: Arc::new(libvirt.clone()),
                storage: Arc::new(storage.clone()),
            },
            libvirt,
            storage,
        )
    }
}
