//! Keeping stream keys and secrets out of log text that motherstream does
//! not write itself (ffmpeg's stderr, copied to `ffmpeg.log` and to the
//! journal when a relay fails): known secrets are replaced by a stand-in
//! (a streamer's public name, `<secret>`), and the query string of any URL
//! in the line — where secrets travel (`?ms_secret=…`) — is dropped.
//! Pure: no I/O.

/// What a URL's query string is replaced with.
pub(crate) const HIDDEN_QUERY: &str = "?<redacted>";

/// A set of secrets and what each is shown as.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    /// (secret, stand-in), longest secret first so that a secret containing
    /// another is replaced whole.
    secrets: Vec<(String, String)>,
}

impl Redactor {
    pub(crate) fn new() -> Redactor {
        Redactor::default()
    }

    /// Show `secret` as `stand_in` from now on. Empty secrets are ignored
    /// (they would match everywhere).
    pub(crate) fn hide(mut self, secret: &str, stand_in: &str) -> Redactor {
        if !secret.is_empty() {
            self.secrets
                .push((secret.to_string(), stand_in.to_string()));
            self.secrets
                .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        }
        self
    }

    /// Show a stream key as `stand_in` (scrubbing a key needs its text).
    pub(crate) fn hide_key(self, key: &crate::key::StreamKey, stand_in: &str) -> Redactor {
        self.hide(key.expose(), stand_in)
    }

    /// `line` with every known secret replaced and URL queries dropped.
    pub(crate) fn apply(&self, line: &str) -> String {
        let mut out = hide_url_queries(line);
        for (secret, stand_in) in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), stand_in);
            }
        }
        out
    }
}

/// Drop the query string of every `scheme://…` URL in `line`: from its `?`
/// to the end of the URL (whitespace, a quote or a bracket).
pub(crate) fn hide_url_queries(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        let (before, url) = rest.split_at(i);
        out.push_str(before);
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '<' | '>' | '(' | ')'))
            .unwrap_or(url.len());
        let (url, after) = url.split_at(end);
        match url.find('?') {
            Some(q) => {
                out.push_str(&url[..q]);
                out.push_str(HIDDEN_QUERY);
            }
            None => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_queries_are_dropped_wherever_the_url_is() {
        assert_eq!(
            hide_url_queries(
                "[rtmp @ 0x1] Server error: rtmp://127.0.0.1:1935/motherstream/live?ms_secret=abc: I/O error"
            ),
            "[rtmp @ 0x1] Server error: rtmp://127.0.0.1:1935/motherstream/live?<redacted> I/O error"
        );
        assert_eq!(
            hide_url_queries("Input #0, flv, from 'rtmp://h/live/k?a=1&b=2':"),
            "Input #0, flv, from 'rtmp://h/live/k?<redacted>':"
        );
        assert_eq!(
            hide_url_queries("a http://x/?t=1 and rtmp://y/z?s=2"),
            "a http://x/?<redacted> and rtmp://y/z?<redacted>"
        );
        assert_eq!(hide_url_queries("no url? here"), "no url? here");
        assert_eq!(hide_url_queries("rtmp://h/live/k"), "rtmp://h/live/k");
        assert_eq!(hide_url_queries("://?x"), "://?<redacted>");
        assert_eq!(hide_url_queries(""), "");
        // Multi-byte text around URLs is kept intact.
        assert_eq!(
            hide_url_queries("é rtmp://h/ü?ß=1 ñ"),
            "é rtmp://h/ü?<redacted> ñ"
        );
    }

    #[test]
    fn known_secrets_get_their_stand_ins() {
        let r = Redactor::new()
            .hide("k3yk3yk3y", "DJ Alice")
            .hide("s3cr3t", "<secret>")
            .hide("", "never");
        assert_eq!(
            r.apply("rtmp://h:1/live/k3yk3yk3y: Broken pipe (k3yk3yk3y) s3cr3t"),
            "rtmp://h:1/live/DJ Alice: Broken pipe (DJ Alice) <secret>"
        );
        assert_eq!(r.apply("nothing here"), "nothing here");
        // A secret that contains another is replaced whole.
        let r = Redactor::new().hide("ab", "<1>").hide("abcd", "<2>");
        assert_eq!(r.apply("abcd ab"), "<2> <1>");
    }
}
