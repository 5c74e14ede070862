//! Saving a batch without stopping the picture. The engine thread owns the
//! relay as well as the queue, and the relay must see every tag as it
//! arrives: an fsync on this thread held the output still for as long as
//! the disk took (3-720 ms measured while other programs wrote to the same
//! disk; each such stall at a slot end showed as a frozen picture). So the
//! write runs on a scoped helper thread, and while it does, this thread
//! goes on handing media tags to the relay. The batch is still durable
//! before anything is acknowledged: the caller gets the write's result
//! only once it is done. What else the relay reports meanwhile (a source
//! ended, the output exited...), and what the tags made the relay say,
//! wait until then, so no engine decision interleaves with the batch.

use crossbeam_channel::{select, Receiver};

use crate::queue::{Op, State};
use crate::relay::{Notice, Relay, RelayEvent};
use crate::store::{Store, StoreError};

use super::ports::Clock;

/// What came from the relay while the batch was written.
#[derive(Default)]
pub(super) struct Backlog {
    pub(crate) events: Vec<RelayEvent>,
    pub(crate) notices: Vec<Notice>,
}

/// Appends `ops` (the store fsyncs) on a helper thread; meanwhile media
/// tags from `rx` go to `relay`. Without a thread (spawn failed), the
/// write runs here, as before.
pub(super) fn append_keeping_media(
    store: &mut Store,
    state: &State,
    ops: &[Op],
    relay: &mut dyn Relay,
    rx: &Receiver<RelayEvent>,
    clock: &dyn Clock,
    backlog: &mut Backlog,
) -> Result<(), StoreError> {
    let written = std::thread::scope(|s| {
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        let st = &mut *store;
        let writer = std::thread::Builder::new()
            .name("store-write".into())
            .spawn_scoped(s, move || {
                let r = st.append(ops, state);
                let _ = done_tx.send(());
                r
            })
            .map_err(|e| {
                log::warn!(
                    "cannot start a thread to save the queue ({e}); saving on the engine thread"
                )
            })
            .ok()?;
        loop {
            select! {
                recv(done_rx) -> _ => break,
                recv(rx) -> ev => match ev {
                    Ok(ev @ (RelayEvent::Tag { .. } | RelayEvent::BridgeTag { .. })) => {
                        relay.on_event(ev, clock.now(), &mut backlog.notices);
                    }
                    Ok(ev) => backlog.events.push(ev),
                    // No relay any more: only the write is left to wait for.
                    Err(_) => {
                        let _ = done_rx.recv();
                        break;
                    }
                },
            }
        }
        Some(writer.join().unwrap_or_else(|_| {
            Err(StoreError {
                path: std::path::PathBuf::from("(queue state)"),
                action: "write (the writing thread panicked)",
                source: std::io::Error::other("panic"),
            })
        }))
    });
    written.unwrap_or_else(|| store.append(ops, state))
}
