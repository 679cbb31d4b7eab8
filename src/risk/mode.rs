//! Run modes: what the engine may do with an approved candidate.

use std::fmt;

use crate::config::EngineConfig;

/// How far the engine goes with an approved candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Sign and send.
    Live,
    /// Decide and record; sign nothing, send nothing.
    DryRun,
    /// Sign and simulate the signed transaction, never send it.
    Shadow,
}

impl Mode {
    /// The mode of an `[engine]` section: `dry_run = false` is live; `dry_run = true` with
    /// `shadow = true` is shadow; otherwise dry-run.
    pub const fn from_engine(engine: &EngineConfig) -> Self {
        match (engine.dry_run, engine.shadow) {
            (false, _) => Self::Live,
            (true, true) => Self::Shadow,
            (true, false) => Self::DryRun,
        }
    }

    /// Whether the engine may sign an approved candidate.
    pub const fn signs(self) -> bool {
        matches!(self, Self::Live | Self::Shadow)
    }

    /// Whether the engine may send a signed transaction or bundle.
    pub const fn sends(self) -> bool {
        matches!(self, Self::Live)
    }

    /// A stable label (`live`, `dry-run`, `shadow`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::DryRun => "dry-run",
            Self::Shadow => "shadow",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_sign_and_send() {
        assert!(Mode::Live.signs() && Mode::Live.sends());
        assert!(Mode::Shadow.signs() && !Mode::Shadow.sends());
        assert!(!Mode::DryRun.signs() && !Mode::DryRun.sends());
    }

    #[test]
    fn mode_from_engine_config() {
        let mut e = EngineConfig::default();
        assert_eq!(Mode::from_engine(&e), Mode::DryRun);
        e.shadow = true;
        assert_eq!(Mode::from_engine(&e), Mode::Shadow);
        e.dry_run = false;
        assert_eq!(Mode::from_engine(&e), Mode::Live);
    }
}
