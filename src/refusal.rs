//! Why the daemon says no, in its own terms. Domain code (queue rules,
//! moderation, the registry, the engine) answers with a [`Refusal`]; only
//! `http/` turns a [`Why`] into a status code (`http::reply`), in one
//! place.

use std::fmt;

/// What kind of no it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Why {
    /// The request itself is wrong (a bad name, a number out of range).
    Invalid,
    /// It names someone or something that is not there.
    NotFound,
    /// It would clash with what exists (a name already taken).
    Conflict,
    /// The caller may not do this (an unknown or blocked stream key).
    Forbidden,
    /// The queue is at its configured length.
    Full,
    /// The daemon cannot do it now (the disk refuses writes, shutting
    /// down): try again later.
    Unavailable,
    /// A fault of the daemon's own (a file it cannot read).
    Internal,
}

/// A refusal and the sentence that explains it to the person who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) why: Why,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(why: Why, message: impl Into<String>) -> Refusal {
        Refusal {
            why,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Refusal {
        Refusal::new(Why::Invalid, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Refusal {
        Refusal::new(Why::NotFound, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Refusal {
        Refusal::new(Why::Unavailable, message)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The engine's answer to one command: the JSON the caller gets, or why
/// not.
pub(crate) type Answer = Result<serde_json::Value, Refusal>;
