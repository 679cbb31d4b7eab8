//! A supervised anvil child process on loopback.
//!
//! alloy's `Anvil` spawner kills its child on drop, but a process-wide shared node (one anvil per test
//! binary, or a devnet that is `kill -9`ed) is never dropped. [`AnvilNode`] runs anvil under a small
//! `sh` watchdog that holds a pipe from this process: when this process exits for any reason the pipe
//! closes and the watchdog ends anvil. Dropping the node ends it at once.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use alloy::signers::local::PrivateKeySigner;

use super::DevnetError;

/// Environment variable that names the anvil binary to use, overriding the project's pinned copy.
pub const ANVIL_ENV: &str = "CANTILEVER_ANVIL";

/// How long anvil may take to print its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for one anvil node.
#[derive(Clone, Debug)]
pub struct AnvilOptions {
    /// Chain id the node reports.
    pub chain_id: u64,
    /// Loopback port; 0 lets the OS choose.
    pub port: u16,
    /// Seconds between blocks; `None` mines one block per transaction (automine).
    pub block_time_secs: Option<f64>,
    /// Number of funded dev accounts.
    pub accounts: u32,
    /// Native balance of each dev account, in whole ether.
    pub balance_ether: u64,
    /// Fork this node from another node's RPC at a block (`--fork-url`, `--fork-block-number`).
    pub fork: Option<(String, u64)>,
}

/// The hardfork every devnet node runs; the simulator uses the same (`revm` `SpecId::PRAGUE`),
/// so gas used in revm equals the node's receipt.
pub const DEVNET_HARDFORK: &str = "prague";

impl Default for AnvilOptions {
    fn default() -> Self {
        Self {
            chain_id: 31337,
            port: 0,
            block_time_secs: None,
            accounts: 10,
            balance_ether: 1_000_000,
            fork: None,
        }
    }
}

/// A running anvil node bound to 127.0.0.1. Ended on drop, and when this process exits.
#[derive(Debug)]
pub struct AnvilNode {
    child: Child,
    /// Held open; the watchdog ends anvil when it closes.
    lifeline: Option<ChildStdin>,
    port: u16,
    chain_id: u64,
    keys: Vec<PrivateKeySigner>,
}

impl AnvilNode {
    /// Starts anvil with `opts` and waits until it listens.
    ///
    /// # Errors
    /// [`DevnetError::AnvilNotFound`] when no anvil binary can be found (never a silent skip), or
    /// [`DevnetError::AnvilStart`] when it exits or does not listen within 30 s.
    pub fn spawn(opts: &AnvilOptions) -> Result<Self, DevnetError> {
        let bin = find_anvil()?;
        let mut args: Vec<String> = vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            opts.port.to_string(),
            "--chain-id".into(),
            opts.chain_id.to_string(),
            "--accounts".into(),
            opts.accounts.to_string(),
            "--balance".into(),
            opts.balance_ether.to_string(),
            "--hardfork".into(),
            DEVNET_HARDFORK.into(),
        ];
        if let Some((url, block)) = &opts.fork {
            args.extend([
                "--fork-url".into(),
                url.clone(),
                "--fork-block-number".into(),
                block.to_string(),
            ]);
        }
        if let Some(bt) = opts.block_time_secs {
            args.push("--block-time".into());
            args.push(bt.to_string());
        }
        // `exec 3<&0` keeps our pipe; anvil gets /dev/null as stdin; `cat` returns when the pipe
        // closes (this process ended or dropped the node), then the watchdog ends anvil.
        let script = r#"bin="$1"; shift; exec 3<&0; "$bin" "$@" </dev/null & pid=$!; trap 'kill $pid 2>/dev/null; exit 0' TERM INT; cat <&3 >/dev/null; kill $pid 2>/dev/null; wait $pid 2>/dev/null"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("anvil-watchdog")
            .arg(&bin)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| DevnetError::AnvilStart(format!("spawning {}: {e}", bin.display())))?;
        let lifeline = child
            .stdin
            .take()
            .ok_or_else(|| DevnetError::AnvilStart("no stdin pipe to the watchdog".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| DevnetError::AnvilStart("no stdout pipe from anvil".into()))?;

        // Read the banner on a helper thread so a silent anvil cannot hang us past the timeout.
        let (tx, rx) = mpsc::channel::<Result<(u16, Vec<PrivateKeySigner>), String>>();
        std::thread::Builder::new()
            .name("anvil-banner".into())
            .spawn(move || {
                let _ = tx.send(read_banner(BufReader::new(stdout)));
            })
            .map_err(|e| DevnetError::AnvilStart(format!("banner thread: {e}")))?;
        let banner = rx.recv_timeout(START_TIMEOUT);
        let (port, keys) = match banner {
            Ok(Ok(v)) => v,
            Ok(Err(msg)) => {
                let _ = child.kill();
                return Err(DevnetError::AnvilStart(msg));
            }
            Err(_) => {
                let _ = child.kill();
                return Err(DevnetError::AnvilStart(format!(
                    "anvil did not report a listening address within {}s",
                    START_TIMEOUT.as_secs()
                )));
            }
        };
        Ok(Self { child, lifeline: Some(lifeline), port, chain_id: opts.chain_id, keys })
    }

    /// HTTP JSON-RPC endpoint.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// WebSocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Loopback port.
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// Chain id.
    pub const fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The funded dev accounts' signers (anvil's well-known test mnemonic; never real funds).
    pub fn keys(&self) -> &[PrivateKeySigner] {
        &self.keys
    }
}

impl Drop for AnvilNode {
    fn drop(&mut self) {
        // Closing the lifeline makes the watchdog end anvil and wait for it; give it a moment, then
        // force the shell down (anvil still sees its pipe close and is ended by the watchdog's kill).
        drop(self.lifeline.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses anvil's start-up banner: the private keys, then "Listening on 127.0.0.1:PORT".
fn read_banner(
    reader: impl BufRead + Send + 'static,
) -> Result<(u16, Vec<PrivateKeySigner>), String> {
    let mut keys = Vec::new();
    let mut in_keys = false;
    let mut lines = reader.lines();
    while let Some(line) = lines.next() {
        let line = line.map_err(|e| format!("reading anvil output: {e}"))?;
        let trimmed = line.trim();
        if trimmed.starts_with("Private Keys") {
            in_keys = true;
            continue;
        }
        if in_keys {
            if let Some((_, key)) = trimmed.split_once(") ") {
                let signer: PrivateKeySigner = key
                    .trim()
                    .parse()
                    .map_err(|_| "anvil printed an unreadable dev key".to_string())?;
                keys.push(signer);
                continue;
            }
            if !trimmed.is_empty() && !trimmed.starts_with('=') && !keys.is_empty() {
                in_keys = false;
            }
        }
        if let Some(addr) = trimmed.strip_prefix("Listening on ") {
            let port = addr
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| format!("unexpected listening line from anvil: {trimmed}"))?;
            // Keep draining stdout so anvil never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((port, keys));
        }
    }
    Err("anvil exited before listening (is the port taken?)".into())
}

/// Finds the anvil binary: `$CANTILEVER_ANVIL` (when set, only there), then the copy pinned in `tools/node_modules`
/// (installed by `npm install --prefix tools`), then `anvil` on `PATH`.
///
/// # Errors
/// [`DevnetError::AnvilNotFound`] naming every place that was looked at.
pub fn find_anvil() -> Result<PathBuf, DevnetError> {
    // An explicit choice is final: a wrong $CANTILEVER_ANVIL is an error, not a fallback.
    if let Some(p) = std::env::var_os(ANVIL_ENV) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(DevnetError::AnvilNotFound(format!("${ANVIL_ENV}={}", p.display())));
    }
    let mut tried = Vec::new();
    for root in search_roots() {
        let scope = root.join("tools/node_modules/@foundry-rs");
        if let Ok(entries) = std::fs::read_dir(&scope) {
            let mut candidates: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin/anvil"))
                .filter(|p| p.is_file())
                .collect();
            candidates.sort();
            if let Some(p) = candidates.into_iter().next() {
                return Ok(p);
            }
        }
        tried.push(scope.display().to_string());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("anvil");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    tried.push("anvil on PATH".into());
    Err(DevnetError::AnvilNotFound(tried.join(", ")))
}

/// The project root at build time and the current directory and its parents.
fn search_roots() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    roots
}
