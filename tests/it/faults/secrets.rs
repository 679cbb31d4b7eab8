//! Secrets stay out of logs and `--help`: endpoint URLs with an embedded API key never reach the
//! log output at `debug` or `trace`, and no `--help` prints an environment value.

use std::{
    io::Write,
    process::Command,
    sync::{Arc, Mutex},
};

use alloy::providers::{Provider, ProviderBuilder, WsConnect};
use cantilever::{
    config::LogFormat,
    devnet::{AnvilNode, AnvilOptions},
    telemetry,
};
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;

use super::{
    fake_rpc::{FakeRpc, Reply},
    proxy::WsProxy,
};

const KEY: &str = "SECRETKEY4242";

/// A log sink shared with the test.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = Sink;
    fn make_writer(&'a self) -> Sink {
        self.clone()
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// An HTTP request and a WebSocket session to endpoints whose path holds [`KEY`], made on a
/// current-thread runtime under `subscriber`, so every span and event of the transports is seen.
fn requests_under(subscriber: impl tracing::Subscriber + Send + Sync + 'static) {
    let node = AnvilNode::spawn(&AnvilOptions::default()).expect("private anvil node");
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            tracing::debug!(target: "cantilever::faults", "debug is on");
            let fake = FakeRpc::start(None).await;
            fake.then(Reply::Custom(Arc::new(|req| {
                (200, json!({"jsonrpc": "2.0", "id": req["id"], "result": "0x2a"}).to_string())
            })));
            let http = ProviderBuilder::new()
                .connect_http(format!("{}/v2/{KEY}", fake.url).parse().unwrap());
            assert_eq!(http.get_block_number().await.unwrap(), 42);

            let proxy = WsProxy::start(&node.ws_url()).await;
            let ws = ProviderBuilder::new()
                .connect_ws(WsConnect::new(format!("{}/v2/{KEY}", proxy.url)))
                .await
                .unwrap();
            assert_eq!(ws.get_block_number().await.unwrap(), 0);
        });
    });
}

/// At `trace`, `debug` and with the transports asked for by name, the key never appears, while
/// debug output of our own targets does. The control run (a plain subscriber at TRACE) shows the
/// transports do log the URL, so the check is not vacuous.
#[test]
fn api_keys_in_urls_never_reach_the_logs() {
    // tracing caches per-callsite interest process-wide; another test's subscriber coming or
    // going at the same moment can make one control run miss the transports' events, so the
    // control gets three tries (it only proves the check below is not vacuous).
    let logged = (0..3).any(|_| {
        let control = Sink::default();
        requests_under(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(control.clone())
                .finish(),
        );
        control.text().contains(KEY)
    });
    assert!(logged, "the transports log URLs without the cap");

    for filter in [
        "trace",
        "debug",
        "info,cantilever=debug,alloy_transport_http=trace,\
         alloy_transport_http::reqwest_transport=trace,\
         reqwest=trace,hyper_util=trace,tungstenite=trace,alloy_pubsub=trace",
    ] {
        for format in [LogFormat::Text, LogFormat::Json] {
            let sink = Sink::default();
            requests_under(telemetry::subscriber(format, filter, sink.clone()).unwrap());
            let out = sink.text();
            assert!(out.contains("debug is on"), "{filter}: debug output is on: {out}");
            assert!(!out.contains(KEY), "{filter} / {format:?}: the key leaked:\n{out}");
        }
    }
    assert!(telemetry::URL_TARGETS.contains(&"alloy_transport_http"));
}

fn run(args: &[&str], env: &[(String, String)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Subcommand names listed under `Commands:` in the top-level help.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

/// `cantilever --help` and every subcommand's `--help` (hidden ones included) print no value of
/// the environment: not of the variables the example configuration references, not of any
/// variable a flag reads.
#[test]
fn help_prints_no_environment_value() {
    let example = include_str!("../../../config/example-live.toml");
    let mut names: Vec<String> = example
        .split("${")
        .skip(1)
        .filter_map(|s| s.split('}').next().map(str::to_owned))
        .collect();
    names.extend(
        example
            .lines()
            .filter_map(|l| l.split_once("_env = \""))
            .filter_map(|(_, rest)| rest.split('"').next().map(str::to_owned)),
    );
    let top = run(&["--help"], &[]);
    let mut commands = subcommands(&top);
    assert!(commands.len() >= 4, "{top}");
    commands.push("ledger-crash-writer".into());
    // Variables named by `[env: NAME=…]` in any help text.
    for c in &commands {
        let help = run(&[c, "--help"], &[]);
        names.extend(
            help.split("[env: ")
                .skip(1)
                .filter_map(|s| s.split([']', '=']).next().map(str::to_owned)),
        );
    }
    names.extend(["RUST_LOG", "ETH_RPC_URL", "CANTILEVER_KEYSTORE_PASSWORD"].map(String::from));
    names.sort();
    names.dedup();
    let env: Vec<(String, String)> =
        names.iter().map(|n| (n.clone(), format!("https://x.example/{KEY}/{n}"))).collect();
    for args in std::iter::once(vec!["--help".to_owned()])
        .chain(commands.iter().map(|c| vec![c.clone(), "--help".to_owned()]))
    {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, &env);
        assert!(!out.contains(KEY), "{args:?} printed an environment value:\n{out}");
    }
}
