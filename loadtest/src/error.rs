//! What can stop a load test. Failures of single calls under load are not errors here: they
//! are measurements, counted by kind in the report (see [`crate::client::CallError`]).

use std::path::PathBuf;

/// Why a load test could not run, or its results could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
    /// A setup or teardown call (login check, bot creation) was refused.
    #[error("{what} failed: {reason}")]
    Setup { what: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the report {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot draw {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
}

impl Error {
    pub(crate) fn setup(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Setup {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
