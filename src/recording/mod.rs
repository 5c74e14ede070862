//! `[recording]`: every streamer's time on air, recorded by nginx-rtmp.
//!
//! The engine says who is on screen at each cut ([`Recorder::on_screen`]);
//! this module's thread starts and stops nginx-rtmp's manual recorder
//! through the control module (`/control/record/start|stop`), takes each
//! finished file that nginx reports in `on_record_done`, moves it from
//! nginx's `record_path` (`incoming_dir`) to `<dir>/<display name>-<UTC
//! start>.flv`, keeps recording off below a free-space floor and removes
//! recordings older than `keep_days`. Nothing here runs on the engine
//! thread: a slow nginx or disk never delays a switch.
//!
//! The decisions are pure functions: `names` (what a recording is filed
//! as) and `plan` (what to record, what to prune, whether there is space).
//! The thread does the I/O: `shell` (its loop, timers and free-space
//! checks), `control` (nginx's recorder started and stopped), `filing`
//! (finished files moved, old ones removed); `status` is what it publishes
//! for `/api/status`, `carry` what it hands to the next binary at
//! `motherstream upgrade` (nginx goes on writing the file meanwhile).

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::config::RecordingConfig;
use crate::key::StreamKey;

mod carry;
mod control;
mod filing;
mod names;
mod plan;
mod shell;

use crate::handover::recording::RecordingCarry;
pub(crate) use crate::view::Recent;
use crate::view::{Published, RecordingStatus};
pub(crate) use names::file_name;
pub use names::parse_file_name;
pub(crate) use plan::{plan, space_ok, to_prune};

use shell::Shell;

/// Finished recordings listed in `/api/status`.
pub(crate) const RECENT: usize = 20;
/// Free space is checked this often while a recording runs.
const SPACE_CHECK_EVERY: Duration = Duration::from_secs(10);
/// Old recordings are looked for this often.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// A failed start is tried again after this long (while they are on screen).
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// At shutdown, wait this long for nginx to report the last file.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
/// Stopped recordings whose file nginx has not reported yet, at most.
const MAX_FINISHING: usize = 32;

/// What the recorder thread is told.
enum Msg {
    /// (stream key, display name) now on screen; None: nobody.
    OnScreen(Option<(StreamKey, String)>),
    /// The head of the queue: who the output shows or is about to cut to.
    Heading(Option<(StreamKey, String)>),
    /// nginx's on_record_done.
    Done {
        key: StreamKey,
        recorder: String,
        path: String,
    },
    /// A hand-over: answer with the state, then act on nothing until
    /// `Thaw` (the process execs meanwhile).
    Freeze(Sender<RecordingCarry>),
    /// The hand-over did not happen: go on.
    Thaw,
    Shutdown,
}

/// Where the HTTP side hands `on_record_done` to the recorder thread.
#[derive(Clone)]
pub struct Inbox(Sender<Msg>);

impl Inbox {
    /// Never blocks.
    pub(crate) fn record_done(&self, key: &StreamKey, recorder: &str, path: &str) {
        let _ = self.0.send(Msg::Done {
            key: key.clone(),
            recorder: recorder.into(),
            path: path.into(),
        });
    }
}

/// The recorder thread and its handles.
pub struct Recorder {
    tx: Sender<Msg>,
    join: Option<JoinHandle<()>>,
    status: Published<RecordingStatus>,
    /// The last head sent (the engine reports it after every change).
    heading: Option<(StreamKey, String)>,
    /// Who the engine last said is on screen. With `heading`, the level a
    /// hand-over carries: what the engine says after the thread froze is
    /// not lost.
    on_screen: Option<(StreamKey, String)>,
}

impl Recorder {
    /// Start the thread (`[recording] enabled`). `control_url` and `app`
    /// are `[rtmp] control_url` and `ingest_app`; `carried`, what the
    /// previous binary's recorder handed over.
    pub fn spawn(
        cfg: RecordingConfig,
        control_url: String,
        app: String,
        carried: Option<RecordingCarry>,
    ) -> io::Result<Recorder> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let status = Published::default();
        let mut shell = Shell::new(cfg, control_url, app, status.clone());
        let adopted = carried.is_some_and(|c| shell.adopt(c));
        let (heading, on_screen) = (shell.heading.clone(), shell.on_screen.clone());
        let join = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || shell.run(&rx, adopted))?;
        Ok(Recorder {
            tx,
            join: Some(join),
            status,
            heading,
            on_screen,
        })
    }

    pub fn inbox(&self) -> Inbox {
        Inbox(self.tx.clone())
    }

    pub(crate) fn status(&self) -> Published<RecordingStatus> {
        self.status.clone()
    }

    /// The output now shows `who` (stream key, display name). Never blocks.
    pub(crate) fn on_screen(&mut self, who: Option<(StreamKey, String)>) {
        self.on_screen.clone_from(&who);
        let _ = self.tx.send(Msg::OnScreen(who));
    }

    /// The queue's head is `who` (stream key, display name): on screen, or
    /// next at the coming cut. Sent on change only; never blocks.
    pub(crate) fn heading(&mut self, who: Option<(&StreamKey, &str)>) {
        if self.heading.as_ref().map(|h| &h.0) != who.map(|w| w.0) {
            self.heading = who.map(|(k, n)| (k.clone(), n.into()));
            let _ = self.tx.send(Msg::Heading(self.heading.clone()));
        }
    }

    /// A hand-over: the thread's state once it is between two steps (a
    /// call to nginx's control module in progress is finished first), with
    /// who is on screen and next as the engine last said. From then on the
    /// thread acts on nothing until [`Recorder::thaw`]. Err after `wait`.
    pub(crate) fn freeze(&self, wait: Duration) -> Result<RecordingCarry, String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.tx.send(Msg::Freeze(tx)).is_err() {
            return Err("the recorder thread is gone".into());
        }
        match rx.recv_timeout(wait) {
            Ok(mut c) => {
                c.on_screen = carry::streamer(&self.on_screen);
                c.heading = carry::streamer(&self.heading);
                Ok(c)
            }
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "the recorder thread did not answer within {} ms (waiting on nginx's control module)",
                wait.as_millis()
            )),
            Err(RecvTimeoutError::Disconnected) => Err("the recorder thread is gone".into()),
        }
    }

    /// The hand-over did not happen: the thread goes on (a no-op when it
    /// is not frozen).
    pub(crate) fn thaw(&self) {
        let _ = self.tx.send(Msg::Thaw);
    }

    /// Stop the running recording, wait briefly for its file, and join.
    pub(crate) fn shutdown(mut self) {
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}
