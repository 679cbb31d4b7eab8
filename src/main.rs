//! The `cantilever` command line: a thin layer over the library.

use std::{path::PathBuf, process::ExitCode, time::Duration};

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
    /// Log format on stderr [default: text; for `run`, `[telemetry] log_format` of the config].
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// What to do (none: backtest the embedded default depeg episode and print the report).
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Backtest the real engine over history: per block, fork at its parent, replay its
    /// transactions as the pending stream, then the block as the head; judge every transaction
    /// the bot would have sent at its position on the real chain in revm (landed? PnL after gas)
    /// and report per strategy and route, with the peg with and without the bot.
    #[command(long_about = BACKTEST_ABOUT)]
    Backtest {
        /// HTTP endpoint of an archive node (or set CANTILEVER_BACKTEST_RPC); never printed.
        /// Twice (with --from, --to and --record twice, in the same order) for a cross-chain
        /// backtest of the two chains of `[strategies.cross_chain]`.
        #[arg(
            long,
            value_name = "URL",
            env = "CANTILEVER_BACKTEST_RPC",
            hide_env_values = true,
            value_delimiter = ',',
            conflicts_with = "cassette",
            requires_all = ["from", "to"]
        )]
        rpc: Vec<String>,
        /// First block (forked at its parent); one per --rpc.
        #[arg(long, value_name = "N")]
        from: Vec<u64>,
        /// Last block (inclusive); one per --rpc.
        #[arg(long, value_name = "M")]
        to: Vec<u64>,
        /// Replay a cassette written by `backtest --record` instead (no network). Twice (chain
        /// order of `[strategies.cross_chain]`) for a cross-chain backtest.
        #[arg(long, value_name = "FILE")]
        cassette: Vec<PathBuf>,
        /// The TOML configuration (chains, strategies, limits) [default: the embedded default
        /// devnet manifest].
        #[arg(long, value_name = "FILE", conflicts_with = "manifest")]
        config: Option<PathBuf>,
        /// A devnet manifest (`cantilever devnet --out`) instead of --config.
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// The chain's name in the configuration [default: the one with the node's chain id].
        #[arg(long, value_name = "NAME")]
        chain: Option<String>,
        /// The executor's operator simulations run from [default: the manifest's].
        #[arg(long, value_name = "ADDRESS")]
        operator: Option<Address>,
        /// Directory of the on-disk RPC answer cache (a re-run is answered from it, offline).
        #[arg(long, value_name = "DIR", default_value = ".cantilever-cache")]
        cache: PathBuf,
        /// Most requests per second sent to the node.
        #[arg(long, value_name = "N", default_value_t = 50)]
        requests_per_s: u32,
        /// Also write a cassette of the RPC run (replay it with --cassette); one per --rpc.
        #[arg(long, value_name = "FILE", requires = "rpc")]
        record: Vec<PathBuf>,
        /// Write the report as JSON.
        #[arg(long, value_name = "OUT")]
        json: Option<PathBuf>,
        /// Write the report as a self-contained HTML page with plots.
        #[arg(long, value_name = "OUT")]
        html: Option<PathBuf>,
    },
    /// Run the bot: watch every configured chain that has an executor and trade it.
    #[command(long_about = RUN_ABOUT)]
    Run {
        /// The TOML configuration (check it first with `cantilever check-config FILE`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Decide, prove and record, but sign and send nothing (overrides `[engine] dry_run`).
        #[arg(long, conflicts_with = "shadow")]
        dry_run: bool,
        /// Sign and simulate every approved trade but never send it (implies dry-run; overrides
        /// `[engine] shadow`).
        #[arg(long)]
        shadow: bool,
        /// Run only this chain (its `name` in the configuration).
        #[arg(long, value_name = "NAME")]
        chain: Option<String>,
        /// Seconds a graceful shutdown may take: stop deciding, wait for in-flight submissions,
        /// close the ledger.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        shutdown_deadline_secs: u64,
    },
    /// Engage the persistent halt: write the halt file (`[engine] halt_file`) and record it in the
    /// ledger. While the file exists the bot signs nothing, across restarts, until `rearm`.
    #[command(long_about = HALT_ABOUT)]
    Halt {
        /// The TOML configuration (only its `[engine]` table is read).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Why (recorded in the halt file and the ledger).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Clear the persistent halt: remove the halt file and record the re-arm in the ledger.
    #[command(long_about = REARM_ABOUT)]
    Rearm {
        /// The TOML configuration (only its `[engine]` table is read).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
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
    /// With --config and --chain the engine itself (dry run) warms and refreshes its state
    /// through the recorder, so the cassette holds exactly what the engine reads.
    Record {
        /// WebSocket endpoint of the node (not with --config).
        #[arg(long, value_name = "URL", env = "CANTILEVER_RECORD_WS", hide_env_values = true)]
        ws: Option<String>,
        /// HTTP endpoint of the same node (not with --config).
        #[arg(long, value_name = "URL", env = "CANTILEVER_RECORD_HTTP", hide_env_values = true)]
        http: Option<String>,
        /// Record through the engine of this configuration's chain (its endpoints are used).
        #[arg(long, value_name = "FILE", requires = "chain")]
        config: Option<PathBuf>,
        /// The chain of --config (its `name`).
        #[arg(long, value_name = "NAME", requires = "config")]
        chain: Option<String>,
        /// With --config: the executor operator simulations run from (default: the address of
        /// the chain's configured signer, else the zero address).
        #[arg(long, value_name = "ADDRESS", requires = "config")]
        operator: Option<Address>,
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
    /// Replay a cassette through the real engine (shadow mode, a throwaway key, submission stopped
    /// after signing) and report per stage and end to end p50/p90/p99/p99.9/max for head and
    /// pending events, events/s and RSS.
    ///
    /// By default events go in one at a time (lockstep: each latency is the pipeline's, never
    /// queueing), and in the same run every candidate the engine proved is evaluated again by an
    /// eth_call (`eth_simulateV1`, victims ahead) to anvil on loopback, forked at the same block
    /// from a JSON-RPC server answering from the cassette: the baseline a typical bot represents,
    /// with its per-event latency, the ratio to ours and whether both agree on status and gas.
    ///
    /// Example: cantilever bench --events fixtures/cassettes/devnet-138.cas --manifest
    /// fixtures/cassettes/devnet-138.manifest.json --sweep --json bench.json --html bench.html
    Bench {
        /// The cassette (`cantilever record`).
        #[arg(long, value_name = "FILE")]
        events: PathBuf,
        /// The TOML configuration the cassette was recorded with.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "manifest",
            conflicts_with = "manifest"
        )]
        config: Option<PathBuf>,
        /// A devnet manifest (`cantilever devnet --out`) instead of --config.
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// The chain (default: the one with the cassette's chain id).
        #[arg(long, value_name = "NAME")]
        chain: Option<String>,
        /// Add N synthetic PMM pools (copies of a real pool at fresh addresses; the eth_call
        /// baseline runs up to 200 of them).
        #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "sweep")]
        pools: usize,
        /// Skip the eth_call baseline (it needs anvil: $CANTILEVER_ANVIL, tools/ or PATH).
        #[arg(long)]
        no_baseline: bool,
        /// Pace pending transactions at N per second on the replay clock instead of lockstep
        /// (each recorded one is sent repeatedly, for --rate-seconds in all; latency then
        /// includes queueing).
        #[arg(long, value_name = "N", conflicts_with = "sweep")]
        rate: Option<f64>,
        /// How long a paced run sends pending transactions.
        #[arg(long, value_name = "SECS", default_value_t = cantilever::bench::RATE_SECONDS)]
        rate_seconds: f64,
        /// The scaling sweep: the base run (with the baseline), then lockstep runs with
        /// --sweep-pools synthetic pools and paced runs at --sweep-rates pending/s.
        #[arg(long)]
        sweep: bool,
        /// Pool counts of the sweep.
        #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_values_t = cantilever::bench::SWEEP)]
        sweep_pools: Vec<usize>,
        /// Pending rates (per second) of the sweep.
        #[arg(long, value_name = "R,R,...", value_delimiter = ',', default_values_t = cantilever::bench::RATES)]
        sweep_rates: Vec<f64>,
        /// Time budget of each sweep run's replay: a run past it stops sending events and says
        /// so (warm-up is not bounded).
        #[arg(long, value_name = "SECS", default_value_t = cantilever::bench::SWEEP_BUDGET.as_secs())]
        sweep_budget: u64,
        /// Run the engine busy-polling its inputs between events (`[engine] busy_poll`): no
        /// wake-up on each event, one core kept at 100%.
        #[arg(long)]
        busy_poll: bool,
        /// Write the report as JSON.
        #[arg(long, value_name = "OUT")]
        json: Option<PathBuf>,
        /// Write a self-contained HTML page: tables, latency histograms per stage and event kind,
        /// the baseline and the scaling curves as inline SVG.
        #[arg(long, value_name = "OUT")]
        html: Option<PathBuf>,
    },
    /// Validate a configuration file: print every error with file, key and reason; exit non-zero on
    /// any error. Secrets found in the file are named by key, never printed.
    CheckConfig {
        /// The TOML configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

const RUN_ABOUT: &str = "\
Run the bot: watch every configured chain that has an executor and trade it.

Start-up: loads and validates the configuration (errors are printed as `check-config` prints
them, and the process exits non-zero), loads the keys (the executor signer from each chain's
`[chains.signer]`, the relay identity from `[chains.submission] identity`; keystore files or
environment variables named in the file, never printed), opens the ledger (`[engine]
ledger_path`; the run is tagged with the keccak-256 of the configuration file), starts the
Prometheus `/metrics` and `/health` endpoint on `[telemetry] metrics_addr` (loopback unless
`allow_public_metrics`), then one engine per chain.

Modes: live when `[engine] dry_run = false`; `--dry-run` and `--shadow` override the file.

Signals:
  SIGINT, SIGTERM  graceful shutdown: stop deciding, wait for in-flight submissions up to
                   --shutdown-deadline-secs, close the ledger, exit 0. A second signal exits at
                   once (committed ledger rows are kept).
  SIGUSR1          re-read the halt file: halt every chain if it exists (after `cantilever
                   halt`), re-arm them if it is gone (after `cantilever rearm`).
  SIGHUP           re-read the configuration file; when all of it validates, the `[risk]` and
                   `[strategies.stabilizer]` limits take effect at once (logged); anything else
                   needs a restart. An invalid file changes nothing and its errors are printed.

/health answers 200 only when every chain's node answers, the engine is within 2 blocks of the
node's head with fresh state, and nothing is halted.";

const HALT_ABOUT: &str = "\
Engage the persistent halt: write the halt file (`[engine] halt_file`) and record the halt in the
ledger (`[engine] ledger_path`). While the file exists the bot signs nothing, across restarts,
until `cantilever rearm`. An already engaged halt keeps its first reason.

Only the `[engine]` table of the configuration is read, so a halt works even when the
environment the RPC URLs need is missing.

A running bot reads the file at start; tell a running one with `kill -USR1 <pid>` (its pid is in
its start-up log and in `cantilever ledger`). Its kill switch also writes this file.";

const REARM_ABOUT: &str = "\
Clear the persistent halt: remove the halt file (`[engine] halt_file`) and record the re-arm in
the ledger. Only the `[engine]` table of the configuration is read.

A running bot stays halted until told: `kill -USR1 <pid>` makes it re-read the file and re-arm.";

const BACKTEST_ABOUT: &str = "\
Backtest the real engine over history, block by block: the engine (the same code as live, fed
one event at a time, signing with a throwaway key, its execution wired to the judge: nothing is
ever sent) forks at the block's parent, receives the block's transactions in block order as its
pending stream, then the real block as its head. Every transaction it signs is executed in revm
where it would have landed (a backrun right after its victim, a head trade at the top of the
next block) on the real chain's state: landed or reverted, PnL after gas.

  cantilever backtest --rpc URL --from N --to M [--config FILE] [--cache DIR] [--record FILE]
  cantilever backtest --cassette FILE [--config FILE | --manifest FILE]

Cross-chain: the two chains of an enabled [strategies.cross_chain] (or a manifest's
`cross_chain`) replayed together, both engines and the coordinator, blocks in timestamp order:

  cantilever backtest --config FILE --rpc URL_A --from NA --to MA --rpc URL_B --from NB --to MB
  cantilever backtest --manifest FILE --cassette A.cas --cassette B.cas

Every RPC answer is kept in an on-disk cache (--cache) keyed by method and parameters (the block
included), so a re-run is offline and identical; requests are throttled (--requests-per-s) and
retried with backoff. The report gives, per strategy and per route: opportunities, approvals,
refusals by kind, the would-have-landed rate and PnL; and the peg deviation per block without
the bot (the recorded chain) and with it (after its landed transactions). --json and --html
write it to files; a progress bar is drawn on stderr when it is a terminal.

`cantilever` with no arguments runs the embedded default, with no network: a depeg episode
modelled on USDC in March 2023 and a cross-chain spread episode between chain 138 and Alltra,
both recorded from the devnet.";

fn default_backtest(json: Option<PathBuf>, html: Option<PathBuf>) -> ExitCode {
    run_async(async move {
        let report = cantilever::backtest::default::run_default(true).await?;
        print_report(&report, json, html, || cantilever::backtest::render_default_html(&report))
    })
}

/// Prints `report`, writes it as JSON and HTML (`html_of`) when asked.
fn print_report<R: std::fmt::Display + serde::Serialize>(
    report: &R,
    json: Option<PathBuf>,
    html: Option<PathBuf>,
    html_of: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    use cantilever::backtest::write_file;
    print!("{report}");
    if let Some(p) = json {
        write_file(&p, &format!("{}\n", serde_json::to_string_pretty(report)?))
            .map_err(anyhow::Error::msg)?;
    }
    if let Some(p) = html {
        write_file(&p, &html_of()).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Where a backtest reads history from.
struct History {
    rpc: Vec<String>,
    from: Vec<u64>,
    to: Vec<u64>,
    cassette: Vec<PathBuf>,
    record: Vec<PathBuf>,
}

#[allow(clippy::too_many_arguments)]
fn backtest_command(
    h: History,
    config: Option<cantilever::bench::ConfigFile>,
    chain: Option<String>,
    operator: Option<Address>,
    cache: PathBuf,
    requests_per_s: u32,
    json: Option<PathBuf>,
    html: Option<PathBuf>,
) -> ExitCode {
    use cantilever::backtest::{self, RpcOptions, Setup, render_html, xchain};
    run_async(async move {
        let History { rpc, from, to, cassette, record } = h;
        let (n, m) = (rpc.len(), cassette.len());
        if n > 2 || m > 2 {
            anyhow::bail!("at most two --rpc or two --cassette (one per chain)");
        }
        if n > 0 && (from.len() != n || to.len() != n || !(record.is_empty() || record.len() == n))
        {
            anyhow::bail!("give --from and --to (and --record, if any) once per --rpc");
        }
        let options = |i: usize| RpcOptions {
            url: rpc[i].clone(),
            from: from[i],
            to: to[i],
            // One cache per chain: two chains have blocks of the same numbers.
            cache_dir: if n == 2 { cache.join(format!("chain-{i}")) } else { cache.clone() },
            requests_per_s,
            record: record.get(i).cloned(),
            config: config.clone(),
            chain: chain.clone(),
            operator,
            progress: true,
        };
        if n == 2 || m == 2 {
            let Some(file) = &config else {
                anyhow::bail!(
                    "a cross-chain backtest needs --config or --manifest with its cross_chain section"
                );
            };
            let setup = xchain::XSetup::load(file)?;
            let report = if n == 2 {
                let (a, b) = (options(0), options(1));
                xchain::run_rpc([&a, &b], &setup, true).await?
            } else {
                let a = cantilever::cassette::Cassette::load(&cassette[0])?;
                let b = cantilever::cassette::Cassette::load(&cassette[1])?;
                let label = format!("{} + {}", cassette[0].display(), cassette[1].display());
                xchain::run_cassettes([&a, &b], &setup, &label, true).await?
            };
            return print_report(&report, json, html, || xchain::render_html(&report));
        }
        let report = match (rpc.first(), cassette.first()) {
            (Some(_), _) => backtest::run_rpc(&options(0)).await?,
            (None, Some(path)) => {
                let c = cantilever::cassette::Cassette::load(path)?;
                let operator = operator.or_else(|| backtest::cassette_operator(&c));
                let setup =
                    Setup::load(config.as_ref(), chain.as_deref(), c.meta.chain_id, operator)?;
                let label = path.display().to_string();
                backtest::run_cassette(&c, &setup, &label, true).await?
            }
            (None, None) => {
                let report = backtest::default::run_default(true).await?;
                return print_report(&report, json, html, || {
                    backtest::render_default_html(&report)
                });
            }
        };
        print_report(&report, json, html, || render_html(&report))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        // No arguments: the main job on the embedded default.
        init_tracing_at(cli.log_format.unwrap_or(LogFormat::Text), "warn");
        return default_backtest(None, None);
    };
    if let Command::Run { config, dry_run, shadow, chain, shutdown_deadline_secs } = command {
        // `run` sets up logging itself, from the configuration.
        let args = cantilever::app::RunArgs {
            config,
            dry_run,
            shadow,
            chain,
            log_format: cli.log_format.map(LogFormat::to_config),
            shutdown_deadline: Duration::from_secs(shutdown_deadline_secs),
        };
        return run_bot(args);
    }
    if let Command::Backtest {
        rpc,
        from,
        to,
        cassette,
        config,
        manifest,
        chain,
        operator,
        cache,
        requests_per_s,
        record,
        json,
        html,
    } = command
    {
        init_tracing_at(cli.log_format.unwrap_or(LogFormat::Text), "warn");
        use cantilever::bench::ConfigFile;
        let config = config.map(ConfigFile::Toml).or(manifest.map(ConfigFile::Manifest));
        return backtest_command(
            History { rpc, from, to, cassette, record },
            config,
            chain,
            operator,
            cache,
            requests_per_s,
            json,
            html,
        );
    }
    init_tracing(cli.log_format.unwrap_or(LogFormat::Text));
    match command {
        Command::Backtest { .. } => ExitCode::FAILURE,
        Command::Run { .. } => ExitCode::FAILURE,
        Command::Halt { config, reason } => halt_command(&config, Some(&reason)),
        Command::Rearm { config } => halt_command(&config, None),
        Command::Ledger { db, json } => ledger_summary(&db, json),
        Command::LedgerCrashWriter { db } => ledger_crash_writer(&db),
        Command::CheckConfig { file } => cantilever::config::check_config_command(&file),
        Command::Record {
            ws,
            http,
            config,
            chain,
            operator,
            out,
            blocks,
            seconds,
            watch,
            watch_slot,
            block_time_ms,
        } => {
            if let (Some(config), Some(chain)) = (config, chain) {
                let duration = seconds.map(Duration::from_secs);
                return run_async(record_engine(config, chain, operator, out, blocks, duration));
            }
            run_async(async move {
                use cantilever::{cassette::record, config::EndpointUrl};
                let url = |u: Option<String>, which: &str| {
                    let u =
                        u.ok_or_else(|| anyhow::anyhow!("--{which} is required without --config"))?;
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
        Command::Bench {
            events,
            config,
            manifest,
            chain,
            pools,
            no_baseline,
            rate,
            rate_seconds,
            sweep,
            sweep_pools,
            sweep_rates,
            sweep_budget,
            busy_poll,
            json,
            html,
        } => {
            use cantilever::bench::{BenchOptions, ConfigFile, SweepOptions};
            let config = match (config, manifest) {
                (Some(c), _) => ConfigFile::Toml(c),
                (None, Some(m)) => ConfigFile::Manifest(m),
                (None, None) => return ExitCode::FAILURE,
            };
            let opts = BenchOptions {
                chain,
                pools,
                baseline: !no_baseline,
                rate,
                rate_seconds,
                busy_poll,
                ..BenchOptions::new(events, config)
            };
            let sweep = sweep.then_some(SweepOptions {
                pools: sweep_pools,
                rates: sweep_rates,
                budget: Some(Duration::from_secs(sweep_budget)),
            });
            run_async(bench(opts, sweep, json, html))
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

impl LogFormat {
    const fn to_config(self) -> cantilever::config::LogFormat {
        match self {
            Self::Text => cantilever::config::LogFormat::Text,
            Self::Json => cantilever::config::LogFormat::Json,
        }
    }
}

fn init_tracing(format: LogFormat) {
    init_tracing_at(format, "info");
}

fn init_tracing_at(format: LogFormat, level: &str) {
    if let Err(e) = cantilever::telemetry::init_tracing(format.to_config(), level) {
        eprintln!("warning: {e}");
    }
}

fn run_bot(args: cantilever::app::RunArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(cantilever::app::run(args));
    // Tasks still tracking a submission past the deadline are not waited for.
    rt.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(cantilever::app::AppError::Config { file, errors }) => {
            cantilever::app::print_config_errors(&file, &errors);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `halt` (with a reason) or `rearm` (without).
fn halt_command(config: &std::path::Path, reason: Option<&str>) -> ExitCode {
    use cantilever::app::HaltChange;
    let result = match reason {
        Some(r) => cantilever::app::halt(config, r),
        None => cantilever::app::rearm(config),
    };
    let o = match result {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let file = o.halt_file.display();
    let why = o.reason.as_deref().unwrap_or("-");
    match (reason.is_some(), o.change) {
        (true, HaltChange::Changed) => println!(
            "halted: {why}\nhalt file {file} written; recorded in {}\na running bot: kill -USR1 <pid>",
            o.ledger_path.display()
        ),
        (true, HaltChange::Unchanged) => {
            println!("already halted ({file}): {why}; reason unchanged, nothing recorded")
        }
        (false, HaltChange::Changed) => println!(
            "re-armed (was: {why})\nhalt file {file} removed; recorded in {}\na running bot: kill -USR1 <pid>",
            o.ledger_path.display()
        ),
        (false, HaltChange::Unchanged) => println!("not halted ({file} absent); nothing to do"),
    }
    ExitCode::SUCCESS
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

async fn bench(
    o: cantilever::bench::BenchOptions,
    sweep: Option<cantilever::bench::SweepOptions>,
    json: Option<PathBuf>,
    html: Option<PathBuf>,
) -> anyhow::Result<()> {
    use cantilever::bench::{render_html, run_bench, run_sweep, write_file};
    let (page, text, value) = if let Some(s) = sweep {
        let s = run_sweep(&o, &s).await?;
        (render_html(&s.base, Some(&s)), s.to_string(), serde_json::to_value(&s)?)
    } else {
        let r = run_bench(&o).await?;
        (render_html(&r, None), r.to_string(), serde_json::to_value(&r)?)
    };
    print!("{text}");
    if let Some(p) = json {
        write_file(&p, &format!("{}\n", serde_json::to_string_pretty(&value)?))
            .map_err(anyhow::Error::msg)?;
    }
    if let Some(p) = html {
        write_file(&p, &page).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

async fn record_engine(
    config: PathBuf,
    chain: String,
    operator: Option<Address>,
    out: PathBuf,
    blocks: Option<u64>,
    duration: Option<Duration>,
) -> anyhow::Result<()> {
    use cantilever::bench::record::{EngineRecordOptions, record_engine};
    let cfg = cantilever::config::Config::load(&config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    let c = cfg
        .chain(&chain)
        .ok_or_else(|| anyhow::anyhow!("no chain named `{chain}` in {}", config.display()))?
        .clone();
    let operator = match (operator, &c.signer) {
        (Some(a), _) => a,
        (None, Some(r)) => {
            cantilever::exec::load_signer(r, cantilever::exec::KeyRole::Executor)?.address()
        }
        (None, None) => Address::ZERO,
    };
    let o = EngineRecordOptions {
        chain: c,
        strategies: cfg.strategies.clone(),
        risk: cfg.risk.clone(),
        out,
        blocks,
        duration,
        operator,
    };
    println!("recording chain {chain} through the engine; Ctrl-C to stop");
    println!("{}", record_engine(o, wait_for_shutdown()).await?);
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
