//! The `cantilever` command line: a thin layer over the library.

use std::{path::PathBuf, process::ExitCode};

use alloy::primitives::{Address, U256};
use cantilever::{
    devnet::{Devnet, DevnetOptions, Scenario, deploy::asset_id},
    quote::{QuoteKind, QuoteRequest},
    venues::Side,
};
use clap::{Parser, Subcommand, ValueEnum};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// cantilever: a low-latency arbitrage and MEV bot that proves every route in revm before it signs.
#[derive(Debug, Parser)]
#[command(name = "cantilever", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// Log output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Trade direction on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum SideArg {
    /// Pay base, receive quote.
    SellBase,
    /// Pay quote, receive base.
    SellQuote,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a local two-chain devnet (Chain 138 and Alltra 651940 on anvil) with a scenario deployed,
    /// print its endpoints and addresses, and run until interrupted (Ctrl-C).
    Devnet {
        /// Scenario TOML; defaults to the embedded `fixtures/scenarios/default.toml`.
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
        /// Write the endpoints and every deployed address as JSON to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Bind each chain to a free port instead of the scenario's ports.
        #[arg(long)]
        any_port: bool,
    },
    /// Quote a trade on one venue two ways — cantilever's native math and the venue's own code
    /// executed in revm on the same block's state — and print both as JSON with whether they agree.
    Quote {
        /// HTTP JSON-RPC endpoint of the node to read from.
        #[arg(long, value_name = "URL")]
        rpc: String,
        /// The venue's address.
        #[arg(long, value_name = "ADDRESS")]
        pool: Address,
        /// The venue's kind.
        #[arg(long, value_enum)]
        kind: QuoteKind,
        /// Direction: sell-base pays base for quote, sell-quote pays quote for base.
        #[arg(long, value_enum)]
        side: SideArg,
        /// Input in raw token units (an integer, no decimals).
        #[arg(long, value_name = "RAW")]
        amount: U256,
        /// The trader whose maintainer fee and settlement lock apply (default: the zero address).
        #[arg(long, value_name = "ADDRESS")]
        trader: Option<Address>,
        /// Block to read the state at (default: the node's latest).
        #[arg(long, value_name = "N")]
        block: Option<u64>,
        /// Synthetic asset name (for --kind synth), e.g. XAU.
        #[arg(long, value_name = "NAME")]
        asset: Option<String>,
    },
    /// Summarise the ledger for the desk: per run and strategy, opportunities, approvals and the
    /// top refusal reasons, submissions, inclusions and inclusion rate, realised PnL; open
    /// positions and the last halt. Read-only, safe while the bot runs.
    Ledger {
        /// The ledger database (`[engine] ledger_path` of the config).
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Test aid for the crash test: write opportunities to FILE forever, printing each id on
    /// stdout only after its commit is acknowledged.
    #[command(hide = true)]
    LedgerCrashWriter {
        /// The ledger database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
    },
    /// Record one chain's live session into a cassette for `bench` and `backtest --cassette`:
    /// heads and full pending transactions with their arrival times, and the state answers for
    /// each head of the watched accounts and slots. Stops after --blocks new heads, after
    /// --seconds, or on Ctrl-C. URLs may be `${ENV_VAR}` templates; they are never printed.
    Record {
        /// WebSocket endpoint of the node.
        #[arg(long, value_name = "URL", env = "CANTILEVER_RECORD_WS", hide_env_values = true)]
        ws: String,
        /// HTTP endpoint of the same node.
        #[arg(long, value_name = "URL", env = "CANTILEVER_RECORD_HTTP", hide_env_values = true)]
        http: String,
        /// The cassette file to write (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Stop after N new heads.
        #[arg(long, value_name = "N", conflicts_with = "seconds")]
        blocks: Option<u64>,
        /// Stop after S seconds.
        #[arg(long, value_name = "S")]
        seconds: Option<u64>,
        /// An account whose balance, nonce and code are recorded whenever a block touches it
        /// (repeatable).
        #[arg(long = "watch", value_name = "ADDRESS")]
        watch: Vec<Address>,
        /// A storage slot recorded whenever a block touches its contract (repeatable).
        #[arg(long = "watch-slot", value_name = "ADDRESS:SLOT", value_parser = cantilever::cassette::record::parse_slot)]
        watch_slot: Vec<(Address, U256)>,
        /// The chain's block time for the cassette's metadata (default: measured).
        #[arg(long, value_name = "MS")]
        block_time_ms: Option<u64>,
    },
    /// Validate a configuration file: print every error with file, key and reason; exit non-zero on
    /// any error. Secrets found in the file are named by key, never printed.
    CheckConfig {
        /// The TOML configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Ledger { db, json } => ledger_summary(&db, json),
        Command::LedgerCrashWriter { db } => ledger_crash_writer(&db),
        Command::CheckConfig { file } => cantilever::config::check_config_command(&file),
        Command::Record { ws, http, out, blocks, seconds, watch, watch_slot, block_time_ms } => {
            run_async(async move {
                use cantilever::{cassette::record, config::EndpointUrl};
                let url = |u: String, which: &str| {
                    EndpointUrl::new(u).map_err(|e| anyhow::anyhow!("--{which}: {e}"))
                };
                let mut opts = record::RecordOptions::new(url(ws, "ws")?, url(http, "http")?, out);
                opts.blocks = blocks;
                opts.duration = seconds.map(std::time::Duration::from_secs);
                opts.watch = watch;
                opts.slots = watch_slot;
                opts.meta.block_time_ms = block_time_ms.unwrap_or(0);
                let recorder = record::Recorder::start(opts).await?;
                println!(
                    "recording chain {} from block {}; Ctrl-C to stop",
                    recorder.chain_id(),
                    recorder.start_block()
                );
                println!("{}", recorder.finish(wait_for_shutdown()).await?);
                Ok(())
            })
        }
        Command::Devnet { scenario, out, any_port } => run_async(devnet(scenario, out, any_port)),
        Command::Quote { rpc, pool, kind, side, amount, trader, block, asset } => {
            let side = match side {
                SideArg::SellBase => Side::SellBase,
                SideArg::SellQuote => Side::SellQuote,
            };
            let req = QuoteRequest {
                rpc,
                pool,
                kind,
                side,
                amount,
                trader: trader.unwrap_or(Address::ZERO),
                block,
                asset: asset.as_deref().map(asset_id),
            };
            run_async(async move {
                let report = cantilever::quote::run(req).await?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
            })
        }
    }
}

fn init_tracing(format: LogFormat) {
    let format = match format {
        LogFormat::Text => cantilever::config::LogFormat::Text,
        LogFormat::Json => cantilever::config::LogFormat::Json,
    };
    if let Err(e) = cantilever::telemetry::init_tracing(format, "info") {
        eprintln!("warning: {e}");
    }
}

fn ledger_summary(db: &std::path::Path, json: bool) -> ExitCode {
    let summary = match cantilever::ledger::LedgerSummary::load(db) {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&summary) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{summary}");
    }
    ExitCode::SUCCESS
}

fn ledger_crash_writer(db: &std::path::Path) -> ExitCode {
    use cantilever::ledger::{Ledger, Opportunity, now_unix_ms};
    let result = (|| -> Result<(), cantilever::ledger::LedgerError> {
        let handle = Ledger::open(db, Default::default(), env!("CARGO_PKG_VERSION"))?.spawn()?;
        println!("run {}", handle.run_id());
        for batch in 0u64.. {
            let ids = batch * 10..batch * 10 + 10;
            for id in ids.clone() {
                handle.record(Opportunity {
                    id,
                    chain_id: 138,
                    block: id,
                    strategy: "crash".to_owned(),
                    route: format!("crash test {id}"),
                    token: Address::ZERO,
                    size: U256::from(id) * U256::from(10u64).pow(U256::from(18u64)),
                    expected_profit: Default::default(),
                    expected_profit_usd: None,
                    detected_at_ms: now_unix_ms(),
                });
            }
            handle.flush()?;
            for id in ids {
                println!("{id}");
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn devnet(
    scenario: Option<PathBuf>,
    out: Option<PathBuf>,
    any_port: bool,
) -> anyhow::Result<()> {
    let scenario = match scenario {
        Some(path) => Scenario::from_file(&path)?,
        None => Scenario::default_scenario()?,
    };
    let devnet = Devnet::start(&scenario, &DevnetOptions { any_port }).await?;
    let json = serde_json::to_string_pretty(devnet.manifest())?;
    if let Some(path) = &out {
        std::fs::write(path, format!("{json}\n"))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    for c in &devnet.manifest().chains {
        println!(
            "chain {} ({}): {} {} | {} pmm pools, {} v2 pairs, executor {}",
            c.name,
            c.chain_id,
            c.http_url,
            c.ws_url,
            c.pmm_pools.len(),
            c.v2_pairs.len(),
            c.executor
        );
    }
    match &out {
        Some(path) => println!("addresses written to {}; Ctrl-C to stop", path.display()),
        None => println!("{json}\nCtrl-C to stop"),
    }
    wait_for_shutdown().await;
    devnet.stop().await;
    Ok(())
}

async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
