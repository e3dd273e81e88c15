//! Per-name locks that keep two applies from creating the same libvirt object at once: a create holds
//! `<pool_dir>/.hsw-locks/<kind>-<name>.lock` (`flock`, through [`crate::backend::storage::Storage::try_lock`])
//! until it finishes, then removes it (the directory too, once empty). The lock dies with its holder, so a create that takes it knows that an incomplete object of
//! that name was left by a create that is no longer running, and may clean it up.

use std::time::{Duration, Instant};

use crate::backend::storage::NameLock;
use crate::framework::{AttrPath, Context, Diagnostics};

use super::Configured;

/// The lock directory's name inside the pool directory (root only, mode 0700).
pub const LOCK_DIR: &str = ".hsw-locks";

/// How often a waiting create tries the lock again.
const RETRY: Duration = Duration::from_millis(200);

/// Takes the lock of the `kind` object `name`, waiting up to the backend's `lock_wait` for another apply that holds
/// it; fails with a sentence naming the other apply when it does not finish in time.
pub(crate) async fn lock_name(
    ctx: &Context,
    c: &Configured,
    kind: &str,
    name: &str,
) -> Result<NameLock, Diagnostics> {
    let dir = c.config.pool_dir.join(LOCK_DIR);
    let key = format!("{kind}-{name}");
    let deadline = Instant::now() + c.backend.lock_wait;
    loop {
        match c.backend.storage.try_lock(&dir, &key).await {
            Ok(Some(lock)) => return Ok(lock),
            Ok(None) => {}
            Err(e) => {
                return Err(Diagnostics::error(
                    "Cannot lock the name",
                    format!(
                        "{} hsw locks a {kind}'s name while creating it: check that the provider can write {}.",
                        e.0,
                        dir.display()
                    ),
                ))
            }
        }
        if Instant::now() >= deadline {
            return Err(Diagnostics::error_at(
                AttrPath::attr("name"),
                "Name in use by another apply",
                format!(
                    "Another apply is creating the {kind} {name}: hsw waited {} s for it (lock {}). Let that apply \
                     finish, then apply again; two configurations should not create the same name.",
                    c.backend.lock_wait.as_secs(),
                    dir.join(format!("{key}.lock")).display()
                ),
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = ctx.stopping() => {
                return Err(Diagnostics::error(
                    "Interrupted",
                    format!("Terraform was interrupted while waiting for another apply creating the {kind} {name}."),
                ))
            }
        }
    }
}
