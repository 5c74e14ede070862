//! Starting and stopping nginx-rtmp's manual recorder through its control
//! module (`/control/record/start|stop`).

use std::time::Instant;

use super::shell::{unix_ms, Active, Finishing, Shell};
use super::{MAX_FINISHING, RETRY_AFTER};
use crate::key::StreamKey;

impl Shell {
    pub(super) fn start(&mut self, key: &StreamKey) {
        let Some((key, name)) = [&self.on_screen, &self.heading]
            .into_iter()
            .flatten()
            .find(|(k, _)| k == key)
            .cloned()
        else {
            return;
        };
        match crate::nginx::record(&self.control_url, true, &self.app, &key, &self.cfg.recorder) {
            Ok(None) => {
                // 204: the stream is not published (they just left), or
                // nginx records it already (from before a restart of ours;
                // that file is not claimed). Nothing to wait for.
                if std::mem::take(&mut self.start_failing) {
                    log::info!("recording: nginx's control module answers again");
                }
                log::debug!("recording: nginx has nothing to start for {name}");
            }
            Ok(Some(path)) => {
                if std::mem::take(&mut self.start_failing) {
                    log::info!("recording: nginx's control module answers again");
                }
                log::info!("recording {name}");
                let now = unix_ms();
                let shown = self.on_screen.as_ref().is_some_and(|(k, _)| *k == key);
                self.active.push(Active {
                    key,
                    name,
                    shown_ms: shown.then_some(now),
                    path,
                });
            }
            Err(e) => {
                if !std::mem::replace(&mut self.start_failing, true) {
                    log::warn!(
                        "cannot start recording {name} through nginx's control module: {e}; trying again every {} s",
                        RETRY_AFTER.as_secs()
                    );
                } else {
                    log::debug!("recording of {name} still cannot start: {e}");
                }
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }

    pub(super) fn stop(&mut self, key: &StreamKey) {
        let Some(i) = self.active.iter().position(|a| a.key == *key) else {
            return;
        };
        let a = self.active.remove(i);
        let path = match crate::nginx::record(
            &self.control_url,
            false,
            &self.app,
            &a.key,
            &self.cfg.recorder,
        ) {
            // 204: already stopped (the publisher left); its
            // on_record_done may still be on its way.
            Ok(p) => p.unwrap_or(a.path),
            Err(e) => {
                // nginx still closes the file when the publisher leaves.
                log::warn!(
                    "cannot stop recording {} through nginx's control module: {e}",
                    a.name
                );
                a.path
            }
        };
        log::debug!("recording of {} stopped", a.name);
        if self.finishing.len() >= MAX_FINISHING {
            self.finishing.pop_front();
        }
        self.finishing.push_back(Finishing {
            key: a.key,
            name: a.name,
            shown_ms: a.shown_ms,
            stopped_ms: unix_ms(),
            path,
        });
    }
}
