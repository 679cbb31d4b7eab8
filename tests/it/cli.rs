//! The `cantilever` binary as a user runs it.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use alloy::providers::Provider;
use cantilever::devnet::DevnetManifest;

use crate::harness::reader;

/// `cantilever devnet --out FILE` brings up both chains and writes every address; SIGTERM stops it.
#[tokio::test]
async fn devnet_command_writes_a_manifest_and_serves_both_chains() {
    let dir = std::env::temp_dir().join(format!("cantilever-devnet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("dev.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .args(["devnet", "--any-port", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("addresses written to") {
                let _ = tx.send(());
            }
        }
    });
    let started = Instant::now();
    let ready = rx.recv_timeout(Duration::from_secs(120));
    assert!(ready.is_ok(), "devnet did not come up within 120 s");
    let manifest: DevnetManifest =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let mut ids = Vec::new();
    for chain in &manifest.chains {
        let p = reader(&chain.http_url);
        ids.push(p.get_chain_id().await.unwrap());
        assert!(!chain.tokens.is_empty() && chain.executor != alloy::primitives::Address::ZERO);
    }
    assert_eq!(ids, vec![138, 651_940]);
    assert!(manifest.chain(138).unwrap().pmm_pools.len() >= 3);
    assert!(manifest.chain(138).unwrap().bridge.is_some());

    // SIGTERM: the devnet stops, and its anvil nodes with it.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "devnet did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    let gone = reader(&manifest.chains[0].http_url).get_chain_id().await;
    assert!(gone.is_err(), "anvil still answers after the devnet exited");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = started;
}

/// Without anvil the devnet (and so every test that needs a chain) fails with the reason; it never
/// pretends to run.
#[test]
fn devnet_without_anvil_fails_loudly() {
    let out = Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .args(["devnet", "--any-port"])
        .env("CANTILEVER_ANVIL", "/nonexistent/anvil")
        .output()
        .unwrap();
    assert!(!out.status.success(), "devnet must fail without anvil");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("anvil not found"), "{stderr}");
    assert!(
        stderr.contains("npm install --prefix tools"),
        "the error says how to install it: {stderr}"
    );
}

/// `check-config` names an unknown key, a wrong type and a pasted private key, exits non-zero, and
/// never prints the key.
#[test]
fn check_config_names_every_error_and_never_prints_the_key() {
    let key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
        .unwrap()
        .replacen("[engine]\n", "[engine]\nturbo_mode = true\n", 1)
        .replacen("block_time_ms = 2000", "block_time_ms = \"fast\"", 1)
        .replacen(
            "[chains.submission]\n",
            &format!("[chains.submission]\nprivate_key = \"0x{key}\"\n"),
            1,
        );
    let dir = std::env::temp_dir().join(format!("cantilever-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check-config must fail:\n{stdout}{stderr}");
    assert!(stderr.contains("engine.turbo_mode"), "unknown key named:\n{stderr}");
    assert!(stderr.contains("chains[0].block_time_ms"), "wrong type named:\n{stderr}");
    assert!(stderr.contains("chains[0].submission.private_key"), "pasted key named:\n{stderr}");
    assert!(stderr.contains("bad.toml"), "file named:\n{stderr}");
    for window in key.as_bytes().windows(8) {
        let piece = std::str::from_utf8(window).unwrap();
        assert!(!stdout.contains(piece) && !stderr.contains(piece), "output leaks part of the key");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shipped configurations pass.
#[test]
fn check_config_accepts_the_shipped_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .arg("check-config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
