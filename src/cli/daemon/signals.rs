//! SIGTERM/SIGINT → graceful stop; SIGHUP → reload. A dedicated thread
//! turns them into engine commands.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use motherstream::engine::Command;
use motherstream::http::{Ctx, Liveness};
use motherstream::listen::Origin;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// What runs before a stop is asked of the engine.
pub type BeforeStop = Box<dyn Fn() + Send>;

/// With a socket that outlives this process (systemd's, or handed over), a
/// stop pauses the accept loop and lets the requests in flight be answered
/// first: later hooks wait in the socket's queue for the next daemon
/// instead of getting a 503 from this one.
pub fn before_stop(origin: Origin, live: &Arc<Liveness>, ctx: &Arc<Ctx>) -> Option<BeforeStop> {
    (origin != Origin::Bound).then(|| {
        let live = live.clone();
        let ctx = ctx.clone();
        Box::new(move || drain_for_stop(&live, &ctx)) as BeforeStop
    })
}

/// Before a stop with a socket that outlives us: accept nothing more and
/// give the requests in flight up to 0.5 s to be answered.
fn drain_for_stop(live: &Liveness, ctx: &Ctx) {
    if !live.server().pause_accepting(Duration::from_millis(500)) {
        return;
    }
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        if live.server().num_connections() == 0
            && live.workers_idle()
            && ctx.answers.pending() == 0
            && ctx.engine.is_empty()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    log::info!("stopped accepting: connections wait in the socket's queue for the next start");
}

/// The signal thread; its handle closes it.
pub fn spawn(
    tx: Sender<Command>,
    before_stop: Option<BeforeStop>,
) -> Result<signal_hook::iterator::Handle, String> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let cmd = match sig {
                    SIGHUP => {
                        log::info!("SIGHUP: reloading the configuration");
                        Command::Reload
                    }
                    _ => {
                        log::info!(
                            "{}: stopping",
                            if sig == SIGINT { "SIGINT" } else { "SIGTERM" }
                        );
                        if let Some(f) = &before_stop {
                            f();
                        }
                        Command::Shutdown
                    }
                };
                if tx.send(cmd).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(handle)
}
