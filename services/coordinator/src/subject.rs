//! What a job reconciles: everyone (a sweep), one user, or one group. A
//! type from the HTTP and gRPC edges to the worker; the job queue stores
//! its text form ([`Subject::key`]), parsed back when a job is claimed.

use std::fmt;

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// The whole directory.
    All,
    /// A user by pk, username or email.
    User(String),
    /// A group by UUID or name.
    Group(String),
}

impl Subject {
    /// The queue's text for a sweep; the job queue's SQL compares with it.
    pub const SWEEP: &'static str = "sweep";

    /// Parses the job-queue form: `sweep`, `user:<x>`, `group:<x>`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.split_once(':') {
            None if s == Self::SWEEP => Ok(Self::All),
            Some(("user", x)) if !x.trim().is_empty() => Ok(Self::User(x.trim().to_owned())),
            Some(("group", x)) if !x.trim().is_empty() => Ok(Self::Group(x.trim().to_owned())),
            _ => Err(Error::InvalidInput(format!("unknown subject `{s}`"))),
        }
    }

    /// The job-queue form.
    pub fn key(&self) -> String {
        self.to_string()
    }

    pub fn is_sweep(&self) -> bool {
        *self == Self::All
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str(Self::SWEEP),
            Self::User(u) => write!(f, "user:{u}"),
            Self::Group(g) => write!(f, "group:{g}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip() {
        for s in ["sweep", "user:alice", "group:abc"] {
            assert_eq!(Subject::parse(s).unwrap().key(), s);
        }
        assert!(Subject::parse("user:").is_err());
        assert!(Subject::parse("nonsense").is_err());
    }
}
