//! What an HTTP client gets back, and the one place where a refusal of
//! the daemon's ([`Why`]) becomes a status code.

use serde_json::json;

use crate::refusal::{Answer, Why};

/// A status and a JSON (or page) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(status: u16, v: serde_json::Value) -> Reply {
        Reply {
            status,
            body: v.to_string(),
        }
    }

    pub(crate) fn error(status: u16, msg: impl Into<String>) -> Reply {
        Reply::json(status, json!({ "error": msg.into() }))
    }

    /// The engine's answer as the client sees it: 200 with the JSON, or
    /// the refusal's status with `{"error": message}`.
    pub(crate) fn from_answer(a: Answer) -> Reply {
        match a {
            Ok(v) => Reply::json(200, v),
            Err(r) => Reply::error(status(r.why), r.message),
        }
    }
}

/// The status code of each kind of refusal. nginx-rtmp refuses a publish
/// on any answer outside 2xx, so hooks need nothing more particular.
pub(crate) fn status(why: Why) -> u16 {
    match why {
        Why::Invalid => 400,
        Why::Forbidden => 403,
        Why::NotFound => 404,
        Why::Conflict => 409,
        // The queue being full and the disk refusing writes both pass:
        // "try again later".
        Why::Full | Why::Unavailable => 503,
        Why::Internal => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refusal::Refusal;

    #[test]
    fn answers_become_statuses_and_error_bodies() {
        let ok = Reply::from_answer(Ok(json!({"ok": true})));
        assert_eq!((ok.status, ok.body.as_str()), (200, r#"{"ok":true}"#));
        for (why, code) in [
            (Why::Invalid, 400),
            (Why::Forbidden, 403),
            (Why::NotFound, 404),
            (Why::Conflict, 409),
            (Why::Full, 503),
            (Why::Unavailable, 503),
            (Why::Internal, 500),
        ] {
            let r = Reply::from_answer(Err(Refusal::new(why, "no \"way\"")));
            assert_eq!(r.status, code, "{why:?}");
            let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
            assert_eq!(v["error"], "no \"way\"");
        }
    }
}
