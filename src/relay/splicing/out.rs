//! The output ffmpeg of the splice relay: started (again, after a
//! back-off), fed what the splicer produced, reported when it is down.

use std::time::Instant;

use super::*;

impl SpliceRelay {
    pub(super) fn start_output(&mut self, now: Instant) {
        self.output_run += 1;
        self.secret = crate::relay::new_secret();
        let url = self.output_url();
        match Output::spawn(&self.spec, self.output_run, &url, self.events.clone()) {
            Ok(o) => {
                log::info!(
                    "relay output started (pid {}, run {}): {}/{}",
                    o.pid,
                    o.run,
                    self.spec.output_app,
                    self.spec.output_stream
                );
                self.output = Some(o);
                self.output_retry_at = None;
                let now_ms = self.ms(now);
                self.splicer.output_restarted(now_ms, &mut self.out);
                self.flush(now);
            }
            Err(e) => {
                self.output_failures += 1;
                let d = backoff(self.output_failures);
                log::error!(
                    "cannot start the output {:?}: {e}; retrying in {:.1} s",
                    self.spec.ffmpeg,
                    d.as_secs_f64()
                );
                if !self.output_down {
                    self.output_down = true;
                    self.pending.push(Notice::OutputFailed {
                        why: format!("cannot start ffmpeg: {e}"),
                    });
                } else {
                    self.pending.push(Notice::OutputFailedAgain);
                }
                self.output_retry_at = Some(now + d);
            }
        }
    }

    /// Write what the splicer produced.
    pub(super) fn flush(&mut self, now: Instant) {
        self.route_feed(now);
        if self.out.is_empty() {
            return;
        }
        let ok = match &mut self.output {
            Some(o) => o.write(&self.out),
            None => true,
        };
        if ok && self.output.is_some() {
            crate::handover_timing::first_tag_written();
        }
        self.out.clear();
        if !ok {
            if let Some(o) = &mut self.output {
                if !self.output_closing {
                    log::warn!(
                        "the relay's output ffmpeg (pid {}) is not reading its input; restarting it (OBS sees a reconnect)",
                        o.pid
                    );
                    o.kill();
                }
            }
        }
        let _ = now;
    }

    /// Hand over pending notices; report an output that runs again.
    pub(super) fn report_output(&mut self, now: Instant, notices: &mut Vec<Notice>) {
        notices.append(&mut self.pending);
        if self.output_down
            && self
                .output
                .as_ref()
                .is_some_and(|o| now.duration_since(o.started) >= OUTPUT_BACK_AFTER)
        {
            self.output_down = false;
            notices.push(Notice::OutputBack);
        }
    }
}
