//! `cantilever halt` and `cantilever rearm`: the persistent halt file, recorded in the ledger.
//!
//! Both read only the `[engine]` table of the configuration (the halt file and the ledger path),
//! so an operator can halt even when the environment the RPC URLs need is missing or another
//! part of the file is broken. A running bot learns of the change on `SIGUSR1`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{AppError, hash_file};
use crate::config::EngineConfig;
use crate::ledger::{self, Ledger};
use crate::risk::Halt;

/// What a halt or re-arm command changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltChange {
    /// The halt was engaged (halt) or cleared (rearm) now, and recorded in the ledger.
    Changed,
    /// Nothing to do: already halted (halt) or not halted (rearm). Nothing recorded.
    Unchanged,
}

/// The result of [`halt`] or [`rearm`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaltOutcome {
    /// Whether anything changed.
    pub change: HaltChange,
    /// The halt file.
    pub halt_file: PathBuf,
    /// The ledger the change was recorded in.
    pub ledger_path: PathBuf,
    /// The reason now in force (halt), or the reason that was cleared (rearm), if any.
    pub reason: Option<String>,
}

/// Only `[engine]`; every other table is ignored here.
#[derive(Deserialize)]
struct EngineOnly {
    #[serde(default)]
    engine: EngineConfig,
}

/// The `[engine]` table of `path` and the hash of the file's bytes.
fn engine_section(path: &Path) -> Result<(EngineConfig, alloy::primitives::B256), AppError> {
    let (bytes, hash) = hash_file(path)?;
    // The parser's message may quote a line of the file, which could hold a pasted secret:
    // point at check-config (which redacts) instead of echoing it.
    let unreadable = || {
        AppError::Setup(format!(
            "{}: the [engine] table could not be read; `cantilever check-config {}` lists the \
             problems",
            path.display(),
            path.display()
        ))
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| unreadable())?;
    let parsed: EngineOnly = toml::from_str(text).map_err(|_| unreadable())?;
    Ok((parsed.engine, hash))
}

/// Records `halt` in the ledger as a run of its own (version `<pkg> (command)`), then closes it.
fn record(
    engine: &EngineConfig,
    hash: alloy::primitives::B256,
    command: &str,
    halt: ledger::Halt,
) -> Result<(), AppError> {
    let version = format!("{} ({command})", env!("CARGO_PKG_VERSION"));
    let mut l = Ledger::open(&engine.ledger_path, hash, &version)?;
    l.write(&[ledger::Record::Halt(halt)])?;
    l.close()?;
    Ok(())
}

/// Engages the persistent halt of the configuration at `config` with `reason` and records it in
/// the ledger. An engaged halt keeps its first reason (nothing is recorded then).
///
/// # Errors
/// [`AppError::Io`] / [`AppError::Setup`] when the `[engine]` table cannot be read,
/// [`AppError::Halt`] when the halt file cannot be written, [`AppError::Ledger`] when the ledger
/// cannot record it (the halt file is written first, so the halt holds regardless).
pub fn halt(config: &Path, reason: &str) -> Result<HaltOutcome, AppError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AppError::Setup("--reason must not be empty".into()));
    }
    let (engine, hash) = engine_section(config)?;
    let mut h = Halt::load(&engine.halt_file);
    let outcome = |change, reason: Option<String>| HaltOutcome {
        change,
        halt_file: engine.halt_file.clone(),
        ledger_path: engine.ledger_path.clone(),
        reason,
    };
    if let Some(info) = h.info() {
        return Ok(outcome(HaltChange::Unchanged, Some(info.reason.clone())));
    }
    let now_ms = ledger::now_unix_ms();
    h.engage(reason, now_ms / 1000)?;
    record(
        &engine,
        hash,
        "halt command",
        ledger::Halt { engaged: true, reason: reason.to_owned(), at_ms: now_ms },
    )?;
    Ok(outcome(HaltChange::Changed, Some(reason.to_owned())))
}

/// Clears the persistent halt of the configuration at `config` and records it in the ledger.
///
/// # Errors
/// As [`halt`]; [`AppError::Halt`] when the halt file cannot be removed (the halt then stays).
pub fn rearm(config: &Path) -> Result<HaltOutcome, AppError> {
    let (engine, hash) = engine_section(config)?;
    let mut h = Halt::load(&engine.halt_file);
    let cleared = h.info().map(|i| i.reason.clone());
    let outcome = |change| HaltOutcome {
        change,
        halt_file: engine.halt_file.clone(),
        ledger_path: engine.ledger_path.clone(),
        reason: cleared.clone(),
    };
    if cleared.is_none() {
        return Ok(outcome(HaltChange::Unchanged));
    }
    h.rearm()?;
    record(
        &engine,
        hash,
        "rearm command",
        ledger::Halt {
            engaged: false,
            reason: "re-armed by the operator (cantilever rearm)".to_owned(),
            at_ms: ledger::now_unix_ms(),
        },
    )?;
    Ok(outcome(HaltChange::Changed))
}
