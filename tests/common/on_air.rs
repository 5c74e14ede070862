//! The scene the hand-over tests and the hand-over bench share: a private
//! nginx-rtmp with the daemon on it (a copy of the binary in a directory of
//! its own, which `motherstream upgrade` replaces as dpkg does), a decoding
//! viewer of the output that has seen the slate, alice on air (30 fps,
//! 48 kHz stereo, her own size) and bob queued (44.1 kHz mono, the slate's
//! size), so that who is on the output shows in its picture size.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::viewer::{Frame, Viewer};
use super::{free_port, wait_for, Daemon, DaemonOpts, Nginx, Publisher, TempDir};

/// Alice's picture size.
pub const ALICE: (u32, u32) = (320, 180);
/// Bob's size, and the slate's.
pub const BOB: (u32, u32) = (640, 360);
pub const FPS: u32 = 30;
/// A keyframe every 2 s.
pub const GOP: u32 = 60;

/// A private nginx-rtmp and the daemon on it, started from a copy of
/// `source` (version 1.0.0-test), and its output's nginx client id once
/// published.
pub struct Stage {
    _bin_dir: TempDir,
    /// The binary the daemon runs (replaced by [`Stage::install`]).
    pub bin: PathBuf,
    source: PathBuf,
    pub hook_port: u16,
    pub nginx: Nginx,
    pub daemon: Daemon,
    pub client: String,
}

impl Stage {
    pub fn start(source: &Path, extra_toml: &str) -> Stage {
        let bin_dir = TempDir::new("handover-bin");
        let bin = bin_dir.join("motherstream");
        install(source, &bin, "1.0.0-test");
        let hook_port = free_port();
        let nginx = Nginx::start(hook_port);
        let daemon = Daemon::start(DaemonOpts {
            listen: format!("127.0.0.1:{hook_port}"),
            rtmp_port: nginx.rtmp_port,
            nginx_http_port: nginx.http_port,
            extra_toml: extra_toml.into(),
            bin: bin.clone(),
            hook_secret: Some(nginx.hook_secret.clone()),
        });
        let client = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            nginx.output_client()
        })
        .unwrap_or_else(|| panic!("output never published; log:\n{}", daemon.log()));
        Stage {
            _bin_dir: bin_dir,
            bin,
            source: source.to_path_buf(),
            hook_port,
            nginx,
            daemon,
            client,
        }
    }

    /// Put a "new version" of the binary in place (see [`install`]).
    pub fn install(&self, version: &str) {
        install(&self.source, &self.bin, version);
    }

    /// Run `motherstream upgrade` from the installed binary: its exit,
    /// what it said (stdout and stderr) and how long it took.
    pub fn upgrade(&self) -> (std::process::ExitStatus, String, Duration) {
        let t0 = Instant::now();
        let out = Command::new(&self.bin)
            .arg("--config")
            .arg(self.daemon.config_path())
            .arg("upgrade")
            .output()
            .expect("run motherstream upgrade");
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status, said, t0.elapsed())
    }

    /// Whether the daemon runs the binary installed last (the file at
    /// `bin`, not an older one, replaced or not): /proc/PID/exe is the
    /// same inode.
    pub fn runs_installed(&self) -> bool {
        let exe = std::fs::metadata(format!("/proc/{}/exe", self.daemon.pid()));
        let bin = std::fs::metadata(&self.bin);
        matches!((exe, bin), (Ok(e), Ok(b)) if e.ino() == b.ino() && e.dev() == b.dev())
    }

    /// The viewer on the slate, alice on the output, bob queued.
    pub fn on_air(&self, alice_gop: u32) -> OnAir {
        let viewer = viewer_on_slate(&self.nginx);
        let alice = alice(&self.nginx, alice_gop);
        self.daemon.wait_queue(&["alice"], Duration::from_secs(15));
        assert!(
            viewer
                .wait_size(ALICE, Instant::now(), Duration::from_secs(15))
                .is_some(),
            "alice never on the output; {}",
            self.daemon.status()
        );
        let bob = bob(&self.nginx);
        self.daemon
            .wait_queue(&["alice", "bob"], Duration::from_secs(15));
        OnAir { viewer, alice, bob }
    }
}

/// What [`Stage::on_air`] set up.
pub struct OnAir {
    pub viewer: Viewer,
    pub alice: Publisher,
    pub bob: Publisher,
}

/// Put a "new version" of `source` at `bin`: a fresh copy (new inode, like
/// dpkg's rename) and, next to it, the version it reports (a binary with
/// the `test-hooks` feature reads `<bin>.test-version`).
pub fn install(source: &Path, bin: &Path, version: &str) {
    let tmp = bin.with_extension("new");
    std::fs::copy(source, &tmp).expect("copy the binary");
    std::fs::rename(&tmp, bin).expect("replace the binary");
    let mut v = bin.as_os_str().to_owned();
    v.push(".test-version");
    std::fs::write(PathBuf::from(v), version).expect("version file");
}

/// A viewer of the output once it shows the slate.
pub fn viewer_on_slate(nginx: &Nginx) -> Viewer {
    let viewer = Viewer::start(&nginx.rtmp_url("motherstream", "live"));
    assert!(
        viewer
            .wait_size(BOB, viewer.started, Duration::from_secs(15))
            .is_some(),
        "the slate should be on the output"
    );
    viewer
}

/// Alice publishing with a keyframe every `gop` frames.
pub fn alice(nginx: &Nginx, gop: u32) -> Publisher {
    Publisher::start_full(&nginx.rtmp_url("live", "alice"), ALICE, FPS, gop, 48_000, 2)
}

pub fn bob(nginx: &Nginx) -> Publisher {
    Publisher::start_full(&nginx.rtmp_url("live", "bob"), BOB, FPS, GOP, 44_100, 1)
}

/// Longest gap between frames of one kind (video or audio) arriving within
/// [from, to]; None with fewer than two of them.
pub fn longest_gap(frames: &[Frame], video: bool, from: Instant, to: Instant) -> Option<Duration> {
    let t: Vec<Instant> = frames
        .iter()
        .filter(|f| f.size.is_some() == video && f.at >= from && f.at <= to)
        .map(|f| f.at)
        .collect();
    t.windows(2).map(|w| w[1] - w[0]).max()
}
