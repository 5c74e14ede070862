//! What the engine drives at `motherstream upgrade`: the HTTP accept loop,
//! the drain, and the exec (on the main thread when it forked the output).

use std::fs::File;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use motherstream::handover::{self, Exe, Stage};
use motherstream::http::{Ctx, Liveness};

pub struct HttpStage {
    pub liveness: Arc<Liveness>,
    pub ctx: Arc<Ctx>,
    pub listener: TcpListener,
    pub exe: Exe,
    pub to_main: Sender<File>,
}

impl Stage for HttpStage {
    fn pause(&self) -> Result<(), String> {
        if self
            .liveness
            .server()
            .pause_accepting(Duration::from_secs(1))
        {
            Ok(())
        } else {
            Err("the HTTP accept loop did not pause".into())
        }
    }

    fn resume(&self) {
        self.liveness.server().resume_accepting();
    }

    fn open_connections(&self) -> usize {
        self.liveness.server().num_connections()
    }

    fn idle(&self) -> bool {
        self.liveness.workers_idle() && self.ctx.answers.pending() == 0
    }

    fn exec(&self, state: File, here: bool) -> String {
        if here || std::process::id() == motherstream::sys::fds::gettid() {
            return handover::exec(&self.exe, &state, &self.listener);
        }
        // The main thread execs; this one waits to be replaced.
        if self.to_main.send(state).is_err() {
            return "the main thread is gone".into();
        }
        loop {
            std::thread::park();
        }
    }
}
