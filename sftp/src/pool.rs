//! A pool of SFTP connections that reconnects on its own.
//!
//! In-process SSH gets one slot per `sftp.connections`; every operation takes
//! the least busy slot and dials it first when it is empty. A subprocess
//! (`sftp.command`) gets a single slot shared by all operations, like restic,
//! so the command (and any password prompt) runs once. A semaphore bounds the
//! operations in flight to `sftp.connections` in both modes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::connection::{Connection, Target};
use crate::SftpError;

struct Slot {
    conn: Mutex<Option<Arc<Connection>>>,
    busy: AtomicUsize,
}

pub(crate) struct Pool {
    target: Target,
    slots: Vec<Slot>,
    permits: Arc<Semaphore>,
}

/// A connection checked out for one operation.
pub(crate) struct Lease<'a> {
    pub conn: Arc<Connection>,
    slot: &'a Slot,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.slot.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    pub fn new(target: Target, connections: usize) -> Pool {
        let connections = connections.max(1);
        let slot_count = match target {
            Target::Ssh(_) => connections,
            Target::Command(_) => 1,
        };
        let slots = (0..slot_count)
            .map(|_| Slot {
                conn: Mutex::new(None),
                busy: AtomicUsize::new(0),
            })
            .collect();
        Pool {
            target,
            slots,
            permits: Arc::new(Semaphore::new(connections)),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Check out a connection, dialing one if the chosen slot is empty.
    pub async fn get(&self) -> Result<Lease<'_>, SftpError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SftpError::Sftp("connection pool closed".to_string()))?;
        let slot = self
            .slots
            .iter()
            .min_by_key(|s| s.busy.load(Ordering::Relaxed))
            .ok_or_else(|| SftpError::Sftp("connection pool is empty".to_string()))?;
        slot.busy.fetch_add(1, Ordering::Relaxed);
        // From here on the lease's Drop gives `busy` back, on errors too.
        let mut guard = slot.conn.lock().await;
        let conn = match guard.as_ref() {
            Some(c) if !c.is_closed() => c.clone(),
            _ => {
                *guard = None;
                let fresh = Connection::open(&self.target).await;
                let fresh = match fresh {
                    Ok(c) => Arc::new(c),
                    Err(e) => {
                        slot.busy.fetch_sub(1, Ordering::Relaxed);
                        return Err(e);
                    }
                };
                *guard = Some(fresh.clone());
                fresh
            }
        };
        drop(guard);
        Ok(Lease {
            conn,
            slot,
            _permit: permit,
        })
    }

    /// Dial every empty slot now, in the background: an SSH connection
    /// takes several round trips to set up (key exchange, authentication,
    /// SFTP start), which on a long link cost as much as a pack upload; the
    /// first parallel work then finds its connections ready. A failed dial
    /// is forgotten (the next `get` of that slot dials again and reports).
    pub fn fill_in_background(self: &Arc<Self>, runtime: &tokio::runtime::Runtime) {
        for index in 0..self.slots.len() {
            let pool = Arc::clone(self);
            runtime.spawn(async move {
                let Some(slot) = pool.slots.get(index) else {
                    return;
                };
                let mut guard = slot.conn.lock().await;
                if guard.as_ref().is_some_and(|c| !c.is_closed()) {
                    return;
                }
                if let Ok(conn) = Connection::open(&pool.target).await {
                    *guard = Some(Arc::new(conn));
                }
            });
        }
    }

    /// Forget a connection that failed, so the next `get` dials again.
    pub async fn discard(&self, lease: Lease<'_>) {
        let mut guard = lease.slot.conn.lock().await;
        if guard.as_ref().is_some_and(|c| Arc::ptr_eq(c, &lease.conn)) {
            *guard = None;
        }
    }

    /// Drop every connection (closing SFTP sessions and subprocesses).
    pub async fn close(&self) {
        for slot in &self.slots {
            *slot.conn.lock().await = None;
        }
    }
}
