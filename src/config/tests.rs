//! Unit tests of the configuration loader: shipped files, every-error collection, secrets,
//! security rules, cross-references, defaults, and a no-panic property over arbitrary input.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

const FILE: &str = "test.toml";

/// A small valid configuration; tests append to it or replace parts of it.
const MINIMAL: &str = r#"
[[chains]]
name = "chain138"
chain_id = 138
ws_url = "ws://127.0.0.1:8546"
http_url = "http://127.0.0.1:8545"
block_time_ms = 2000

[chains.submission]
mode = "public-rpc"

[risk]
nav_usd = 1000000
"#;

/// A private key-shaped value built at run time, so no key-shaped literal sits in the source.
fn fake_key() -> String {
    "c0ffee15deadbeef".repeat(4)
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml_str_with_env(text, FILE, &no_env)
}

fn errors(text: &str) -> ConfigErrors {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e,
    }
}

fn keys(errs: &ConfigErrors) -> Vec<&str> {
    errs.iter().map(|e| e.key()).collect()
}

fn find<'a>(errs: &'a ConfigErrors, key: &str) -> &'a ConfigError {
    errs.iter()
        .find(|e| e.key() == key)
        .unwrap_or_else(|| panic!("no error at `{key}` in:\n{errs}"))
}

/// Every rendering of `errs` (Display and Debug, of the list and of each error).
fn renderings(errs: &ConfigErrors) -> String {
    let mut s = format!("{errs}\n{errs:?}\n");
    for e in errs {
        s.push_str(&format!("{e}\n{e:?}\n{}\n{}\n", e.key(), e.reason()));
    }
    s
}

/// Asserts no 8-character window of `secret` appears in `text`.
fn assert_no_part_of(secret: &str, text: &str) {
    let chars: Vec<char> = secret.chars().collect();
    for w in chars.windows(8) {
        let part: String = w.iter().collect();
        assert!(!text.contains(&part), "`{part}` of the secret leaked into:\n{text}");
    }
}

fn manifest_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn live_env(name: &str) -> Option<String> {
    let vars: BTreeMap<&str, &str> = [
        ("CHAIN138_WS_URL", "wss://rpc.d-bis.org"),
        ("CHAIN138_HTTP_URL", "https://rpc-http-pub.d-bis.org"),
        ("ALLTRA_WS_URL", "wss://alltra.example/ws/k3y9d8s7a6s5d4f3g2h1j0k9"),
        ("ALLTRA_HTTP_URL", "https://mainnet-rpc.alltra.global"),
    ]
    .into_iter()
    .collect();
    vars.get(name).map(|v| (*v).to_owned())
}

// ---------------------------------------------------------------------------------------------
// The shipped files.

#[test]
fn default_toml_passes_check_file() {
    let path = manifest_path("config/default.toml");
    let cfg = check_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.chains.len(), 2);
    let c138 = cfg.chain("chain138").expect("chain138");
    assert_eq!(c138.chain_id, 138);
    assert_eq!(c138.ws_url.expose_secret(), "ws://127.0.0.1:8545");
    assert_eq!(c138.http_url.expose_secret(), "http://127.0.0.1:8545");
    let alltra = cfg.chain_by_id(651_940).expect("alltra");
    assert_eq!(alltra.ws_url.expose_secret(), "ws://127.0.0.1:9545");
    assert_eq!(alltra.http_url.expose_secret(), "http://127.0.0.1:9545");
    assert!(cfg.chains.iter().all(|c| c.submission.mode == SubmissionMode::PublicRpc));
    assert!(cfg.engine.dry_run);
    assert!(cfg.chains.iter().all(|c| c.venues.is_empty()));
    // The embedded copy is the same file.
    assert_eq!(Config::embedded_default().unwrap_or_else(|e| panic!("{e}")), cfg);
    assert_eq!(Config::load(&path).unwrap_or_else(|e| panic!("{e}")), cfg);
    assert!(cfg.validate().is_ok());
}

#[test]
fn example_live_toml_passes_with_its_environment() {
    let path = manifest_path("config/example-live.toml");
    let cfg = Config::load_with_env(&path, &live_env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.chains.len(), 2);
    assert_eq!(cfg.chain("chain138").map(|c| c.tokens.len()), Some(4));
    assert!(matches!(
        cfg.chain("chain138").and_then(|c| c.signer.as_ref()),
        Some(SignerRef::Keystore { .. })
    ));
    let alltra = cfg.chain("alltra").expect("alltra");
    assert_eq!(alltra.ws_url.expose_secret(), "wss://alltra.example/ws/k3y9d8s7a6s5d4f3g2h1j0k9");
    // The resolved URL with its key never shows in Debug or Display.
    let shown = format!("{cfg:?}\n{alltra}\n{}", cfg.summary());
    assert!(!shown.contains("k3y9d8s7a6s5d4f3g2h1j0k9"), "{shown}");
    assert!(shown.contains("wss://alltra.example/…"), "{shown}");
    assert_eq!(
        cfg.risk.min_profit.get("WETH").map(|a| a.0),
        Some(alloy::primitives::U256::from(4_000_000_000_000_000u64))
    );
    let x = cfg.strategies.cross_chain.as_ref().expect("cross_chain");
    assert_eq!(x.assets.get("AUSDC").map(String::as_str), Some("cUSDC"));
    assert!(cfg.validate().is_ok());
}

#[test]
fn example_live_without_environment_names_each_variable() {
    let path = manifest_path("config/example-live.toml");
    let errs = Config::load_with_env(&path, &no_env).expect_err("variables are unset");
    assert!(errs.iter().all(|e| e.kind() == ConfigErrorKind::Environment), "{errs}");
    let text = errs.to_string();
    for var in ["CHAIN138_WS_URL", "CHAIN138_HTTP_URL", "ALLTRA_WS_URL", "ALLTRA_HTTP_URL"] {
        assert!(text.contains(var), "{var} missing from:\n{text}");
    }
    let text = std::fs::read_to_string(&path).expect("readable");
    let line = text.lines().position(|l| l.starts_with("ws_url = \"${ALLTRA_WS_URL}\""));
    assert_eq!(find(&errs, "chains[1].ws_url").line(), line.map(|l| l + 1), "{errs}");
    assert!(errs.iter().all(|e| e.file().ends_with("example-live.toml")));
}

#[test]
fn config_files_are_fully_commented() {
    for rel in ["config/default.toml", "config/example-live.toml"] {
        let text = std::fs::read_to_string(manifest_path(rel)).expect("readable");
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') || t.starts_with('[') {
                continue;
            }
            assert!(t.contains('#'), "{rel}:{}: key without a comment: {t}", i + 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every error, not just the first.

#[test]
fn unknown_key_wrong_type_and_pasted_key_are_three_errors() {
    let key = fake_key();
    let text = format!(
        r#"
[engine]
dry_runn = true

[[chains]]
name = "chain138"
chain_id = "one-three-eight"
ws_url = "ws://127.0.0.1:8546"
http_url = "http://127.0.0.1:8545"
block_time_ms = 2000
[chains.submission]
mode = "public-rpc"
[chains.signer]
private_key = "0x{key}"

[risk]
nav_usd = 1000000
"#
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs}");
    assert_eq!(
        keys(&errs),
        vec!["chains[0].signer.private_key", "engine.dry_runn", "chains[0].chain_id"],
        "{errs}"
    );
    let secret = find(&errs, "chains[0].signer.private_key");
    assert_eq!(secret.kind(), ConfigErrorKind::Secret);
    assert_eq!(secret.line(), Some(14));
    assert!(secret.reason().contains(
        "looks like a secret pasted into the file; reference it by environment variable or keystore"
    ));
    let unknown = find(&errs, "engine.dry_runn");
    assert_eq!(unknown.kind(), ConfigErrorKind::UnknownKey);
    assert_eq!(unknown.line(), Some(3));
    assert!(unknown.reason().contains("`dry_run`"), "expected keys listed: {unknown}");
    let wrong = find(&errs, "chains[0].chain_id");
    assert_eq!(wrong.kind(), ConfigErrorKind::WrongType);
    assert_eq!(wrong.line(), Some(7));
    assert!(wrong.reason().contains("non-negative integer") && wrong.reason().contains("string"));
    assert!(!renderings(&errs).contains("one-three-eight"), "string values are not echoed");
    assert_no_part_of(&key, &renderings(&errs));
    assert_eq!(
        errs.to_string().lines().next(),
        Some(
            "test.toml:14: chains[0].signer.private_key: looks like a secret pasted into the file; \
             reference it by environment variable or keystore (64 hex digits, the shape of a private key)"
        )
    );
}

#[test]
fn many_errors_across_the_file_are_all_reported_with_file_indices() {
    let text = r#"
[telemetry]
log_format = "xml"
colour = true

[[chains]]
name = "broken"
ws_url = "ws://127.0.0.1:1"
http_url = "http://127.0.0.1:1"
block_time_ms = 1000
[chains.submission]
mode = "public-rpc"

[[chains]]
name = "chain138"
chain_id = 138
ws_url = "ws://127.0.0.1:8546"
http_url = "http://127.0.0.1:8545"
block_time_ms = 2000
typo = 1
[chains.submission]
mode = "public-rcp"
[[chains.tokens]]
symbol = "A"
address = "0x0000000000000000000000000000000000000001"
decimals = 300
[[chains.tokens]]
symbol = "B"
address = "0x0000000000000000000000000000000000000002"
decimals = 6

[risk]
nav_usd = 1000000
min_blocks = -1
"#;
    let errs = errors(text);
    let got = keys(&errs);
    for want in [
        "telemetry.log_format",
        "telemetry.colour",
        "chains[0].chain_id",
        "chains[1].typo",
        "chains[1].submission.mode",
        "chains[1].tokens[0].decimals",
        "risk.min_blocks",
    ] {
        assert!(got.contains(&want), "missing {want} in:\n{errs}");
    }
    assert_eq!(errs.len(), 7, "{errs}");
    assert_eq!(find(&errs, "chains[0].chain_id").kind(), ConfigErrorKind::Missing);
    assert_eq!(find(&errs, "chains[0].chain_id").line(), Some(6), "the [[chains]] header");
    let mode = find(&errs, "chains[1].submission.mode");
    assert!(mode.reason().contains("`public-rcp`") && mode.reason().contains("`flashbots-relay`"));
    assert_eq!(find(&errs, "risk.min_blocks").kind(), ConfigErrorKind::InvalidValue);
    assert_eq!(find(&errs, "chains[1].tokens[0].decimals").line(), Some(26));
    // Sorted by line.
    let lines: Vec<usize> = errs.iter().filter_map(|e| e.line()).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{errs}");
}

#[test]
fn every_error_names_the_file() {
    let key = fake_key();
    let text = format!(
        "{MINIMAL}\nbogus = 1\n[engine]\nshadow = 3\nledger_path = \"{key}\"\n\n[telemetry]\nmetrics_addr = \"0.0.0.0:1\"\n"
    );
    let errs = Config::from_toml_str_with_env(&text, "desk/prod.toml", &no_env).expect_err("bad");
    assert!(errs.len() >= 4, "{errs}");
    for e in &errs {
        assert_eq!(e.file(), "desk/prod.toml");
        assert!(e.to_string().starts_with("desk/prod.toml:"), "{e}");
    }
    assert_no_part_of(&key, &renderings(&errs));
}

#[test]
fn syntax_errors_are_all_reported_and_secrets_still_caught() {
    let key = fake_key();
    let text = format!("a = = 1\n[engine\nprivate_key = 0x{key} extra\nb = \"unterminated\n");
    let errs = errors(&text);
    assert!(errs.has_kind(ConfigErrorKind::Syntax));
    assert!(errs.iter().filter(|e| e.kind() == ConfigErrorKind::Syntax).count() >= 2, "{errs}");
    let secret = errs.iter().find(|e| e.is_secret()).expect("secret on a broken line is caught");
    assert_eq!(secret.line(), Some(3));
    assert_eq!(errs.as_slice()[0].kind(), ConfigErrorKind::Secret, "secrets come first");
    assert_no_part_of(&key, &renderings(&errs));
}

#[test]
fn paths_keep_file_indices_after_an_entry_is_dropped() {
    let text = r#"
[[chains]]
name = "a"
ws_url = "ws://127.0.0.1:1"
http_url = "http://127.0.0.1:1"
block_time_ms = 1
[chains.submission]
mode = "public-rpc"

[[chains]]
name = "b"
chain_id = 2
ws_url = "ws://127.0.0.1:2"
http_url = "http://127.0.0.1:2"
block_time_ms = 0
[chains.submission]
mode = "public-rpc"

[[chains]]
name = "c"
chain_id = 2
ws_url = "ws://127.0.0.1:3"
http_url = "http://127.0.0.1:3"
block_time_ms = 1
[chains.submission]
mode = "public-rpc"

[risk]
nav_usd = 100000
"#;
    let errs = errors(text);
    assert_eq!(
        keys(&errs),
        vec!["chains[0].chain_id", "chains[1].block_time_ms", "chains[2].chain_id"],
        "{errs}"
    );
    assert_eq!(find(&errs, "chains[2].chain_id").kind(), ConfigErrorKind::Duplicate);
    assert!(
        find(&errs, "chains[2].chain_id").reason().contains("(see chains[1].chain_id, line 12)"),
        "{errs}"
    );
    assert_eq!(find(&errs, "chains[1].block_time_ms").line(), Some(15));
    assert_eq!(find(&errs, "chains[2].chain_id").line(), Some(21));
}

// ---------------------------------------------------------------------------------------------
// Secrets.

#[test]
fn mnemonic_is_caught_and_never_echoed() {
    let phrase = "legal winner thank year wave sausage worth useful legal winner thank yellow";
    let text = format!(
        "{MINIMAL}\n[strategies.depeg]\nenabled = true\n\n[engine]\nhalt_file = \"{phrase}\"\n"
    );
    let errs = errors(&text);
    let e = find(&errs, "engine.halt_file");
    assert_eq!(e.kind(), ConfigErrorKind::Secret);
    assert!(e.reason().contains("mnemonic"));
    let shown = renderings(&errs);
    for word in ["sausage", "winner", "yellow", "useful"] {
        assert!(!shown.contains(word), "`{word}` leaked:\n{shown}");
    }
    assert_eq!(errs.len(), 1, "removed before the schema pass: {errs}");
}

#[test]
fn secret_shapes_are_caught_everywhere() {
    let key = fake_key();
    let cases: Vec<(String, &str)> = vec![
        (format!("[engine]\nledger_path = \"{key}\"\n"), "engine.ledger_path"),
        (format!("[engine]\nprivate_key = 0x{key}\n"), "engine.private_key"),
        ("[engine]\npassword = \"hunter2hunter2\"\n".to_owned(), "engine.password"),
        ("[engine]\nsecret = 123456\n".to_owned(), "engine.secret"),
        ("[engine]\nmnemonic = [\"a\"]\n".to_owned(), "engine.mnemonic[0]"),
        (format!("# old key: {key}\n"), "(comment)"),
        (format!("[engine]\n\"{key}\" = 1\n"), "engine.<redacted key>"),
    ];
    for (extra, want) in cases {
        let errs = errors(&format!("{MINIMAL}\n{extra}"));
        let e = find(&errs, want);
        assert_eq!(e.kind(), ConfigErrorKind::Secret, "{errs}");
        assert_no_part_of(&key, &renderings(&errs));
        assert!(!renderings(&errs).contains("hunter2"));
    }
}

#[test]
fn signer_references_are_checked() {
    let with_signer = |signer: &str| {
        MINIMAL.replace(
            "[chains.submission]",
            &format!("[chains.signer]\n{signer}\n[chains.submission]"),
        )
    };
    let ok = load(&with_signer("key_env = \"CANTILEVER_SIGNER_KEY\"")).expect("env signer");
    assert!(
        matches!(&ok.chains[0].signer, Some(SignerRef::Env { key_env }) if key_env.as_str() == "CANTILEVER_SIGNER_KEY")
    );
    let ok = load(&with_signer("keystore = \"k.json\"\npassword_env = \"PW\"")).expect("keystore");
    assert!(matches!(&ok.chains[0].signer, Some(SignerRef::Keystore { .. })));

    // A literal where the variable name belongs is treated as a pasted secret.
    let errs = errors(&with_signer("key_env = \"my-Pa55word!\""));
    assert!(find(&errs, "chains[0].signer.key_env").is_secret());
    assert!(!renderings(&errs).contains("Pa55"));

    let errs = errors(&with_signer("keystore = \"k.json\""));
    assert!(find(&errs, "chains[0].signer").reason().contains("password_env"), "{errs}");
    let errs =
        errors(&with_signer("keystore = \"k.json\"\npassword_env = \"PW\"\nkey_env = \"K\""));
    assert!(find(&errs, "chains[0].signer").reason().contains("not both"), "{errs}");
}

#[test]
fn url_credentials_must_be_env_references() {
    let cases = [
        ("https://user:literal-pass@rpc.example", true),
        ("https://rpc.example/v3/9aa3d95b3bc440fa88ea12eaa4456161", true),
        ("https://rpc.example/?apikey=abc123", true),
        ("https://user:${RPC_PASSWORD}@rpc.example", false),
        ("https://rpc.example/v3/${INFURA_KEY}", false),
        ("https://rpc.example/?apikey=${KEY}", false),
    ];
    for (url, secret) in cases {
        let text = MINIMAL.replace("http://127.0.0.1:8545", url);
        let env = |name: &str| Some(format!("{name}-value"));
        let res = Config::from_toml_str_with_env(&text, FILE, &env);
        match (res, secret) {
            (Err(errs), true) => {
                let e = find(&errs, "chains[0].http_url");
                assert!(e.is_secret(), "{errs}");
                assert!(!renderings(&errs).contains("literal-pass"));
                assert!(!renderings(&errs).contains("9aa3d95b"));
            }
            (Ok(cfg), false) => {
                let shown = format!("{cfg:?}");
                assert!(!shown.contains("-value"), "resolved secret shown: {shown}");
            }
            (res, _) => panic!("{url}: unexpected {res:?}"),
        }
    }
}

#[test]
fn env_references_resolve_only_in_url_fields() {
    let text = MINIMAL.replace("ws://127.0.0.1:8546", "${WS_ENDPOINT}");
    let env = |name: &str| {
        (name == "WS_ENDPOINT").then(|| "wss://node.example/ws/sekr1tsekr1tsekr1t".to_owned())
    };
    let cfg = Config::from_toml_str_with_env(&text, FILE, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.chains[0].ws_url.expose_secret(), "wss://node.example/ws/sekr1tsekr1tsekr1t");
    assert_eq!(cfg.chains[0].ws_url.to_string(), "wss://node.example/…");
    assert_eq!(cfg.chains[0].ws_url.env_vars(), vec!["WS_ENDPOINT"]);
    assert!(!format!("{cfg:?}").contains("sekr1t"));

    let errs = errors(&text);
    let e = find(&errs, "chains[0].ws_url");
    assert_eq!(e.kind(), ConfigErrorKind::Environment);
    assert!(e.reason().contains("`WS_ENDPOINT`"));
    assert_eq!(e.line(), Some(5));

    // A value resolving to a non-WebSocket URL is refused without echoing it.
    let env = |_: &str| Some("https://other.example/k/sekr1tsekr1tsekr1t".to_owned());
    let errs = Config::from_toml_str_with_env(&text, FILE, &env).expect_err("wrong scheme");
    assert!(find(&errs, "chains[0].ws_url").reason().contains("ws://"));
    assert!(!renderings(&errs).contains("sekr1t"));

    // `${VAR}` elsewhere is not resolved (and not a valid path value for a signer name).
    let bad = MINIMAL
        .replace("[chains.submission]", "[chains.signer]\nkey_env = \"${X}\"\n[chains.submission]");
    assert!(errors(&bad).iter().any(|e| e.key() == "chains[0].signer.key_env"));
}

// ---------------------------------------------------------------------------------------------
// Security and semantic rules.

#[test]
fn non_loopback_metrics_are_refused_unless_allowed() {
    for addr in ["0.0.0.0:9464", "10.1.2.3:9464", "[::]:9464"] {
        let text = format!("{MINIMAL}\n[telemetry]\nmetrics_addr = \"{addr}\"\n");
        let errs = errors(&text);
        let e = find(&errs, "telemetry.metrics_addr");
        assert_eq!(e.kind(), ConfigErrorKind::Unsafe);
        assert!(e.reason().contains("loopback"));
        let allowed = format!("{text}allow_public_metrics = true\n");
        assert!(load(&allowed).is_ok(), "{addr} allowed explicitly");
    }
    let ok = format!("{MINIMAL}\n[telemetry]\nmetrics_addr = \"[::1]:9000\"\n");
    assert!(load(&ok).is_ok());
    let errs = errors(&format!("{MINIMAL}\n[telemetry]\nmetrics_addr = \"localhost\"\n"));
    assert_eq!(find(&errs, "telemetry.metrics_addr").kind(), ConfigErrorKind::InvalidValue);
}

const CHAIN_WITH_TOKENS: &str = r#"
[[chains.tokens]]
symbol = "cUSDT"
address = "0x93e66202a11b1772e55407b32b44e5cd8eda7f22"
decimals = 6
[[chains.tokens]]
symbol = "USDT"
address = "0x15df1d5bfdd8aa4b380445d4e3e9b38d34283619"
decimals = 6
"#;

fn with_chain_extra(extra: &str) -> String {
    MINIMAL.replace("\n[risk]", &format!("{CHAIN_WITH_TOKENS}{extra}\n[risk]"))
}

#[test]
fn cross_references_are_checked() {
    let text = with_chain_extra(
        r#"
[[chains.venues]]
name = "cUSDT/USDT"
kind = "dodo-dsp"
address = "0x00000000000000000000000000000000000000aa"
base = "cUSDT"
quote = "USDX"
[[chains.venues]]
name = "vault"
kind = "uniswap-v2"
address = "0x00000000000000000000000000000000000000bb"
base = "cUSDT"
quote = "USDT"
[[chains.flash_lenders]]
kind = "erc3156"
address = "0x00000000000000000000000000000000000000cc"
tokens = ["USDT", "DAI"]

[[chains]]
name = "other"
chain_id = 138
ws_url = "ws://127.0.0.1:1"
http_url = "http://127.0.0.1:1"
block_time_ms = 1000
[chains.submission]
mode = "public-rpc"

[[strategies.depeg.pegs]]
chain = "chain1380"
token = "cUSDT"
peg_token = "USDT"
reference = "venues"
[[strategies.depeg.pegs]]
chain = "chain138"
token = "cUSDT"
peg_token = "USDT"
reference = "vault"
vault = "vault"
[strategies.stabilizer]
pools = [{ chain = "chain138", venue = "nope" }]
"#,
    ) + "\n[risk.min_profit]\nWBTC = 1\n";
    let errs = errors(&text);
    for (key, kind) in [
        ("chains[0].venues[0].quote", ConfigErrorKind::CrossReference),
        ("chains[0].flash_lenders[0].tokens[1]", ConfigErrorKind::CrossReference),
        ("chains[1].chain_id", ConfigErrorKind::Duplicate),
        ("strategies.depeg.pegs[0].chain", ConfigErrorKind::CrossReference),
        ("strategies.depeg.pegs[1].vault", ConfigErrorKind::CrossReference),
        ("strategies.stabilizer.pools[0].venue", ConfigErrorKind::CrossReference),
        ("risk.min_profit.WBTC", ConfigErrorKind::CrossReference),
    ] {
        assert_eq!(find(&errs, key).kind(), kind, "{key}:\n{errs}");
    }
    assert!(find(&errs, "chains[0].venues[0].quote").reason().contains("`USDX`"));
    assert!(find(&errs, "strategies.depeg.pegs[1].vault").reason().contains("not a vault"));
    assert_eq!(errs.len(), 7, "{errs}");
}

#[test]
fn cross_chain_asset_renames_are_checked() {
    // chain138 declares cUSDT and USDT; alltra declares AUSDT and USDT.
    let text = with_chain_extra(
        r#"
[[chains]]
name = "alltra"
chain_id = 651940
ws_url = "ws://127.0.0.1:1"
http_url = "http://127.0.0.1:1"
block_time_ms = 5000
[chains.submission]
mode = "public-rpc"
[[chains.tokens]]
symbol = "AUSDT"
address = "0x00000000000000000000000000000000000000a1"
decimals = 6
[[chains.tokens]]
symbol = "USDT"
address = "0x00000000000000000000000000000000000000a2"
decimals = 6

[strategies.cross_chain]
chains = ["chain138", "alltra"]
[strategies.cross_chain.assets]
AUSDT = "cUSDT"
WBTC = "BTC"
USDT = "USDT"
cUSDT = "USDT"
"#,
    );
    let errs = errors(&text);
    for (key, kind) in [
        ("strategies.cross_chain.assets.WBTC", ConfigErrorKind::CrossReference),
        ("strategies.cross_chain.assets.USDT", ConfigErrorKind::InvalidValue),
        ("strategies.cross_chain.assets.cUSDT", ConfigErrorKind::Duplicate),
    ] {
        assert_eq!(find(&errs, key).kind(), kind, "{key}:\n{errs}");
    }
    assert!(find(&errs, "strategies.cross_chain.assets.cUSDT").reason().contains("`chain138`"));
    assert_eq!(errs.len(), 3, "AUSDT = cUSDT is valid:\n{errs}");
    // Onto a symbol the other chain does not declare.
    let text =
        text.replace("WBTC = \"BTC\"\nUSDT = \"USDT\"\ncUSDT = \"USDT\"\n", "cUSDT = \"DAI\"\n");
    let errs = errors(&text);
    assert_eq!(
        find(&errs, "strategies.cross_chain.assets.cUSDT").kind(),
        ConfigErrorKind::CrossReference,
        "{errs}"
    );
    assert!(find(&errs, "strategies.cross_chain.assets.cUSDT").reason().contains("`alltra`"));
    assert_eq!(errs.len(), 1, "{errs}");
}

#[test]
fn a_refused_value_does_not_cascade_into_reference_errors() {
    // The token's address is refused; the token (a stand-in address) still declares `XAU`.
    let text = with_chain_extra(
        r#"
[[chains.tokens]]
symbol = "XAU"
address = "not-an-address"
decimals = 18
[[chains.venues]]
name = "XAU/cUSDT"
kind = "dodo-dvm"
address = "0x00000000000000000000000000000000000000aa"
base = "XAU"
quote = "cUSDT"
"#,
    );
    let errs = errors(&text);
    assert_eq!(keys(&errs), vec!["chains[0].tokens[2].address"], "{errs}");
    assert!(errs.as_slice()[0].reason().contains("40 hex digits"));

    // A misspelled submission mode drops the whole chain (no neutral mode exists), yet the
    // strategies naming that chain and its tokens are not reported as dangling.
    let text = with_chain_extra("")
        .replace("mode = \"public-rpc\"", "mode = \"public\"")
        .replace(
            "\n[risk]",
            "\n[[strategies.depeg.pegs]]\nchain = \"chain138\"\ntoken = \"cUSDT\"\npeg_token = \"USDT\"\nreference = \"venues\"\n\n[risk]",
        );
    let errs = errors(&text);
    assert_eq!(keys(&errs), vec!["chains[0].submission.mode"], "{errs}");
}

#[test]
fn removed_entries_keep_later_paths_in_file_indices() {
    let text = with_chain_extra(
        r#"
[[chains.venues]]
name = "one"
kind = "dodo-dspp"
address = "0x00000000000000000000000000000000000000a1"
base = "cUSDT"
quote = "USDT"
[[chains.venues]]
name = "two"
kind = "dodo-dsp"
address = "0x00000000000000000000000000000000000000a2"
base = "cUSDT"
quote = "USDT"
colour = "red"
[[chains.venues]]
name = "three"
kind = "uniswap-v2"
address = "0x00000000000000000000000000000000000000a2"
base = "cUSDT"
quote = "DAI"
"#,
    );
    let errs = errors(&text);
    assert_eq!(
        keys(&errs),
        vec![
            "chains[0].venues[0].kind",
            "chains[0].venues[1].colour",
            "chains[0].venues[2].address",
            "chains[0].venues[2].quote",
        ],
        "{errs}"
    );
    let dup = find(&errs, "chains[0].venues[2].address");
    assert!(
        dup.reason().contains("venue `two` (see chains[0].venues[1].address, line 30)"),
        "{errs}"
    );
    assert_eq!(find(&errs, "chains[0].venues[2].quote").line(), Some(39));
}

#[test]
fn bad_checksum_and_zero_address_are_refused() {
    // cUSDT with one letter's case flipped.
    let text = MINIMAL.replace(
        "\n[risk]",
        "[[chains.tokens]]\nsymbol = \"cUSDT\"\naddress = \"0x93E66202A11B1772E55407B32B44e5Cd8eda7F22\"\ndecimals = 6\n[[chains.tokens]]\nsymbol = \"Z\"\naddress = \"0x0000000000000000000000000000000000000000\"\ndecimals = 6\n\n[risk]",
    );
    let errs = errors(&text);
    assert!(find(&errs, "chains[0].tokens[0].address").reason().contains("EIP-55"));
    assert!(find(&errs, "chains[0].tokens[1].address").reason().contains("zero address"));
}

#[test]
fn zero_negative_and_out_of_range_limits_are_refused() {
    let text = MINIMAL.replace("nav_usd = 1000000", "nav_usd = 0")
        + "max_slippage_bps = 0\nmax_gas_price_gwei = -5\nexposure_per_token_pct = 150\nsustained_blocks = 3\nsustained_min_samples = 4\ndaily_loss_cap_usd = -1\nmin_profit_usd = nan\n[risk.min_profit]\ncUSDT = 0\n[risk.ramp]\ngrowth_factor = 1\n[risk.buckets]\na_public_pmm_pct = 60\nb_stabilization_pct = 50\n";
    let text = text.replace("\n[risk]", &format!("{CHAIN_WITH_TOKENS}\n[risk]"));
    let errs = errors(&text);
    for key in [
        "risk.nav_usd",
        "risk.max_slippage_bps",
        "risk.max_gas_price_gwei",
        "risk.exposure_per_token_pct",
        "risk.sustained_min_samples",
        "risk.daily_loss_cap_usd",
        "risk.min_profit_usd",
        "risk.min_profit.cUSDT",
        "risk.ramp.growth_factor",
        "risk.buckets",
    ] {
        assert_eq!(find(&errs, key).kind(), ConfigErrorKind::InvalidValue, "{key}:\n{errs}");
    }
    assert!(find(&errs, "risk.buckets").reason().contains("more than 100%"));
}

#[test]
fn submission_modes_need_their_settings() {
    let relay = MINIMAL.replace("mode = \"public-rpc\"", "mode = \"flashbots-relay\"");
    let errs = errors(&relay);
    assert_eq!(find(&errs, "chains[0].submission.relays").kind(), ConfigErrorKind::Missing);
    assert_eq!(find(&errs, "chains[0].submission.identity").kind(), ConfigErrorKind::Missing);

    let full = relay.replace(
        "mode = \"flashbots-relay\"",
        "mode = \"flashbots-relay\"\nidentity = { key_env = \"RELAY_IDENTITY_KEY\" }\n[[chains.submission.relays]]\nname = \"flashbots\"\nurl = \"https://relay.flashbots.net\"\nbuilders = [\"flashbots\", \"beaverbuild.org\"]\n[[chains.submission.relays]]\nname = \"plain\"\nurl = \"http://relay.example\"",
    );
    let errs = errors(&full);
    assert_eq!(keys(&errs), vec!["chains[0].submission.relays[1].url"], "{errs}");
    assert_eq!(errs.as_slice()[0].kind(), ConfigErrorKind::Unsafe);

    let private = MINIMAL.replace("mode = \"public-rpc\"", "mode = \"private-rpc\"");
    assert_eq!(
        find(&errors(&private), "chains[0].submission.private_rpc_url").kind(),
        ConfigErrorKind::Missing
    );
    let public_with_relay = MINIMAL.replace(
        "mode = \"public-rpc\"",
        "mode = \"public-rpc\"\n[[chains.submission.relays]]\nname = \"x\"\nurl = \"https://relay.example\"",
    );
    assert_eq!(
        find(&errors(&public_with_relay), "chains[0].submission.relays").kind(),
        ConfigErrorKind::InvalidValue
    );
}

#[test]
fn live_mode_requires_signer_and_executor() {
    let text = format!("{MINIMAL}\n[engine]\ndry_run = false\nshadow = true\n");
    let errs = errors(&text);
    assert_eq!(find(&errs, "chains[0].signer").kind(), ConfigErrorKind::Missing);
    assert_eq!(find(&errs, "chains[0].executor").kind(), ConfigErrorKind::Missing);
    assert!(find(&errs, "engine.shadow").reason().contains("dry_run"));
}

#[test]
fn missing_required_keys_and_tables() {
    let errs = errors("[engine]\ndry_run = true\n");
    assert_eq!(find(&errs, "chains").kind(), ConfigErrorKind::Missing);
    assert_eq!(find(&errs, "risk").kind(), ConfigErrorKind::Missing);

    let errs = errors(
        &MINIMAL.replace("ws_url = \"ws://127.0.0.1:8546\"\n", "").replace("nav_usd = 1000000", ""),
    );
    assert_eq!(find(&errs, "chains[0].ws_url").kind(), ConfigErrorKind::Missing);
    assert_eq!(find(&errs, "risk.nav_usd").kind(), ConfigErrorKind::Missing);
    assert_eq!(errs.len(), 2, "{errs}");
}

// ---------------------------------------------------------------------------------------------
// Defaults.

#[test]
fn defaults_are_what_a_desk_expects() {
    let cfg = load(MINIMAL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.engine, EngineConfig::default());
    assert!(cfg.engine.dry_run && !cfg.engine.shadow);
    assert_eq!(cfg.telemetry.metrics_addr.to_string(), "127.0.0.1:9464");
    assert!(!cfg.telemetry.allow_public_metrics);
    assert_eq!(cfg.telemetry.log_format, LogFormat::Text);
    assert_eq!(cfg.telemetry.log_level, "info");
    let chain = &cfg.chains[0];
    assert!(chain.signer.is_none() && chain.executor.is_none());
    assert_eq!(chain.fees, FeePolicy::default());
    assert_eq!(chain.fees.max_fee_wei(), 50_000_000_000);
    let r = &cfg.risk;
    assert_eq!(r, &RiskConfig::with_nav(1_000_000.0));
    assert_eq!(r.exposure_per_token_pct, 25.0);
    assert_eq!(r.ramp.growth_factor, 5.0);
    assert_eq!(r.max_slippage_bps, 30);
    assert_eq!((r.sustained_blocks, r.sustained_min_samples, r.min_blocks), (5, 3, 3));
    assert!((r.buckets.total_pct() - 100.0).abs() < 1e-9);
    let sev = cfg.strategies.depeg.severity;
    assert_eq!(
        (sev.minor_bps, sev.moderate_bps, sev.severe_bps, sev.extreme_bps),
        (5, 20, 100, 500)
    );
    assert_eq!(sev.classify(4), None);
    assert_eq!(sev.classify(5), Some(Severity::Minor));
    assert_eq!(sev.classify(20), Some(Severity::Moderate));
    assert_eq!(sev.classify(101), Some(Severity::Severe));
    assert_eq!(sev.classify(500), Some(Severity::Extreme));
    assert!(cfg.strategies.depeg.enabled && !cfg.strategies.triangle.enabled);
    assert!(cfg.strategies.cross_chain.is_none());
    assert!(
        cfg.summary().contains("chain138 #138 (public-rpc)") && cfg.summary().ends_with("dry-run")
    );
}

#[test]
fn validate_checks_configs_built_in_code() {
    let mut cfg = load(MINIMAL).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.validate().is_ok());
    cfg.chains[0].tokens.push(TokenConfig {
        symbol: "cUSDT".into(),
        address: alloy::primitives::Address::repeat_byte(1),
        decimals: 6,
        usd_price: 1.0,
        balances_in_logs: true,
    });
    cfg.chains[0].venues.push(VenueConfig {
        name: "p".into(),
        kind: VenueKind::DodoDsp,
        address: alloy::primitives::Address::repeat_byte(2),
        base: "cUSDT".into(),
        quote: "USDT".into(),
        trader: None,
        remote_chain: None,
    });
    cfg.chains[0].ws_url = EndpointUrl::new("${NOT_RESOLVED}").expect("template");
    let errs = cfg.validate().expect_err("undeclared USDT and unresolved URL");
    assert_eq!(keys(&errs), vec!["chains[0].ws_url", "chains[0].venues[0].quote"], "{errs}");
    assert!(errs.iter().all(|e| e.file() == "<config>"));
}

#[test]
fn check_config_command_exit_codes() {
    let dir = std::env::temp_dir().join(format!("cantilever-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.toml");
    let bad = dir.join("bad.toml");
    std::fs::write(&good, MINIMAL).expect("write");
    std::fs::write(&bad, format!("{MINIMAL}\nnope = 1\n")).expect("write");
    assert_eq!(check_config_command(&good), ExitCode::SUCCESS);
    assert_eq!(check_config_command(&bad), ExitCode::FAILURE);
    assert_eq!(check_config_command(&dir.join("missing.toml")), ExitCode::FAILURE);
    let errs = check_file(&dir.join("missing.toml")).expect_err("missing");
    assert_eq!(errs.as_slice()[0].kind(), ConfigErrorKind::Io);
    assert!(errs.to_string().contains("missing.toml"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary text never panics the loader, and every error names the file.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        if let Err(errs) = Config::from_toml_str_with_env(&text, "fuzz.toml", &no_env) {
            prop_assert!(!errs.is_empty());
            for e in &errs {
                prop_assert_eq!(e.file(), "fuzz.toml");
            }
        }
    }

    /// TOML-ish fragments (keys, tables, brackets, quotes, numbers) never panic either.
    #[test]
    fn toml_like_fragments_never_panic(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("[[chains]]\n".to_owned()),
                Just("[chains.submission]\n".to_owned()),
                Just("[[chains.venues]]\n".to_owned()),
                Just("[risk]\n".to_owned()),
                Just("[strategies.depeg]\n".to_owned()),
                Just("[[strategies.depeg.pegs]]\n".to_owned()),
                "[a-z_]{1,12} = [0-9-]{1,22}\n",
                "[a-z_]{1,12} = \"[ -~]{0,70}\"\n",
                "[a-z_.]{1,20} = \\[\"[a-zA-Z]{0,6}\", [0-9]{1,3}\\]\n",
                "(name|chain_id|kind|mode|nav_usd|address|base|quote|tokens|ws_url) = \"[a-zA-Z0-9:/.$\\{\\}_-]{0,50}\"\n",
                "[\\[\\]{}=\"'#\n ]{1,6}",
            ],
            0..40,
        )
    ) {
        let text: String = parts.concat();
        let _ = Config::from_toml_str_with_env(&text, "fuzz.toml", &|_: &str| Some("ws://127.0.0.1:1".to_owned()));
    }

    /// Mutations of the shipped default (a line replaced, dropped or duplicated) never panic and
    /// never make an error lose its file name.
    #[test]
    fn mutated_default_never_panics(line in 0usize..200, op in 0u8..3, junk in "[ -~]{0,40}") {
        let mut lines: Vec<String> = DEFAULT_CONFIG_TOML.lines().map(str::to_owned).collect();
        let i = line % lines.len();
        match op {
            0 => lines[i] = junk,
            1 => { lines.remove(i); }
            _ => { let l = lines[i].clone(); lines.insert(i, l); }
        }
        if let Err(errs) = Config::from_toml_str_with_env(&lines.join("\n"), "m.toml", &no_env) {
            for e in &errs {
                prop_assert!(e.to_string().starts_with("m.toml"));
            }
        }
    }
}
