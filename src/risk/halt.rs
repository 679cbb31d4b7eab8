//! The manual halt and kill switch, persisted in a file so it survives a restart.
//!
//! While the halt file exists the engine signs nothing. It is written atomically (a temporary file
//! in the same directory, fsync, rename over the target, fsync of the directory), so a crash leaves
//! either no halt or a complete one. A halt file that exists but cannot be read still halts: the
//! safe reading of a damaged kill switch is "engaged".

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors of the halt file. The in-memory state is always updated first, so a failed write still
/// halts this process; only persistence across a restart is at risk.
#[derive(Debug, thiserror::Error)]
pub enum HaltError {
    /// Writing, syncing or renaming the halt file failed.
    #[error("halt file {path}: {op} failed: {source}")]
    Io {
        /// The halt file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Why and when the halt was engaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltInfo {
    /// The operator's or kill switch's reason.
    pub reason: String,
    /// When it was engaged, unix seconds (from the caller's clock).
    pub engaged_at_unix: u64,
}

/// The halt: a file path and the state read from or written to it.
#[derive(Debug, Clone)]
pub struct Halt {
    path: PathBuf,
    state: Option<HaltInfo>,
}

impl Halt {
    /// Reads the halt state at `path`: halted when the file exists. A file that exists but is
    /// unreadable or damaged counts as halted, with a reason saying so.
    pub fn load(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let state = match fs::read(&path) {
            Ok(bytes) => {
                Some(serde_json::from_slice::<HaltInfo>(&bytes).unwrap_or_else(|e| HaltInfo {
                    reason: format!("halt file present but unreadable ({e}); re-arm to clear"),
                    engaged_at_unix: 0,
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => Some(HaltInfo {
                reason: format!("halt file present but unreadable ({e}); re-arm to clear"),
                engaged_at_unix: 0,
            }),
        };
        Self { path, state }
    }

    /// A halt that is never persisted (tests, benches, backtests). `path` is only reported.
    pub fn in_memory() -> Self {
        Self { path: PathBuf::from("<in-memory>"), state: None }
    }

    /// The halt file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether trading is halted.
    pub const fn is_halted(&self) -> bool {
        self.state.is_some()
    }

    /// Why and since when, when halted.
    pub const fn info(&self) -> Option<&HaltInfo> {
        self.state.as_ref()
    }

    /// Engages the halt with `reason` at `now_unix` and persists it. An already engaged halt keeps
    /// its first reason and time.
    ///
    /// # Errors
    /// [`HaltError::Io`] when the file cannot be written; the process is halted regardless.
    pub fn engage(&mut self, reason: &str, now_unix: u64) -> Result<(), HaltError> {
        if self.state.is_some() {
            return Ok(());
        }
        let info = HaltInfo { reason: reason.to_owned(), engaged_at_unix: now_unix };
        let bytes = serde_json::to_vec_pretty(&info).unwrap_or_default();
        self.state = Some(info);
        if self.is_in_memory() {
            return Ok(());
        }
        write_atomic(&self.path, &bytes)
    }

    /// Re-arms: removes the halt file (absent is fine) and clears the state.
    ///
    /// # Errors
    /// [`HaltError::Io`] when the file exists and cannot be removed; the halt then stays engaged.
    pub fn rearm(&mut self) -> Result<(), HaltError> {
        if !self.is_in_memory() {
            match fs::remove_file(&self.path) {
                Ok(()) => sync_parent(&self.path)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(HaltError::Io { path: self.path.clone(), op: "remove", source });
                }
            }
        }
        self.state = None;
        Ok(())
    }

    fn is_in_memory(&self) -> bool {
        self.path.as_os_str() == "<in-memory>"
    }
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> HaltError + 'a {
    move |source| HaltError::Io { path: path.to_path_buf(), op, source }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsyncs it, renames it
/// over `path` and fsyncs the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HaltError> {
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut f = fs::File::create(&tmp).map_err(io_err(&tmp, "create"))?;
    f.write_all(bytes).map_err(io_err(&tmp, "write"))?;
    f.sync_all().map_err(io_err(&tmp, "fsync"))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path, "rename"))?;
    sync_parent(path)
}

/// Fsyncs the directory holding `path`, so a rename or removal survives a crash.
fn sync_parent(path: &Path) -> Result<(), HaltError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let d = fs::File::open(dir).map_err(io_err(dir, "open directory"))?;
    d.sync_all().map_err(io_err(dir, "fsync directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halt_survives_restart_until_rearmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cantilever.halt");
        let mut h = Halt::load(&path);
        assert!(!h.is_halted());
        h.engage("3 consecutive reverts", 1_700_000_000).unwrap();
        assert!(h.is_halted());
        drop(h);

        let mut h = Halt::load(&path);
        assert!(h.is_halted(), "the halt must survive a restart");
        let info = h.info().unwrap();
        assert_eq!(info.reason, "3 consecutive reverts");
        assert_eq!(info.engaged_at_unix, 1_700_000_000);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        h.rearm().unwrap();
        assert!(!h.is_halted());
        assert!(!path.exists());
        assert!(!Halt::load(&path).is_halted());
        // Re-arming twice is harmless.
        h.rearm().unwrap();
    }

    #[test]
    fn second_engage_keeps_first_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let mut h = Halt::load(&path);
        h.engage("first", 1).unwrap();
        h.engage("second", 2).unwrap();
        assert_eq!(Halt::load(&path).info().unwrap().reason, "first");
    }

    #[test]
    fn damaged_halt_file_still_halts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        fs::write(&path, b"\xff not json").unwrap();
        let h = Halt::load(&path);
        assert!(h.is_halted());
        assert!(h.info().unwrap().reason.contains("unreadable"), "{:?}", h.info());
    }

    #[test]
    fn unwritable_halt_still_halts_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("h");
        let mut h = Halt::load(&path);
        let err = h.engage("x", 1).unwrap_err();
        assert!(err.to_string().contains("create"), "{err}");
        assert!(h.is_halted());
    }
}
