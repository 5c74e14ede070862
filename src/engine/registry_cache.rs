//! The streamer registry as the engine last read it from `streamers.json`,
//! with what is derived from it (public names' generation, the streamers'
//! pages) and when to look at the file again.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::key::StreamKey;
use crate::registry::{self, FileSig, Registry};
use crate::view::Pages;

/// How often the engine looks at `streamers.json` for changes (one stat)
/// when no inotify watch reports them.
const REGISTRY_CHECK: Duration = Duration::from_secs(2);

pub(super) struct RegistryCache {
    registry: Registry,
    /// Signature of the file `registry` was read from (None = no file).
    sig: Option<FileSig>,
    /// inotify reports changes of `streamers.json`; without it (watch set-up
    /// failed) the file is checked on a timer.
    watched: bool,
    next_check: Instant,
    /// Bumped at every change: public names may have changed.
    gen: u64,
    /// The streamers' pages of `registry`, shared with every view.
    pages: Arc<Pages>,
    /// `[rtmp]` (fixed until a restart): what the pages tell streamers.
    ingest_app: String,
    rtmp_port: u16,
}

impl RegistryCache {
    pub(super) fn new(watched: bool, now: Instant, ingest_app: &str, rtmp_port: u16) -> Self {
        let registry = Registry::default();
        RegistryCache {
            pages: Arc::new(Pages::new(&registry, ingest_app, rtmp_port)),
            registry,
            sig: None,
            watched,
            next_check: now,
            gen: 0,
            ingest_app: ingest_app.to_string(),
            rtmp_port,
        }
    }

    pub(super) fn get(&self) -> &Registry {
        &self.registry
    }

    /// The public name of a key: the single place that decides it. Stream
    /// keys stand for themselves until a streamer registry is in use; from
    /// then on, never.
    pub(super) fn display(&self, key: &StreamKey) -> String {
        self.registry.display(key)
    }

    pub(super) fn gen(&self) -> u64 {
        self.gen
    }

    pub(super) fn pages(&self) -> Arc<Pages> {
        self.pages.clone()
    }

    /// Every change of the registry goes through here.
    pub(super) fn set(&mut self, r: Registry) {
        self.registry = r;
        self.gen += 1;
        self.pages = Arc::new(Pages::new(&self.registry, &self.ingest_app, self.rtmp_port));
    }

    /// The engine wrote the file itself (under its lock): what it now
    /// holds is what `set` was given.
    pub(super) fn written(&mut self, dir: &Path) {
        self.sig = registry::signature(dir);
    }

    /// When the file must be looked at (None: inotify tells).
    pub(super) fn deadline(&self) -> Option<Instant> {
        (!self.watched).then_some(self.next_check)
    }

    /// Re-read `streamers.json` in `dir` if it changed (or always, with
    /// `force`). Returns whether the registry changed. An unreadable file
    /// is reported once per version and the registry read before is kept.
    pub(super) fn refresh(&mut self, dir: &Path, now: Instant, force: bool) -> bool {
        self.next_check = now + REGISTRY_CHECK;
        let sig = registry::signature(dir);
        if !force && sig == self.sig {
            return false;
        }
        self.sig = sig;
        match registry::load(dir) {
            Ok(r) if r == self.registry => false,
            Ok(r) => {
                log::info!(
                    "streamer registry {}: {} streamers",
                    registry::path(dir).display(),
                    r.len()
                );
                self.set(r);
                true
            }
            Err(e) => {
                log::error!(
                    "{e}; keeping the {} streamers read before",
                    self.registry.len()
                );
                // A file exists, so a registry is meant to be in use: keys
                // stay out of public output even though it cannot be read.
                if !self.registry.in_use() {
                    self.set(Registry::from_streamers(Vec::new(), true));
                    return true;
                }
                false
            }
        }
    }
}
