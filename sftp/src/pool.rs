//! A pool of SFTP connections that reconnects on its own.
//!
//! In-process SSH gets one slot per `sftp.connections`; a subprocess
//! (`sftp.command`) gets a single slot shared by all operations, like restic,
//! so the command (and any password prompt) runs once. A semaphore bounds the
//! operations in flight to `sftp.connections` in both modes. Which slot an
//! operation takes is [`choose`]'s rule; the backend dials every slot at
//! once when it opens ([`Pool::connect`]).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::connection::{Connection, Target};
use crate::error::SftpError;

/// One connection of the pool and what is going on with it.
#[derive(Default)]
struct Slot {
    conn: Option<Arc<Connection>>,
    /// A dial of this slot is in progress.
    dialing: bool,
    /// Operations holding this slot's connection (or dialing it for
    /// themselves).
    busy: usize,
}

/// What [`choose`] sees of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotView {
    /// A live connection with `busy` operations in flight.
    Connected { busy: usize },
    /// Somebody is dialing it.
    Dialing,
    /// No connection and nobody dialing.
    Empty,
}

/// What an operation does with the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// Use the connection of this slot.
    Use(usize),
    /// Dial this (empty) slot and use it.
    Dial(usize),
    /// Every slot is being dialed: wait for a dial to end, then choose again.
    Wait,
}

/// The rule of [`Pool::get`]:
///
/// 1. an idle connection, when there is one;
/// 2. else an empty slot nobody dials, dialed by this operation: no slot is
///    connected yet, or every connection has an operation in flight, so
///    parallel work (pack uploads) spreads over more connections;
/// 3. else the least busy connection: a connection that exists answers
///    sooner than one being dialed (several round trips on a long link);
/// 4. else (nothing connected, everything being dialed) wait for a dial.
fn choose(slots: &[SlotView]) -> Option<Choice> {
    let least_busy = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            SlotView::Connected { busy } => Some((*busy, i)),
            _ => None,
        })
        .min();
    if let Some((0, i)) = least_busy {
        return Some(Choice::Use(i));
    }
    if let Some(i) = slots.iter().position(|s| *s == SlotView::Empty) {
        return Some(Choice::Dial(i));
    }
    if let Some((_, i)) = least_busy {
        return Some(Choice::Use(i));
    }
    if slots.contains(&SlotView::Dialing) {
        return Some(Choice::Wait);
    }
    None
}

/// [`Choice`] carried out under the lock: `busy` already counted.
enum Step {
    Use(usize, Arc<Connection>),
    Dial(usize),
    Wait,
}

pub(crate) struct Pool {
    target: Target,
    slots: Mutex<Vec<Slot>>,
    /// Woken whenever a dial ends (connected or failed).
    dial_ended: Notify,
    permits: Arc<Semaphore>,
}

/// A connection checked out for one operation.
pub(crate) struct Lease<'a> {
    pub conn: Arc<Connection>,
    _busy: Busy<'a>,
    _permit: OwnedSemaphorePermit,
}

/// One operation's share of a slot's `busy` count, given back on drop.
struct Busy<'a> {
    pool: &'a Pool,
    index: usize,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.pool.lock().get_mut(self.index) {
            slot.busy = slot.busy.saturating_sub(1);
        }
    }
}

/// Marks the end of a dial on drop (also when the dial is cancelled), so
/// nobody waits on a slot that nobody dials.
struct DialEnd<'a> {
    pool: &'a Pool,
    index: usize,
}

impl Drop for DialEnd<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.pool.lock().get_mut(self.index) {
            slot.dialing = false;
        }
        self.pool.dial_ended.notify_waiters();
    }
}

impl Pool {
    pub fn new(target: Target, connections: usize) -> Pool {
        let connections = connections.max(1);
        let slot_count = match target {
            Target::Ssh(_) => connections,
            Target::Command(_) => 1,
        };
        Pool {
            target,
            slots: Mutex::new((0..slot_count).map(|_| Slot::default()).collect()),
            dial_ended: Notify::new(),
            permits: Arc::new(Semaphore::new(connections)),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The slots; a panic elsewhere cannot leave them inconsistent (every
    /// change is a single assignment), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Check out a connection ([`choose`]'s rule), dialing one if needed.
    pub async fn get(&self) -> Result<Lease<'_>, SftpError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SftpError::Sftp("connection pool closed".to_string()))?;
        loop {
            // Registered before the slots are looked at, so a dial that
            // ends in between still wakes us.
            let dial_ended = self.dial_ended.notified();
            let step = {
                let mut slots = self.lock();
                let views: Vec<SlotView> = slots.iter().map(view).collect();
                match choose(&views) {
                    Some(Choice::Use(index)) => slots.get_mut(index).and_then(|slot| {
                        slot.conn.clone().map(|conn| {
                            slot.busy += 1;
                            Step::Use(index, conn)
                        })
                    }),
                    Some(Choice::Dial(index)) => slots.get_mut(index).map(|slot| {
                        slot.busy += 1;
                        slot.conn = None;
                        slot.dialing = true;
                        Step::Dial(index)
                    }),
                    Some(Choice::Wait) => Some(Step::Wait),
                    None => None,
                }
            };
            match step {
                Some(Step::Use(index, conn)) => {
                    return Ok(Lease {
                        conn,
                        _busy: Busy { pool: self, index },
                        _permit: permit,
                    })
                }
                Some(Step::Dial(index)) => {
                    // From here on `busy` is given back on drop, errors too.
                    let busy = Busy { pool: self, index };
                    let conn = self.dial(index).await?;
                    return Ok(Lease {
                        conn,
                        _busy: busy,
                        _permit: permit,
                    });
                }
                Some(Step::Wait) => dial_ended.await,
                None => return Err(SftpError::Sftp("connection pool is empty".to_string())),
            }
        }
    }

    /// Dial slot `index` (already marked as dialing) and store the
    /// connection there.
    async fn dial(&self, index: usize) -> Result<Arc<Connection>, SftpError> {
        let _end = DialEnd { pool: self, index };
        let conn = Arc::new(Connection::open(&self.target).await?);
        if let Some(slot) = self.lock().get_mut(index) {
            slot.conn = Some(Arc::clone(&conn));
        }
        Ok(conn)
    }

    /// Dial every slot at once: the first here, so that `open` reports an
    /// unreachable host, host key and authentication problems at once; the
    /// others in the background, so the first parallel work finds them
    /// ready (an SSH connection takes several round trips to set up: key
    /// exchange, authentication, SFTP start, which on a long link cost as
    /// much as a pack upload). A failed background dial is forgotten: the
    /// slot is empty again, and the `get` that dials it next reports.
    pub async fn connect(self: &Arc<Self>) -> Result<(), SftpError> {
        let background: Vec<usize> = {
            let mut slots = self.lock();
            slots
                .iter_mut()
                .enumerate()
                .skip(1)
                .filter(|(_, slot)| view(slot) == SlotView::Empty)
                .map(|(index, slot)| {
                    slot.dialing = true;
                    index
                })
                .collect()
        };
        for index in background {
            let pool = Arc::clone(self);
            tokio::spawn(async move {
                let _ = pool.dial(index).await;
            });
        }
        // Slot 0 is the only empty slot now: `get` dials it.
        drop(self.get().await?);
        Ok(())
    }

    /// Forget a connection that failed, so the next `get` dials again.
    pub fn discard(&self, lease: Lease<'_>) {
        let mut slots = self.lock();
        for slot in slots.iter_mut() {
            if slot
                .conn
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, &lease.conn))
            {
                slot.conn = None;
            }
        }
    }

    /// Drop every connection (closing SFTP sessions and subprocesses).
    pub fn close(&self) {
        let conns: Vec<Arc<Connection>> = self
            .lock()
            .iter_mut()
            .filter_map(|slot| slot.conn.take())
            .collect();
        drop(conns);
    }
}

fn view(slot: &Slot) -> SlotView {
    match &slot.conn {
        _ if slot.dialing => SlotView::Dialing,
        Some(conn) if !conn.is_closed() => SlotView::Connected { busy: slot.busy },
        _ => SlotView::Empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Choice::{Dial, Use, Wait};
    use SlotView::{Connected, Dialing, Empty};

    #[test]
    fn start_up_dials_the_empty_slot_and_waits_for_none() {
        // `connect`: slots 1.. are dialed in the background, slot 0 here.
        assert_eq!(choose(&[Empty, Dialing, Dialing]), Some(Dial(0)));
        // Nothing connected, everything being dialed: wait.
        assert_eq!(choose(&[Dialing, Dialing, Dialing]), Some(Wait));
    }

    #[test]
    fn a_connection_is_preferred_to_a_dial_in_progress() {
        assert_eq!(
            choose(&[Dialing, Connected { busy: 0 }, Dialing]),
            Some(Use(1))
        );
        // Even a busy one: it answers before a dial would finish.
        assert_eq!(
            choose(&[Connected { busy: 3 }, Dialing, Dialing]),
            Some(Use(0))
        );
    }

    #[test]
    fn least_busy_connection_wins() {
        assert_eq!(
            choose(&[
                Connected { busy: 2 },
                Connected { busy: 1 },
                Connected { busy: 4 }
            ]),
            Some(Use(1))
        );
    }

    #[test]
    fn work_spreads_to_empty_slots_once_every_connection_is_busy() {
        assert_eq!(
            choose(&[Connected { busy: 1 }, Empty, Dialing]),
            Some(Dial(1))
        );
        // An idle connection first.
        assert_eq!(
            choose(&[Connected { busy: 1 }, Empty, Connected { busy: 0 }]),
            Some(Use(2))
        );
    }

    #[test]
    fn nothing_connected_dials_rather_than_waits() {
        assert_eq!(choose(&[Dialing, Empty]), Some(Dial(1)));
        assert_eq!(choose(&[Empty]), Some(Dial(0)));
    }

    #[test]
    fn an_empty_pool_has_no_choice() {
        assert_eq!(choose(&[]), None);
    }
}
