//! Semantic checks on a deserialized [`Config`]: ranges, uniqueness, cross-references and
//! security rules. Each check yields an [`Issue`] at a key path; the loader maps it to a line.

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::Address;
use toml::de::{DeTable, DeValue};

use super::chain::{ChainConfig, SubmissionMode, VenueKind};
use super::error::ConfigErrorKind as Kind;
use super::path::KeyPath;
use super::strategy::{PegReference, VenueRef};
use super::{Config, EndpointUrl};

/// One problem found by the semantic checks.
pub(crate) struct Issue {
    pub(crate) path: KeyPath,
    pub(crate) kind: Kind,
    pub(crate) reason: String,
    /// Another key the reason refers to (the first of two duplicates); the loader renders it
    /// with file indices and its line.
    pub(crate) related: Option<KeyPath>,
}

/// Names declared in the file, read from the raw document. Cross-references are checked against
/// these as well as the typed config, so an entry dropped for a schema error (already reported)
/// does not also produce "undeclared" errors everywhere it is referenced.
#[derive(Default)]
pub(crate) struct Declared {
    chains: BTreeMap<String, DeclaredChain>,
}

#[derive(Default)]
struct DeclaredChain {
    tokens: BTreeSet<String>,
    venues: BTreeSet<String>,
}

impl Declared {
    pub(crate) fn from_doc(doc: &DeTable<'_>) -> Self {
        let mut out = Self::default();
        let Some(DeValue::Array(chains)) = doc.get("chains").map(|v| v.get_ref()) else {
            return out;
        };
        let str_at = |t: &DeTable<'_>, k: &str| match t.get(k).map(|v| v.get_ref()) {
            Some(DeValue::String(s)) => Some(s.to_string()),
            _ => None,
        };
        let names_in = |t: &DeTable<'_>, list: &str, key: &str| -> BTreeSet<String> {
            match t.get(list).map(|v| v.get_ref()) {
                Some(DeValue::Array(items)) => items
                    .iter()
                    .filter_map(|i| match i.get_ref() {
                        DeValue::Table(t) => str_at(t, key),
                        _ => None,
                    })
                    .collect(),
                _ => BTreeSet::new(),
            }
        };
        for chain in chains.iter() {
            let DeValue::Table(t) = chain.get_ref() else { continue };
            let Some(name) = str_at(t, "name") else { continue };
            let entry = out.chains.entry(name).or_default();
            entry.tokens.extend(names_in(t, "tokens", "symbol"));
            entry.venues.extend(names_in(t, "venues", "name"));
        }
        out
    }
}

struct V<'a> {
    cfg: &'a Config,
    declared: Option<&'a Declared>,
    risk_known: bool,
    issues: Vec<Issue>,
}

fn p(root: &str) -> KeyPath {
    KeyPath::root().key(root)
}

impl<'a> V<'a> {
    fn push(&mut self, path: KeyPath, kind: Kind, reason: impl Into<String>) {
        self.issues.push(Issue { path, kind, reason: reason.into(), related: None });
    }

    fn duplicate(&mut self, path: KeyPath, first: KeyPath, reason: impl Into<String>) {
        self.issues.push(Issue {
            path,
            kind: Kind::Duplicate,
            reason: reason.into(),
            related: Some(first),
        });
    }

    fn positive(&mut self, path: KeyPath, v: f64) {
        if !v.is_finite() {
            self.push(path, Kind::InvalidValue, "must be a finite number");
        } else if v <= 0.0 {
            self.push(path, Kind::InvalidValue, format!("must be greater than zero, found {v}"));
        }
    }

    fn at_least(&mut self, path: KeyPath, v: u64, min: u64) {
        if v < min {
            self.push(path, Kind::InvalidValue, format!("must be at least {min}, found {v}"));
        }
    }

    fn pct(&mut self, path: KeyPath, v: f64, allow_zero: bool) {
        let ok = v.is_finite() && v <= 100.0 && if allow_zero { v >= 0.0 } else { v > 0.0 };
        if !ok {
            let range = if allow_zero { "from 0 to 100" } else { "above 0 and at most 100" };
            self.push(path, Kind::InvalidValue, format!("must be a percentage {range}, found {v}"));
        }
    }

    fn nonzero_address(&mut self, path: KeyPath, a: &Address) {
        if a.is_zero() {
            self.push(path, Kind::InvalidValue, "the zero address is not a contract");
        }
    }

    fn chain(&self, name: &str) -> Option<&'a ChainConfig> {
        self.cfg.chains.iter().find(|c| c.name == name)
    }

    fn chain_declared(&self, name: &str) -> bool {
        self.chain(name).is_some() || self.declared.is_some_and(|d| d.chains.contains_key(name))
    }

    fn token_declared(&self, chain: &str, symbol: &str) -> bool {
        self.chain(chain).is_some_and(|c| c.token(symbol).is_some())
            || self
                .declared
                .and_then(|d| d.chains.get(chain))
                .is_some_and(|c| c.tokens.contains(symbol))
    }

    fn token_declared_anywhere(&self, symbol: &str) -> bool {
        self.cfg.chains.iter().any(|c| c.token(symbol).is_some())
            || self.declared.is_some_and(|d| d.chains.values().any(|c| c.tokens.contains(symbol)))
    }

    /// `Some(Some(kind))` for a typed venue, `Some(None)` for one only seen in the raw file,
    /// `None` when undeclared.
    fn venue(&self, chain: &str, name: &str) -> Option<Option<VenueKind>> {
        if let Some(v) = self.chain(chain).and_then(|c| c.venue(name)) {
            return Some(Some(v.kind));
        }
        self.declared
            .and_then(|d| d.chains.get(chain))
            .is_some_and(|c| c.venues.contains(name))
            .then_some(None)
    }

    /// Checks `chain` names a declared chain; returns whether it does.
    fn check_chain_ref(&mut self, path: KeyPath, chain: &str) -> bool {
        if self.chain_declared(chain) {
            return true;
        }
        self.push(
            path,
            Kind::CrossReference,
            format!("chain `{chain}` is not declared in [[chains]]"),
        );
        false
    }

    fn check_token_ref(&mut self, path: KeyPath, chain: &str, symbol: &str) {
        if !self.token_declared(chain, symbol) {
            self.push(
                path,
                Kind::CrossReference,
                format!("token `{symbol}` is not declared in the tokens of chain `{chain}`"),
            );
        }
    }

    fn check_venue_ref(
        &mut self,
        path: &KeyPath,
        r: &VenueRef,
        want: fn(VenueKind) -> bool,
        what: &str,
    ) {
        if !self.check_chain_ref(path.key("chain"), &r.chain) {
            return;
        }
        match self.venue(&r.chain, &r.venue) {
            None => self.push(
                path.key("venue"),
                Kind::CrossReference,
                format!("venue `{}` is not declared on chain `{}`", r.venue, r.chain),
            ),
            Some(Some(kind)) if !want(kind) => self.push(
                path.key("venue"),
                Kind::CrossReference,
                format!("venue `{}` is a {kind}, not {what}", r.venue),
            ),
            Some(_) => {}
        }
    }

    fn name(&mut self, path: KeyPath, name: &str, what: &str, extra: &[char]) {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || extra.contains(&c));
        if !ok {
            let extra: String = extra.iter().map(|c| format!(" `{c}`")).collect();
            self.push(
                path,
                Kind::InvalidValue,
                format!("{what} must be 1-64 characters: letters, digits, `-`, `_`{extra}"),
            );
        }
    }

    fn url(
        &mut self,
        path: KeyPath,
        url: &EndpointUrl,
        schemes: &[&str],
        plain_only_on_loopback: bool,
    ) {
        if !url.is_resolved() {
            return; // reported as an environment error
        }
        let scheme = url.scheme();
        let ok = scheme.as_deref().is_some_and(|s| schemes.contains(&s)) && url.host().is_some();
        if !ok {
            let list = schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ");
            self.push(path, Kind::InvalidValue, format!("expected a {list} URL with a host"));
            return;
        }
        if plain_only_on_loopback && scheme.as_deref() == Some("http") && !url.is_loopback() {
            self.push(
                path,
                Kind::Unsafe,
                "relays must use https:// (plain http:// only on loopback): bundles and signatures would travel in clear",
            );
        }
    }
}

/// Runs every semantic check. `declared` widens cross-references to names seen in the raw file;
/// `risk_known` is false when `[risk]` itself was missing or broken (checks against it are skipped).
pub(crate) fn validate(cfg: &Config, declared: Option<&Declared>, risk_known: bool) -> Vec<Issue> {
    let mut v = V { cfg, declared, risk_known, issues: Vec::new() };
    engine(&mut v);
    telemetry(&mut v);
    chains(&mut v);
    strategies(&mut v);
    if v.risk_known {
        risk(&mut v);
    }
    v.issues
}

fn engine(v: &mut V<'_>) {
    let e = &v.cfg.engine;
    if e.ledger_path.as_os_str().is_empty() {
        v.push(p("engine").key("ledger_path"), Kind::InvalidValue, "empty path");
    }
    if e.halt_file.as_os_str().is_empty() {
        v.push(p("engine").key("halt_file"), Kind::InvalidValue, "empty path");
    }
    if !e.ledger_path.as_os_str().is_empty() && e.ledger_path == e.halt_file {
        v.push(
            p("engine").key("halt_file"),
            Kind::InvalidValue,
            "the halt file must not be the ledger",
        );
    }
    if e.shadow && !e.dry_run {
        v.push(
            p("engine").key("shadow"),
            Kind::InvalidValue,
            "shadow mode submits nothing and needs `dry_run = true`",
        );
    }
}

fn telemetry(v: &mut V<'_>) {
    let t = &v.cfg.telemetry;
    if !t.metrics_addr.ip().is_loopback() && !t.allow_public_metrics {
        v.push(
            p("telemetry").key("metrics_addr"),
            Kind::Unsafe,
            format!(
                "metrics and health must bind to loopback (127.0.0.1 or [::1]), found {}; set `allow_public_metrics = true` to override",
                t.metrics_addr.ip()
            ),
        );
    }
    let level = t.log_level.trim();
    if level.is_empty() || tracing_subscriber::EnvFilter::builder().parse(level).is_err() {
        v.push(
            p("telemetry").key("log_level"),
            Kind::InvalidValue,
            "not a tracing filter; use a level (error, warn, info, debug, trace) or directives such as `info,cantilever::sim=debug`",
        );
    }
}

fn chains(v: &mut V<'_>) {
    let cfg = v.cfg;
    if cfg.chains.is_empty() && v.declared.is_none_or(|d| d.chains.is_empty()) {
        v.push(p("chains"), Kind::Missing, "at least one [[chains]] entry is required");
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ids: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, c) in cfg.chains.iter().enumerate() {
        let at = p("chains").index(i);
        v.name(at.key("name"), &c.name, "a chain name", &[]);
        if let Some(j) = names.insert(&c.name, i) {
            v.duplicate(
                at.key("name"),
                p("chains").index(j).key("name"),
                format!("chain name `{}` is used twice", c.name),
            );
            names.insert(&cfg.chains[j].name, j);
        }
        if c.chain_id == 0 {
            v.push(at.key("chain_id"), Kind::InvalidValue, "chain id 0 is not a chain");
        } else if let Some(j) = ids.insert(c.chain_id, i) {
            v.duplicate(
                at.key("chain_id"),
                p("chains").index(j).key("chain_id"),
                format!(
                    "chain id {} is already used by chain `{}`",
                    c.chain_id, cfg.chains[j].name
                ),
            );
            ids.insert(c.chain_id, j);
        }
        v.url(at.key("ws_url"), &c.ws_url, &["ws", "wss"], false);
        v.url(at.key("http_url"), &c.http_url, &["http", "https"], false);
        if c.block_time_ms == 0 || c.block_time_ms > 600_000 {
            v.push(
                at.key("block_time_ms"),
                Kind::InvalidValue,
                format!("must be from 1 to 600000 ms, found {}", c.block_time_ms),
            );
        }
        submission(v, &at, c);
        if !cfg.engine.dry_run {
            if c.signer.is_none() {
                v.push(
                    at.key("signer"),
                    Kind::Missing,
                    "a signer is required when `engine.dry_run = false`",
                );
            }
            if c.executor.is_none() {
                v.push(
                    at.key("executor"),
                    Kind::Missing,
                    "the executor address is required when `engine.dry_run = false`",
                );
            }
        }
        if let Some(e) = &c.executor {
            v.nonzero_address(at.key("executor"), e);
        }
        fees(v, &at, c);
        tokens(v, &at, c);
        venues(v, &at, c);
        lenders(v, &at, c);
    }
}

fn submission(v: &mut V<'_>, at: &KeyPath, c: &ChainConfig) {
    let s = &c.submission;
    let sp = at.key("submission");
    let relay_mode = s.mode == SubmissionMode::FlashbotsRelay;
    match (s.mode, &s.private_rpc_url) {
        (SubmissionMode::PrivateRpc, None) => {
            v.push(sp.key("private_rpc_url"), Kind::Missing, "required for mode = \"private-rpc\"")
        }
        (SubmissionMode::PrivateRpc, Some(url)) => {
            v.url(sp.key("private_rpc_url"), url, &["http", "https"], false)
        }
        (_, Some(_)) => v.push(
            sp.key("private_rpc_url"),
            Kind::InvalidValue,
            format!("only used with mode = \"private-rpc\", not \"{}\"", s.mode),
        ),
        (_, None) => {}
    }
    if relay_mode && s.relays.is_empty() {
        v.push(
            sp.key("relays"),
            Kind::Missing,
            "mode = \"flashbots-relay\" needs at least one [[chains.submission.relays]]",
        );
    }
    if !relay_mode && !s.relays.is_empty() {
        v.push(
            sp.key("relays"),
            Kind::InvalidValue,
            format!("relays are only used with mode = \"flashbots-relay\", not \"{}\"", s.mode),
        );
    }
    match (&s.identity, relay_mode) {
        (None, true) => v.push(
            sp.key("identity"),
            Kind::Missing,
            "mode = \"flashbots-relay\" needs a relay identity key reference (a fundless key that signs X-Flashbots-Signature)",
        ),
        (Some(_), false) => v.push(
            sp.key("identity"),
            Kind::InvalidValue,
            format!("the relay identity is only used with mode = \"flashbots-relay\", not \"{}\"", s.mode),
        ),
        (Some(id), true) if c.signer.as_ref() == Some(id) => v.push(
            sp.key("identity"),
            Kind::Unsafe,
            "the relay identity must be a separate, fundless key, not the executor signer",
        ),
        _ => {}
    }
    let mut seen = BTreeMap::new();
    for (j, r) in s.relays.iter().enumerate() {
        let rp = sp.key("relays").index(j);
        v.name(rp.key("name"), &r.name, "a relay name", &['.']);
        if let Some(&k) = seen.get(r.name.as_str()) {
            v.duplicate(
                rp.key("name"),
                sp.key("relays").index(k).key("name"),
                format!("relay name `{}` is used twice", r.name),
            );
        } else {
            seen.insert(r.name.as_str(), j);
        }
        v.url(rp.key("url"), &r.url, &["http", "https"], true);
        for (k, b) in r.builders.iter().enumerate() {
            if b.trim().is_empty() || b.len() > 64 {
                v.push(
                    rp.key("builders").index(k),
                    Kind::InvalidValue,
                    "a builder name must be 1-64 characters",
                );
            }
        }
    }
}

fn fees(v: &mut V<'_>, at: &KeyPath, c: &ChainConfig) {
    let f = &c.fees;
    let fp = at.key("fees");
    v.positive(fp.key("max_fee_gwei"), f.max_fee_gwei);
    v.positive(fp.key("native_usd"), f.native_usd);
    if !f.priority_fee_gwei.is_finite() || f.priority_fee_gwei < 0.0 {
        v.push(
            fp.key("priority_fee_gwei"),
            Kind::InvalidValue,
            format!("must be zero or more, found {}", f.priority_fee_gwei),
        );
    } else if f.max_fee_gwei.is_finite() && f.priority_fee_gwei > f.max_fee_gwei {
        v.push(
            fp.key("priority_fee_gwei"),
            Kind::InvalidValue,
            format!(
                "priority fee {} gwei exceeds max_fee_gwei {}",
                f.priority_fee_gwei, f.max_fee_gwei
            ),
        );
    }
    if f.tip_share_bps > 10_000 {
        v.push(
            fp.key("tip_share_bps"),
            Kind::InvalidValue,
            format!("must be from 0 to 10000 bps, found {}", f.tip_share_bps),
        );
    }
    let cap = v.cfg.risk.max_gas_price_gwei;
    if v.risk_known && cap.is_finite() && f.max_fee_gwei.is_finite() && f.max_fee_gwei > cap {
        v.push(
            fp.key("max_fee_gwei"),
            Kind::InvalidValue,
            format!("{} gwei exceeds risk.max_gas_price_gwei ({cap})", f.max_fee_gwei),
        );
    }
}

fn tokens(v: &mut V<'_>, at: &KeyPath, c: &ChainConfig) {
    let mut symbols = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for (j, t) in c.tokens.iter().enumerate() {
        let tp = at.key("tokens").index(j);
        let ok = !t.symbol.is_empty()
            && t.symbol.len() <= 32
            && t.symbol.chars().all(|ch| ch.is_ascii_graphic());
        if !ok {
            v.push(
                tp.key("symbol"),
                Kind::InvalidValue,
                "a symbol must be 1-32 printable characters without spaces",
            );
        }
        if let Some(&k) = symbols.get(t.symbol.as_str()) {
            v.duplicate(
                tp.key("symbol"),
                at.key("tokens").index(k).key("symbol"),
                format!("symbol `{}` is declared twice on this chain", t.symbol),
            );
        } else {
            symbols.insert(t.symbol.as_str(), j);
        }
        v.nonzero_address(tp.key("address"), &t.address);
        if let Some(&k) = addrs.get(&t.address) {
            v.duplicate(
                tp.key("address"),
                at.key("tokens").index(k).key("address"),
                format!("address is already declared for token `{}`", c.tokens[k].symbol),
            );
        } else {
            addrs.insert(t.address, j);
        }
        v.positive(tp.key("usd_price"), t.usd_price);
        if t.decimals > 36 {
            v.push(
                tp.key("decimals"),
                Kind::InvalidValue,
                format!("must be from 0 to 36, found {}", t.decimals),
            );
        }
    }
}

fn venues(v: &mut V<'_>, at: &KeyPath, c: &ChainConfig) {
    let mut names = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for (j, ven) in c.venues.iter().enumerate() {
        let vp = at.key("venues").index(j);
        v.name(vp.key("name"), &ven.name, "a venue name", &['/', '.']);
        if let Some(&k) = names.get(ven.name.as_str()) {
            v.duplicate(
                vp.key("name"),
                at.key("venues").index(k).key("name"),
                format!("venue name `{}` is used twice on this chain", ven.name),
            );
        } else {
            names.insert(ven.name.as_str(), j);
        }
        v.nonzero_address(vp.key("address"), &ven.address);
        if let Some(&k) = addrs.get(&ven.address) {
            v.duplicate(
                vp.key("address"),
                at.key("venues").index(k).key("address"),
                format!("address is already used by venue `{}`", c.venues[k].name),
            );
        } else {
            addrs.insert(ven.address, j);
        }
        v.check_token_ref(vp.key("base"), &c.name, &ven.base);
        let bridge = ven.kind == VenueKind::Bridge;
        match (&ven.remote_chain, bridge) {
            (None, true) => v.push(
                vp.key("remote_chain"),
                Kind::Missing,
                "a bridge needs `remote_chain`, the chain it releases on",
            ),
            (Some(remote), true) => {
                if remote == &c.name {
                    v.push(
                        vp.key("remote_chain"),
                        Kind::InvalidValue,
                        "a bridge releases on another chain, not its own",
                    );
                } else if v.check_chain_ref(vp.key("remote_chain"), remote) {
                    v.check_token_ref(vp.key("quote"), remote, &ven.quote);
                }
            }
            (Some(_), false) => v.push(
                vp.key("remote_chain"),
                Kind::InvalidValue,
                format!("`remote_chain` is only for kind = \"bridge\", not \"{}\"", ven.kind),
            ),
            (None, false) => {
                v.check_token_ref(vp.key("quote"), &c.name, &ven.quote);
                if ven.base == ven.quote {
                    v.push(
                        vp.key("quote"),
                        Kind::InvalidValue,
                        "base and quote are the same token",
                    );
                }
            }
        }
        if let Some(trader) = &ven.trader {
            if !ven.kind.is_dodo() {
                v.push(
                    vp.key("trader"),
                    Kind::InvalidValue,
                    format!("`trader` is only for DODO pools, not \"{}\"", ven.kind),
                );
            } else {
                v.nonzero_address(vp.key("trader"), trader);
            }
        }
    }
}

fn lenders(v: &mut V<'_>, at: &KeyPath, c: &ChainConfig) {
    for (j, l) in c.flash_lenders.iter().enumerate() {
        let lp = at.key("flash_lenders").index(j);
        v.nonzero_address(lp.key("address"), &l.address);
        if l.tokens.is_empty() {
            v.push(lp.key("tokens"), Kind::Missing, "a flash lender must list at least one token");
        }
        let mut seen = BTreeSet::new();
        for (k, t) in l.tokens.iter().enumerate() {
            if !seen.insert(t.as_str()) {
                v.push(
                    lp.key("tokens").index(k),
                    Kind::Duplicate,
                    format!("token `{t}` is listed twice"),
                );
            } else {
                v.check_token_ref(lp.key("tokens").index(k), &c.name, t);
            }
        }
    }
}

fn strategies(v: &mut V<'_>) {
    let s = &v.cfg.strategies;
    let sp = p("strategies");

    // Depeg.
    let dp = sp.key("depeg");
    let sev = &s.depeg.severity;
    let bands = [
        ("minor_bps", sev.minor_bps),
        ("moderate_bps", sev.moderate_bps),
        ("severe_bps", sev.severe_bps),
        ("extreme_bps", sev.extreme_bps),
    ];
    if sev.minor_bps == 0 {
        v.push(
            dp.key("severity").key("minor_bps"),
            Kind::InvalidValue,
            "must be greater than zero",
        );
    }
    for w in bands.windows(2) {
        if w[1].1 <= w[0].1 {
            v.push(
                dp.key("severity").key(w[1].0),
                Kind::InvalidValue,
                format!(
                    "severity bands must increase: {} ({}) must exceed {} ({})",
                    w[1].0, w[1].1, w[0].0, w[0].1
                ),
            );
        }
    }
    if sev.extreme_bps > 10_000 {
        v.push(
            dp.key("severity").key("extreme_bps"),
            Kind::InvalidValue,
            "must be at most 10000 bps (100%)",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, peg) in s.depeg.pegs.iter().enumerate() {
        let pp = dp.key("pegs").index(i);
        if !seen.insert((peg.chain.as_str(), peg.token.as_str())) {
            v.push(
                pp.key("token"),
                Kind::Duplicate,
                format!("peg for `{}` on `{}` is declared twice", peg.token, peg.chain),
            );
        }
        if v.check_chain_ref(pp.key("chain"), &peg.chain) {
            v.check_token_ref(pp.key("token"), &peg.chain, &peg.token);
            v.check_token_ref(pp.key("peg_token"), &peg.chain, &peg.peg_token);
        }
        if peg.token == peg.peg_token {
            v.push(pp.key("peg_token"), Kind::InvalidValue, "a token cannot be pegged to itself");
        }
        match (peg.reference, &peg.vault) {
            (PegReference::Vault, None) => v.push(
                pp.key("vault"),
                Kind::Missing,
                "reference = \"vault\" needs `vault`, the vault venue's name",
            ),
            (PegReference::Vault, Some(name)) => {
                let r = VenueRef { chain: peg.chain.clone(), venue: name.clone() };
                if v.chain_declared(&peg.chain) {
                    match v.venue(&r.chain, &r.venue) {
                        None => v.push(
                            pp.key("vault"),
                            Kind::CrossReference,
                            format!("venue `{name}` is not declared on chain `{}`", peg.chain),
                        ),
                        Some(Some(kind)) if kind != VenueKind::Vault => v.push(
                            pp.key("vault"),
                            Kind::CrossReference,
                            format!("venue `{name}` is a {kind}, not a vault"),
                        ),
                        Some(_) => {}
                    }
                }
            }
            (_, Some(_)) => v.push(
                pp.key("vault"),
                Kind::InvalidValue,
                "`vault` is only used with reference = \"vault\"",
            ),
            (_, None) => {}
        }
        match (peg.reference, &peg.oracle) {
            (PegReference::Oracle, None) => v.push(
                pp.key("oracle"),
                Kind::Missing,
                "reference = \"oracle\" needs `oracle`, the price feed address",
            ),
            (PegReference::Oracle, Some(a)) => v.nonzero_address(pp.key("oracle"), a),
            (_, Some(_)) => v.push(
                pp.key("oracle"),
                Kind::InvalidValue,
                "`oracle` is only used with reference = \"oracle\"",
            ),
            (_, None) => {}
        }
    }

    // Triangle.
    let tp = sp.key("triangle");
    let t = &s.triangle;
    if t.enabled && t.chain.is_none() {
        v.push(tp.key("chain"), Kind::Missing, "an enabled triangle needs `chain`");
    }
    if t.enabled && t.tokens.len() < 2 {
        v.push(
            tp.key("tokens"),
            Kind::InvalidValue,
            "a triangle needs at least two tokens besides the anchor",
        );
    }
    if let Some(chain) = &t.chain
        && v.check_chain_ref(tp.key("chain"), chain)
    {
        v.check_token_ref(tp.key("anchor"), chain, &t.anchor);
        let mut seen = BTreeSet::new();
        for (i, tok) in t.tokens.iter().enumerate() {
            if tok == &t.anchor {
                v.push(
                    tp.key("tokens").index(i),
                    Kind::InvalidValue,
                    "the anchor is not one of the anchored tokens",
                );
            } else if !seen.insert(tok.as_str()) {
                v.push(
                    tp.key("tokens").index(i),
                    Kind::Duplicate,
                    format!("token `{tok}` is listed twice"),
                );
            } else {
                v.check_token_ref(tp.key("tokens").index(i), chain, tok);
            }
        }
    }

    // Stabilizer.
    let st = &s.stabilizer;
    let stp = sp.key("stabilizer");
    if st.theta_bps == 0 || st.theta_bps > 10_000 {
        v.push(
            stp.key("theta_bps"),
            Kind::InvalidValue,
            format!("must be from 1 to 10000 bps, found {}", st.theta_bps),
        );
    }
    v.positive(stp.key("k"), st.k);
    v.positive(stp.key("per_block_cap_usd"), st.per_block_cap_usd);
    v.at_least(stp.key("min_blocks"), st.min_blocks.into(), 1);
    if v.risk_known {
        let risk = &v.cfg.risk;
        if st.per_block_cap_usd.is_finite() && st.per_block_cap_usd > risk.per_block_volume_cap_usd
        {
            v.push(
                stp.key("per_block_cap_usd"),
                Kind::InvalidValue,
                format!(
                    "{} exceeds risk.per_block_volume_cap_usd ({})",
                    st.per_block_cap_usd, risk.per_block_volume_cap_usd
                ),
            );
        }
        if st.min_blocks < risk.min_blocks {
            v.push(
                stp.key("min_blocks"),
                Kind::InvalidValue,
                format!("{} is below risk.min_blocks ({}); a strategy cannot be looser than the desk limit", st.min_blocks, risk.min_blocks),
            );
        }
    }
    for (i, r) in st.pools.iter().enumerate() {
        v.check_venue_ref(&stp.key("pools").index(i), r, VenueKind::is_dodo, "a DODO pool");
    }

    // Backrun.
    let b = &s.backrun;
    let bp = sp.key("backrun");
    v.at_least(bp.key("max_pending_age_ms"), b.max_pending_age_ms, 1);
    v.at_least(bp.key("max_pending_per_block"), b.max_pending_per_block.into(), 1);
    if b.enabled
        && b.bundle_only
        && !v.cfg.chains.iter().any(|c| c.submission.mode == SubmissionMode::FlashbotsRelay)
    {
        v.push(
            bp.key("bundle_only"),
            Kind::InvalidValue,
            "backrun is enabled with bundle_only = true but no chain uses mode = \"flashbots-relay\"; it would never act",
        );
    }

    // Cross-chain.
    if let Some(x) = &s.cross_chain {
        let xp = sp.key("cross_chain");
        if x.enabled && x.chains.len() != 2 {
            v.push(
                xp.key("chains"),
                Kind::InvalidValue,
                format!("needs exactly two chains, found {}", x.chains.len()),
            );
        }
        if x.chains.len() == 2 && x.chains[0] == x.chains[1] {
            v.push(xp.key("chains").index(1), Kind::Duplicate, "the two chains must differ");
        }
        for (i, c) in x.chains.iter().enumerate() {
            v.check_chain_ref(xp.key("chains").index(i), c);
        }
        if x.min_spread_bps == 0 || x.min_spread_bps > 10_000 {
            v.push(
                xp.key("min_spread_bps"),
                Kind::InvalidValue,
                format!("must be from 1 to 10000 bps, found {}", x.min_spread_bps),
            );
        }
        for (key, bps) in
            [("risk_margin_bps", x.risk_margin_bps), ("unwind_max_loss_bps", x.unwind_max_loss_bps)]
        {
            if bps > 10_000 {
                v.push(
                    xp.key(key),
                    Kind::InvalidValue,
                    format!("must be at most 10000 bps, found {bps}"),
                );
            }
        }
        v.pct(xp.key("skew_threshold_pct"), x.skew_threshold_pct, false);
        v.positive(xp.key("max_in_flight_usd"), x.max_in_flight_usd);
        v.at_least(xp.key("bridge_latency_secs"), x.bridge_latency_secs, 1);
        let mut seen = BTreeSet::new();
        for (i, inv) in x.inventory.iter().enumerate() {
            let ip = xp.key("inventory").index(i);
            if !seen.insert((inv.chain.as_str(), inv.token.as_str())) {
                v.push(
                    ip.key("token"),
                    Kind::Duplicate,
                    format!("inventory for `{}` on `{}` is declared twice", inv.token, inv.chain),
                );
            }
            if v.check_chain_ref(ip.key("chain"), &inv.chain) {
                if !x.chains.is_empty() && !x.chains.contains(&inv.chain) {
                    v.push(
                        ip.key("chain"),
                        Kind::CrossReference,
                        format!("chain `{}` is not one of cross_chain.chains", inv.chain),
                    );
                }
                v.check_token_ref(ip.key("token"), &inv.chain, &inv.token);
            }
            v.positive(ip.key("target_usd"), inv.target_usd);
        }
        if let Some(r) = &x.bridge {
            v.check_venue_ref(&xp.key("bridge"), r, |k| k == VenueKind::Bridge, "a bridge");
        }
        cross_chain_assets(v, x, &xp);
    }
}

/// `[strategies.cross_chain.assets]`: each entry renames a symbol declared on one of the two
/// chains to one declared on the other, and never onto a symbol its own chain also declares.
fn cross_chain_assets(v: &mut V<'_>, x: &crate::config::CrossChainConfig, xp: &KeyPath) {
    let declared = |chain: &str, sym: &str| {
        v.cfg.chain(chain).is_some_and(|c| c.tokens.iter().any(|t| t.symbol == sym))
    };
    let mut problems = Vec::new();
    for (local, canonical) in &x.assets {
        let ap = xp.key("assets").key(local);
        let Some(own) = x.chains.iter().position(|c| declared(c, local)) else {
            problems.push((
                ap,
                Kind::CrossReference,
                format!("`{local}` is not a token symbol on {}", x.chains.join(" or ")),
            ));
            continue;
        };
        if local == canonical {
            problems.push((ap, Kind::InvalidValue, "renames a symbol to itself".to_owned()));
            continue;
        }
        let other = x.chains.get(1 - own.min(1)).map(String::as_str).unwrap_or_default();
        if declared(&x.chains[own], canonical) {
            problems.push((
                ap,
                Kind::Duplicate,
                format!(
                    "`{canonical}` is also declared on `{}`: two tokens would share a name",
                    x.chains[own]
                ),
            ));
        } else if !declared(other, canonical) {
            problems.push((
                ap,
                Kind::CrossReference,
                format!("`{canonical}` is not a token symbol on `{other}`"),
            ));
        }
    }
    for (path, kind, msg) in problems {
        v.push(path, kind, msg);
    }
}

fn risk(v: &mut V<'_>) {
    let r = &v.cfg.risk;
    let rp = p("risk");
    v.positive(rp.key("nav_usd"), r.nav_usd);
    if r.max_slippage_bps == 0 || r.max_slippage_bps > 10_000 {
        v.push(
            rp.key("max_slippage_bps"),
            Kind::InvalidValue,
            format!("must be from 1 to 10000 bps, found {}", r.max_slippage_bps),
        );
    }
    for (symbol, amount) in &r.min_profit {
        let mp = rp.key("min_profit").key(symbol);
        if !v.token_declared_anywhere(symbol) {
            v.push(
                mp.clone(),
                Kind::CrossReference,
                format!("token `{symbol}` is not declared on any chain"),
            );
        }
        if amount.0.is_zero() {
            v.push(
                mp,
                Kind::InvalidValue,
                "a minimum profit of zero accepts break-even routes; must be greater than zero",
            );
        }
    }
    v.positive(rp.key("min_profit_usd"), r.min_profit_usd);
    v.positive(rp.key("max_gas_price_gwei"), r.max_gas_price_gwei);
    v.pct(rp.key("exposure_per_token_pct"), r.exposure_per_token_pct, false);
    let bp = rp.key("buckets");
    for (key, value) in r.buckets.as_array() {
        v.pct(bp.key(key), value, true);
    }
    let total = r.buckets.total_pct();
    if total.is_finite() && total > 100.0 + 1e-9 {
        v.push(
            bp,
            Kind::InvalidValue,
            format!("capital buckets A-E sum to {total}% of NAV, more than 100%"),
        );
    }
    v.positive(rp.key("max_notional_per_route_usd"), r.max_notional_per_route_usd);
    v.positive(rp.key("daily_loss_cap_usd"), r.daily_loss_cap_usd);
    if r.nav_usd.is_finite()
        && r.daily_loss_cap_usd.is_finite()
        && r.daily_loss_cap_usd > r.nav_usd
        && r.nav_usd > 0.0
    {
        v.push(
            rp.key("daily_loss_cap_usd"),
            Kind::InvalidValue,
            format!(
                "{} exceeds nav_usd ({}); the cap would never trip",
                r.daily_loss_cap_usd, r.nav_usd
            ),
        );
    }
    v.at_least(
        rp.key("pause_after_consecutive_failures"),
        r.pause_after_consecutive_failures.into(),
        1,
    );
    v.at_least(rp.key("sustained_blocks"), r.sustained_blocks.into(), 1);
    if r.sustained_min_samples == 0 || r.sustained_min_samples > r.sustained_blocks {
        v.push(
            rp.key("sustained_min_samples"),
            Kind::InvalidValue,
            format!(
                "m must be from 1 to sustained_blocks ({}), found {}",
                r.sustained_blocks, r.sustained_min_samples
            ),
        );
    }
    v.at_least(rp.key("min_blocks"), r.min_blocks.into(), 1);
    v.positive(rp.key("per_block_volume_cap_usd"), r.per_block_volume_cap_usd);
    let ramp = rp.key("ramp");
    v.positive(ramp.key("initial_notional_usd"), r.ramp.initial_notional_usd);
    if r.ramp.initial_notional_usd.is_finite()
        && r.max_notional_per_route_usd.is_finite()
        && r.ramp.initial_notional_usd > r.max_notional_per_route_usd
    {
        v.push(
            ramp.key("initial_notional_usd"),
            Kind::InvalidValue,
            format!(
                "{} exceeds max_notional_per_route_usd ({})",
                r.ramp.initial_notional_usd, r.max_notional_per_route_usd
            ),
        );
    }
    if !r.ramp.growth_factor.is_finite() || r.ramp.growth_factor <= 1.0 {
        v.push(
            ramp.key("growth_factor"),
            Kind::InvalidValue,
            format!("must be greater than 1, found {}", r.ramp.growth_factor),
        );
    }
    v.at_least(ramp.key("clean_fills_to_grow"), r.ramp.clean_fills_to_grow.into(), 1);
}
