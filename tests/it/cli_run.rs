//! `cantilever run`, `halt` and `rearm` as a desk runs them: the built binary against a private
//! devnet, observed through `/health`, `/metrics`, `cantilever ledger` and its exit status.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cantilever::{
    config::{Config, DEFAULT_CONFIG_TOML},
    contracts::TestToken,
    devnet::ChainManifest,
    devnet::deploy::confirm,
};

use crate::engine::{Bot, devnet_bot, e6};

const BIN: &str = env!("CARGO_BIN_EXE_cantilever");
const KEY_ENV: &str = "CANTILEVER_TEST_KEY";
/// `--shutdown-deadline-secs` of every run here.
const DEADLINE_SECS: u64 = 10;

/// A configuration for the devnet's chain 138 only: the same chain as `devnet_config` (tokens,
/// venues, lenders, executor), strategies and risk of the embedded default, live, with the
/// executor key read from `$CANTILEVER_TEST_KEY` and metrics on `metrics_port`.
fn render_config(c: &ChainManifest, dir: &Path, metrics_port: u16) -> String {
    let mut t = format!(
        r#"[engine]
ledger_path = "{ledger}"
halt_file = "{halt}"
dry_run = false

[telemetry]
metrics_addr = "127.0.0.1:{metrics_port}"
log_format = "text"
log_level = "info"

[[chains]]
name = "chain138"
chain_id = {id}
ws_url = "{ws}"
http_url = "{http}"
block_time_ms = 2000
executor = "{executor}"

[chains.submission]
mode = "public-rpc"

[chains.signer]
key_env = "{KEY_ENV}"

[chains.fees]
max_fee_gwei = 50.0
priority_fee_gwei = 1.0
tip_share_bps = 0
"#,
        ledger = dir.join("ledger.db").display(),
        halt = dir.join("halt").display(),
        id = c.chain_id,
        ws = c.ws_url,
        http = c.http_url,
        executor = c.executor,
    );
    for (symbol, tok) in &c.tokens {
        let usd = match symbol.as_str() {
            "XAU" => 2_650.0,
            "WETH" => 3_000.0,
            "cEURT" => 1.08,
            _ => 1.0,
        };
        t += &format!(
            "\n[[chains.tokens]]\nsymbol = \"{symbol}\"\naddress = \"{}\"\ndecimals = {}\nusd_price = {usd:?}\n",
            tok.address, tok.decimals
        );
    }
    let mut venue = |name: &str, kind: &str, address, base: &str, quote: &str| {
        t += &format!(
            "\n[[chains.venues]]\nname = \"{name}\"\nkind = \"{kind}\"\naddress = \"{address}\"\nbase = \"{base}\"\nquote = \"{quote}\"\n"
        );
    };
    for p in &c.pmm_pools {
        venue(&p.name, "dodo-dsp", p.address, &p.base, &p.quote);
    }
    for p in &c.v2_pairs {
        venue(&format!("v2-{}", p.name), "uniswap-v2", p.address, &p.token0, &p.token1);
    }
    for v in &c.vaults {
        let name = format!("vault-{}/{}", v.compliant, v.official);
        venue(&name, "vault", v.address, &v.official, &v.compliant);
    }
    for l in &c.lenders {
        let tokens: Vec<String> = l.tokens.iter().map(|s| format!("\"{s}\"")).collect();
        t += &format!(
            "\n[[chains.flash_lenders]]\nkind = \"erc3156\"\naddress = \"{}\"\ntokens = [{}]\n",
            l.address,
            tokens.join(", ")
        );
    }
    // Strategies and risk exactly as the embedded default has them.
    let from = DEFAULT_CONFIG_TOML.find("[strategies.depeg]").expect("strategies in the default");
    t += "\n";
    t += &DEFAULT_CONFIG_TOML[from..];
    t
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` on the metrics port: status and body, `None` while nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.split_whitespace().nth(1)?.parse().ok()?, body.to_owned()))
}

/// The value of the series `series` (`name` or `name{labels}`) in a `/metrics` body.
fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn metrics(port: u16) -> String {
    get(port, "/metrics").map(|(_, b)| b).unwrap_or_default()
}

/// Polls `f` every 200 ms until it holds or `secs` pass.
async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f()
}

/// `cantilever ledger --db DB --json`, parsed.
fn ledger_json(db: &Path) -> serde_json::Value {
    let out = Command::new(BIN).args(["ledger", "--json", "--db"]).arg(db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `cantilever ledger --db DB`: the desk's text.
fn ledger_text(db: &Path) -> String {
    let out = Command::new(BIN).args(["ledger", "--db"]).arg(db).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The runs of the bot itself (not those of the `halt`/`rearm` commands), oldest first.
fn bot_runs(db: &Path) -> Vec<serde_json::Value> {
    let summary = ledger_json(db);
    summary["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["version"].as_str().unwrap().contains("command"))
        .cloned()
        .collect()
}

/// A `cantilever` process whose stdout and stderr are collected.
struct Proc {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let pipes: [Box<dyn Read + Send>; 2] =
            [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
        for pipe in pipes {
            let out = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        Self { child, output }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    }

    /// Waits for the exit (polling); the status and how long it took.
    async fn wait_exit(&mut self, secs: u64) -> (Option<std::process::ExitStatus>, Duration) {
        let start = Instant::now();
        let mut status = None;
        eventually(secs, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        })
        .await;
        (status, start.elapsed())
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn run_bot(config: &Path, key: &str) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--shutdown-deadline-secs", &DEADLINE_SECS.to_string(), "--config"])
        .arg(config)
        .env(KEY_ENV, key)
        .env_remove("RUST_LOG");
    Proc::spawn(cmd)
}

fn command(args: &[&str], config: &Path) -> (bool, String) {
    let out = Command::new(BIN).args(args).arg("--config").arg(config).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// SIGTERM: exit 0 within the shutdown deadline (plus a second for the process to be reaped),
/// and the run is marked ended in the ledger.
async fn stop_gracefully(p: &mut Proc, db: &Path) {
    p.signal("-TERM");
    let (status, took) = p.wait_exit(DEADLINE_SECS + 20).await;
    let status = status.unwrap_or_else(|| panic!("no exit after SIGTERM:\n{}", p.output()));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM:\n{}", p.output());
    assert!(
        took <= Duration::from_secs(DEADLINE_SECS + 1),
        "shutdown took {took:?}, deadline {DEADLINE_SECS} s"
    );
    eprintln!("cli_run: SIGTERM to exit 0 in {took:?} (deadline {DEADLINE_SECS} s)");
    let runs = bot_runs(db);
    assert!(runs.last().unwrap()["ended_at_ms"].is_u64(), "run not marked ended: {runs:#?}");
}

fn assert_no_key(output: &str, key: &str) {
    let hex = key.trim_start_matches("0x");
    for w in hex.as_bytes().windows(16) {
        let piece = std::str::from_utf8(w).unwrap();
        assert!(!output.contains(piece), "the output contains part of the key");
    }
}

/// The bot as a desk runs it on a private devnet: after `halt`, a live run submits nothing;
/// `rearm` + SIGUSR1 make it ready (200) with its counters on /metrics, and it trades a depeg
/// into the ledger; SIGTERM stops it within its deadline with the run ended; the key is never
/// printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_run_rearm_trade_and_stop() {
    let bot: Bot = devnet_bot("0.05").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config: PathBuf = dir.path().join("live.toml");
    std::fs::write(&config, render_config(&bot.chain, dir.path(), port)).unwrap();
    let db = dir.path().join("ledger.db");
    let key = format!("0x{}", alloy::hex::encode(bot.keys[2].to_bytes()));

    // The rendered file is the devnet configuration of chain 138, plus the signer reference.
    let mut loaded = Config::load_with_env(&config, &|_| None).expect("rendered config loads");
    assert!(loaded.chains[0].signer.is_some());
    loaded.chains[0].signer = None;
    let expected = bot.cfg.chain("chain138").unwrap();
    assert_eq!(&loaded.chains[0], expected);
    assert_eq!(loaded.strategies, bot.cfg.strategies);
    assert_eq!(loaded.risk, bot.cfg.risk);

    let sent = "cantilever_submissions_total{chain=\"chain138\",kind=\"raw\"}";
    let head = "cantilever_engine_head{chain=\"chain138\"}";

    // 1. `halt`, then `run`: connected, at head and fresh but halted (503 for that reason
    // alone); a dump that opens a depeg is processed and nothing is submitted.
    // (Halted first: the engine's warm-up simulates with nonce 0, so a restart after the key
    // has traded warms less state; see the report.)
    let (ok, halt_out) = command(&["halt", "--reason", "cli test: desk halt"], &config);
    assert!(ok && halt_out.contains("halted"), "{halt_out}");
    assert!(dir.path().join("halt").exists());
    let mut p = run_bot(&config, &key);
    let only_halted = eventually(180, || {
        matches!(get(port, "/health"), Some((503, b))
            if b.contains("\"reasons\":[\"halted: the kill switch is engaged\"]"))
    })
    .await;
    assert!(only_halted, "{:?}\n{}", get(port, "/health"), p.output());
    assert_eq!(metric(&metrics(port), "cantilever_halted"), Some(1.0));
    let dumped = bot.dump(bot.pool("cUSDT/USDT"), true, e6(200_000)).await;
    let processed = eventually(60, || metric(&metrics(port), head) >= Some(dumped as f64)).await;
    assert!(processed, "the engine did not process block {dumped}:\n{}", p.output());
    assert_eq!(metric(&metrics(port), sent), Some(0.0), "a halted bot submitted");
    let runs = bot_runs(&db);
    assert_eq!(runs[0]["total"]["submissions"].as_u64(), Some(0), "{runs:#?}");

    // 2. `rearm` + SIGUSR1: the running bot re-arms and /health answers 200 ready; /metrics
    // has the engine counters.
    let (ok, rearm_out) = command(&["rearm"], &config);
    assert!(ok && rearm_out.contains("re-armed"), "{rearm_out}");
    p.signal("-USR1");
    let ready = eventually(
        30,
        || matches!(get(port, "/health"), Some((200, b)) if b.contains("\"ready\":true")),
    )
    .await;
    assert!(
        ready,
        "/health not 200 ready after re-arm: {:?}\n{}",
        get(port, "/health"),
        p.output()
    );
    let m = metrics(port);
    for series in [
        "cantilever_candidates_total",
        "cantilever_refusals_total{reason=\"all\"}",
        "cantilever_approvals_total{chain=\"chain138\"}",
        sent,
        "cantilever_stabilizer_trades_total{chain=\"chain138\"}",
        "cantilever_heads_total{chain=\"chain138\"}",
        head,
        "cantilever_ledger_queue_depth",
    ] {
        assert!(metric(&m, series).is_some(), "/metrics lacks {series}:\n{m}");
    }
    assert_eq!(metric(&m, "cantilever_ready"), Some(1.0));
    assert_eq!(metric(&m, "cantilever_halted"), Some(0.0));

    // 3. The standing depeg is traded at the next block that touches the pool (one transaction,
    // so the bot's route does not race a second one): the executor's cUSDT grows on chain (the
    // route's profit stays there), and the ledger has the approval and the submission.
    let cusdt_address = bot.chain.tokens["cUSDT"].address;
    let cusdt = TestToken::new(cusdt_address, &bot.node);
    let executor = bot.chain.executor;
    let before = cusdt.balanceOf(executor).call().await.unwrap();
    let pending = TestToken::new(cusdt_address, &bot.deployer)
        .mint(bot.pool("cUSDT/USDT"), e6(10_000))
        .send()
        .await
        .unwrap();
    let dumped = confirm(&bot.deployer, pending, "mint").await.unwrap().block_number.unwrap();
    let mut traded = false;
    for _ in 0..60 {
        let runs = bot_runs(&db);
        let recorded = runs[0]["total"]["submissions"].as_u64() >= Some(1);
        if recorded && cusdt.balanceOf(executor).call().await.unwrap() > before {
            traded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        traded,
        "no profitable trade after the dump in block {dumped}:\n{}\n{}",
        p.output(),
        ledger_text(&db)
    );
    // /metrics follows within a sync period (250 ms).
    let counted = eventually(10, || metric(&metrics(port), sent) >= Some(1.0)).await;
    let m = metrics(port);
    assert!(counted, "{m}");
    assert!(metric(&m, "cantilever_candidates_total") >= Some(1.0), "{m}");
    assert!(metric(&m, "cantilever_approvals_total{chain=\"chain138\"}") >= Some(1.0), "{m}");
    let text = ledger_text(&db);
    assert!(text.contains("depeg"), "the ledger names the strategy:\n{text}");
    assert!(text.contains("last halt: re-armed"), "{text}");

    // 4. SIGTERM: exit 0 within the deadline, the run ended in the ledger, the endpoint gone.
    stop_gracefully(&mut p, &db).await;
    assert!(p.output().contains("shutting down"), "{}", p.output());
    assert!(get(port, "/health").is_none(), "the metrics server outlived the process");
    let summary = ledger_json(&db);
    assert_eq!(summary["last_halt"]["engaged"], serde_json::json!(false), "{summary:#}");

    // The key never reached stdout or stderr.
    for out in [p.output(), halt_out, rearm_out] {
        assert_no_key(&out, &key);
    }
}

/// A configuration error is printed as `check-config` prints it and `run` exits non-zero; an
/// unset key variable is named without any value.
#[test]
fn run_refuses_a_bad_config_and_a_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, DEFAULT_CONFIG_TOML.replacen("[engine]\n", "[engine]\nturbo = 1\n", 1))
        .unwrap();
    let out = Command::new(BIN).args(["run", "--config"]).arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("engine.turbo"), "{stderr}");
    assert!(stderr.contains("bad.toml: 1 error; refusing this configuration"), "{stderr}");

    // A live chain whose key variable is unset: named, refused before anything starts.
    let text = DEFAULT_CONFIG_TOML
        .replacen("dry_run = true ", "dry_run = false", 1)
        .replacen(
            "block_time_ms = 2000 ",
            "executor = \"0x00000000000000000000000000000000000000e1\"\nblock_time_ms = 2000 ",
            1,
        )
        .replacen(
            "block_time_ms = 5000 ",
            "executor = \"0x00000000000000000000000000000000000000e2\"\nblock_time_ms = 5000 ",
            1,
        )
        .replace(
            "[chains.submission]\n",
            "[chains.signer]\nkey_env = \"CANTILEVER_UNSET_TEST_KEY\"\n\n[chains.submission]\n",
        );
    let live = dir.path().join("live.toml");
    std::fs::write(&live, text).unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&live)
        .env_remove("CANTILEVER_UNSET_TEST_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("executor key from key in $CANTILEVER_UNSET_TEST_KEY"), "{stderr}");
}

/// Every subcommand explains itself, and no environment value reaches `--help`.
#[test]
fn help_explains_run_halt_and_rearm() {
    for (sub, needle) in [
        ("run", "SIGUSR1"),
        ("run", "--shutdown-deadline-secs"),
        ("halt", "kill -USR1"),
        ("rearm", "kill -USR1"),
    ] {
        let out = Command::new(BIN)
            .args([sub, "--help"])
            .env(KEY_ENV, "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains(needle), "{sub} --help:\n{text}");
        assert!(!text.contains("4c0883a6"), "an environment value in --help");
    }
}
