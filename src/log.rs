//! The `log` sink: journald-style `<N>` priority prefixes on stderr when run
//! by systemd (`$JOURNAL_STREAM`), syslog through the `syslog` crate when
//! asked, plain timestamped lines in a terminal. The level can change at
//! run time (SIGHUP reload).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Journald,
    Syslog,
    Stderr,
}

impl Target {
    /// Resolve the configured target; `auto` means journald when stderr is
    /// connected to the journal, else plain stderr.
    pub fn resolve(name: &str, journal_stream: bool) -> Target {
        match name {
            "journald" => Target::Journald,
            "syslog" => Target::Syslog,
            "stderr" => Target::Stderr,
            _ if journal_stream => Target::Journald,
            _ => Target::Stderr,
        }
    }
}

pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s.to_ascii_lowercase().as_str() {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" | "warning" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return None,
    })
}

/// Shift a level by `-v` (positive) / `-q` (negative) steps.
pub fn adjust(level: LevelFilter, delta: i32) -> LevelFilter {
    const ORDER: [LevelFilter; 6] = [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ];
    let i = ORDER.iter().position(|l| *l == level).unwrap_or(3) as i32;
    ORDER[(i + delta).clamp(0, 5) as usize]
}

/// sd-daemon(3) priority for a log level.
pub(crate) fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// One formatted line for the journald target (no timestamp: journald adds it).
pub(crate) fn journald_line(level: Level, msg: &str) -> String {
    // Continuation lines get the prefix too so each keeps its priority.
    let p = priority(level);
    msg.lines()
        .map(|l| format!("<{p}>{l}\n"))
        .collect::<String>()
}

/// Text a peer sent (an address, a path, a header), made safe for one log
/// line: control characters (newlines included), backslashes and the
/// Unicode bidi/format controls that reorder what a reader sees are written
/// as escapes, so nobody can end a line and forge the next one. Long text
/// is cut at `MAX_PEER_TEXT` characters.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| !(c.is_control() || c == '\\' || is_format_control(c));
    if text.chars().count() <= MAX_PEER_TEXT && text.chars().all(plain) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(4 * MAX_PEER_TEXT) + 8);
    for (i, c) in text.chars().enumerate() {
        if i == MAX_PEER_TEXT {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if plain(c) => out.push(c),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Longest peer text written to the log (a hostile header can be KiBs).
pub(crate) const MAX_PEER_TEXT: usize = 200;

/// Bidi embedding/override/isolate marks, zero-width and other invisible
/// format characters.
fn is_format_control(c: char) -> bool {
    matches!(c,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}'
        | '\u{feff}' | '\u{061c}')
}

type SyslogLogger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

struct Logger {
    target: Target,
    syslog: Option<Mutex<SyslogLogger>>,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
            && (m.target().starts_with("motherstream")
                // The HTTP server's own warnings: accept errors, the
                // connection cap (its debug chatter stays out).
                || (m.target().starts_with("tiny_http") && m.level() <= log::Level::Warn))
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let msg = r.args().to_string();
        match (self.target, &self.syslog) {
            (Target::Syslog, Some(s)) => {
                if let Ok(mut s) = s.lock() {
                    // A failing syslog socket must not take the daemon down.
                    let _ = match r.level() {
                        Level::Error => s.err(&msg),
                        Level::Warn => s.warning(&msg),
                        Level::Info => s.info(&msg),
                        _ => s.debug(&msg),
                    };
                }
            }
            (Target::Journald, _) => {
                let _ = std::io::stderr().write_all(journald_line(r.level(), &msg).as_bytes());
            }
            _ => {
                let line = format!(
                    "{} {:<5} {}\n",
                    timestamp(SystemTime::now()),
                    r.level(),
                    msg
                );
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Install the logger. Falls back to stderr (with a warning) when syslog
/// cannot be reached.
pub fn init(target: Target, level: LevelFilter) {
    let mut target = target;
    let mut fallback_reason = None;
    let syslog = if target == Target::Syslog {
        let fmt = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "motherstream".into(),
            pid: std::process::id(),
        };
        match syslog::unix(fmt) {
            Ok(l) => Some(Mutex::new(l)),
            Err(e) => {
                fallback_reason = Some(e.to_string());
                target = Target::Stderr;
                None
            }
        }
    } else {
        None
    };
    if log::set_boxed_logger(Box::new(Logger { target, syslog })).is_ok() {
        log::set_max_level(level);
    }
    if let Some(e) = fallback_reason {
        log::warn!("cannot connect to syslog ({e}); logging to stderr");
    }
}

pub(crate) fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// `2026-11-24T06:04:35.123Z` (UTC).
pub(crate) fn timestamp(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t.max(UNIX_EPOCH));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// A budget of warning lines: at most 5 a second, then one line saying how
/// many were dropped. Each kind of flood has its own, so one cannot hide
/// another (wrong logins are not lost among malformed requests).
pub(crate) struct LogBudget {
    window: AtomicU64,
    count: AtomicU64,
    /// What the dropped lines were, for the "not logged" line.
    what: &'static str,
}

impl LogBudget {
    pub(crate) const fn new(what: &'static str) -> LogBudget {
        LogBudget {
            window: AtomicU64::new(0),
            count: AtomicU64::new(0),
            what,
        }
    }

    pub(crate) fn warn(&self, args: std::fmt::Arguments) {
        let sec = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let prev = self.window.swap(sec, Ordering::Relaxed);
        if prev != sec {
            let dropped = self.count.swap(0, Ordering::Relaxed).saturating_sub(5);
            if dropped > 0 {
                log::warn!("{dropped} more {} not logged", self.what);
            }
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < 5 {
            log::warn!("{args}");
        }
    }
}

/// Bad requests are logged, but a flood of them must not flood the journal.
pub(crate) fn warn_limited(args: std::fmt::Arguments) {
    static REFUSED: LogBudget = LogBudget::new("refused requests");
    REFUSED.warn(args);
}

/// Wrong admin tokens (console logins and Bearer tokens), in their own
/// budget.
pub(crate) fn warn_auth_failure(args: std::fmt::Arguments) {
    static AUTH: LogBudget = LogBudget::new("wrong admin tokens");
    AUTH.warn(args);
}

/// Admin token tries refused over the login budget: their own budget too,
/// so a guesser's first wrong tries cannot hide that the limit set in.
pub(crate) fn warn_auth_throttled(args: std::fmt::Arguments) {
    static THROTTLED: LogBudget = LogBudget::new("admin token tries over the budget");
    THROTTLED.warn(args);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_496_698_559);
        assert_eq!(timestamp(t), "2026-11-24T05:04:58.559Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..10], "2000-02-29");
    }

    #[test]
    fn journald_prefixes() {
        assert_eq!(journald_line(Level::Warn, "x"), "<4>x\n");
        assert_eq!(journald_line(Level::Error, "a\nb"), "<3>a\n<3>b\n");
        assert_eq!(journald_line(Level::Info, "i"), "<6>i\n");
        assert_eq!(journald_line(Level::Debug, "d"), "<7>d\n");
    }

    #[test]
    fn peer_text_cannot_break_a_line() {
        assert!(matches!(escape("127.0.0.1"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(escape("1.2.3.4\n<6>fake line"), "1.2.3.4\\n<6>fake line");
        assert_eq!(escape("a\r\tb\x1b[31m\x7f"), "a\\r\\tb\\u{1b}[31m\\u{7f}");
        assert_eq!(
            escape("\\n"),
            "\\\\n",
            "a literal backslash-n stays distinguishable"
        );
        assert_eq!(escape("x\u{202e}y\u{2066}z"), "x\\u{202e}y\\u{2066}z");
        assert_eq!(escape("Ünï ok"), "Ünï ok");
        let long = "a".repeat(MAX_PEER_TEXT + 50);
        assert_eq!(escape(&long).chars().count(), MAX_PEER_TEXT + 1);
        assert!(!escape(&"\n".repeat(1000)).contains('\n'));
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("WARN"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("loud"), None);
        assert_eq!(adjust(LevelFilter::Info, 1), LevelFilter::Debug);
        assert_eq!(adjust(LevelFilter::Info, -5), LevelFilter::Off);
        assert_eq!(adjust(LevelFilter::Trace, 3), LevelFilter::Trace);
        assert_eq!(Target::resolve("auto", true), Target::Journald);
        assert_eq!(Target::resolve("auto", false), Target::Stderr);
    }
}
