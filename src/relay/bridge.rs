//! A bridge encoder: an ffmpeg child that re-encodes one source's video
//! with an IDR every quarter second, so a cut to a streamer whose own
//! keyframes are seconds apart can start at once (`notes/splice.md` items
//! 10-12; the splicer's side is in `splice.rs`).
//!
//! FLV video tags (the splicer's feed) go through a bounded channel to a
//! writer thread and into ffmpeg's stdin; its FLV stdout is demuxed by a
//! reader thread into `RelayEvent::BridgeTag`s, and its end becomes
//! `RelayEvent::BridgeExited`. stderr goes to the capped relay log. Same
//! process rules as the output: own process group, SIGKILL when the daemon
//! dies, an empty environment, the engine never blocks on a pipe.

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};

use super::flv::{self, Tag};
use super::restart::copy_stderr;
use super::splice::SourceId;
use super::{RelayEvent, RelaySpec};
use crate::redact::Redactor;
use crate::sys;

/// Tags the writer may lag behind (~10 s of video at 60 fps): more means
/// the encoder cannot keep up, and a late bridge is no use.
const PIPE_TAGS: usize = 600;

/// ffmpeg's arguments: FLV video on stdin, re-encoded H.264 FLV on stdout.
/// Timestamps are kept (`-copyts`, passthrough frame timing: same frames,
/// same times), so the splicer can put bridge frames on the source's clock.
pub(crate) fn args() -> Vec<String> {
    [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "warning",
        // Start decoding on the first tags, no probing delay.
        "-probesize",
        "32",
        "-analyzeduration",
        "0",
        "-fpsprobesize",
        "0",
        // A single decoder thread: frame threads would add a frame of
        // latency each.
        "-threads",
        "1",
        "-f",
        "flv",
        "-i",
        "pipe:0",
        "-map",
        "0:v:0",
        "-an",
        "-copyts",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        "-preset",
        "superfast",
        "-tune",
        "zerolatency",
        "-bf",
        "0",
        "-crf",
        "21",
        // An IDR every 0.25 s of stream time, whatever the frame rate.
        "-forced-idr",
        "1",
        "-force_key_frames",
        "expr:gte(t,n_forced*0.25)",
        "-f",
        "flv",
        "-flvflags",
        "no_duration_filesize",
        "-flush_packets",
        "1",
        "pipe:1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub(crate) struct Bridge {
    /// The splicer's `bridge_epoch` it was started for.
    pub(crate) epoch: u64,
    pub(crate) pid: u32,
    pub(crate) started: Instant,
    tags: Option<Sender<Tag>>,
    child: Child,
}

impl Bridge {
    pub(crate) fn spawn(
        spec: &RelaySpec,
        source: SourceId,
        epoch: u64,
        name: &str,
        events: Sender<RelayEvent>,
    ) -> std::io::Result<Bridge> {
        let mut child = super::spawn_ffmpeg(&spec.ffmpeg, args(), Stdio::piped(), Stdio::piped())?;
        let pid = child.id();
        let (tx, rx) = crossbeam_channel::bounded::<Tag>(PIPE_TAGS);
        if let Some(mut stdin) = child.stdin.take() {
            std::thread::Builder::new()
                .name("bridge-in".into())
                .spawn(move || {
                    let mut buf = Vec::with_capacity(64 << 10);
                    flv::write_file_header(&mut buf, false, true);
                    if stdin.write_all(&buf).is_err() {
                        return;
                    }
                    for tag in rx {
                        buf.clear();
                        flv::write_tag(&mut buf, &tag);
                        if stdin.write_all(&buf).is_err() {
                            break;
                        }
                    }
                })?;
        }
        if let Some(mut stdout) = child.stdout.take() {
            let events = events.clone();
            std::thread::Builder::new()
                .name("bridge-out".into())
                .spawn(move || {
                    let why = read_tags(&mut stdout, source, pid, &events);
                    let _ = events.send(RelayEvent::BridgeExited { source, pid, why });
                })?;
        }
        if let Some(err) = child.stderr.take() {
            let log_path = spec.log_path.clone();
            let max = spec.log_max_bytes;
            let header = format!(
                "--- bridge for {name} started {} (pid {pid}) ---",
                crate::log::timestamp(std::time::SystemTime::now())
            );
            std::thread::Builder::new()
                .name("bridge-stderr".into())
                .spawn(move || {
                    copy_stderr(err, &log_path, max, &header, &Redactor::new());
                })?;
        }
        Ok(Bridge {
            epoch,
            pid,
            started: Instant::now(),
            tags: Some(tx),
            child,
        })
    }

    /// Queue a tag for the encoder. False when it is not keeping up (or
    /// gone): the caller stops it.
    pub(crate) fn write(&mut self, tag: Tag) -> bool {
        match &self.tags {
            Some(tx) => match tx.try_send(tag) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
            None => false,
        }
    }

    /// CPU time (user + system) it has used so far, in seconds.
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.pid)
    }

    /// Stop it: close its stdin, SIGKILL its group, reap it on a thread.
    /// Returns the CPU seconds it used and how long it ran.
    pub(crate) fn stop(mut self) -> (Option<f64>, f64) {
        let cpu = self.cpu_seconds();
        let ran = self.started.elapsed().as_secs_f64();
        self.tags = None;
        sys::signal_group(self.pid, libc::SIGKILL);
        let mut child = self.child;
        let _ = std::thread::Builder::new()
            .name("bridge-reap".into())
            .spawn(move || {
                let _ = child.wait();
            });
        (cpu, ran)
    }
}

/// Demux the encoder's FLV output into events until it ends; why it ended.
fn read_tags(
    out: &mut impl Read,
    source: SourceId,
    pid: u32,
    events: &Sender<RelayEvent>,
) -> String {
    let mut demux = flv::Demuxer::new(true);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) => return "its output ended".into(),
            Ok(n) => n,
            Err(e) => return format!("reading its output: {e}"),
        };
        demux.push(&buf[..n]);
        let arrival = Instant::now();
        loop {
            match demux.next_tag() {
                Ok(Some(tag)) => {
                    let ev = RelayEvent::BridgeTag {
                        source,
                        pid,
                        tag,
                        arrival,
                    };
                    if events.send(ev).is_err() {
                        return "the relay is gone".into();
                    }
                }
                Ok(None) => break,
                Err(e) => return format!("bad FLV from it: {e}"),
            }
        }
    }
}

/// User + system CPU seconds of a process, from `/proc/PID/stat`.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / sys::clock_ticks_per_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_reads_this_process() {
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let s = cpu_seconds(std::process::id()).expect("own /proc stat");
        assert!(s > 0.0 && s < 3600.0, "{s}");
    }

    #[test]
    fn args_keep_timestamps_and_make_short_gops_without_b_frames() {
        let a = args().join(" ");
        for want in [
            "-copyts",
            "-fps_mode passthrough",
            "-bf 0",
            "-tune zerolatency",
            "n_forced*0.25",
            "pipe:0",
            "pipe:1",
        ] {
            assert!(a.contains(want), "{want} missing from {a}");
        }
    }
}
