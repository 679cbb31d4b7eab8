//! Secrets: how the configuration refers to them, and the scan that refuses them in the file.
//!
//! Keys and passwords never live in the TOML. The file holds references only:
//! - [`EnvVarName`]: the *name* of an environment variable (`key_env = "CANTILEVER_SIGNER_KEY"`);
//! - a keystore path plus the name of the variable holding its password (see
//!   [`SignerRef`](super::SignerRef));
//! - `${VAR}` references inside URL fields ([`EndpointUrl`]), resolved at load, because RPC and
//!   relay URLs often embed API keys.
//!
//! Before anything else is reported, the raw document is scanned. A value that looks like a
//! private key (64 hex digits, with or without `0x`), a BIP-39 mnemonic (12/15/18/21/24 lowercase
//! words), a literal under a key named like a secret (`private_key`, `password`, `mnemonic`, …), a
//! URL with a literal credential (user-info password, API-key query parameter or path segment), or
//! a literal where an `_env` name belongs, is reported as a [`Secret`](super::ConfigErrorKind::Secret)
//! error naming the file, key and line, and removed from the document before any other check runs,
//! so no later message can echo it. Neither the value nor any part of it appears in any error.

use std::fmt;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::path::{KeyPath, LineIndex};

/// The reason text of every secret finding; the detail in parentheses says what was detected.
pub(crate) const SECRET_REASON: &str =
    "looks like a secret pasted into the file; reference it by environment variable or keystore";

/// The name of an environment variable that holds a secret (`UPPER_SNAKE_CASE`, at most 128
/// characters). Only the name is in the file; the value is read by the component that needs it,
/// at the moment it needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct EnvVarName(String);

impl EnvVarName {
    /// Checks `name` is an environment variable name in `UPPER_SNAKE_CASE`.
    pub fn new(name: &str) -> Option<Self> {
        is_env_var_name(name).then(|| Self(name.to_owned()))
    }

    /// The variable name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reads the variable from the process environment; `None` when unset, empty or not UTF-8.
    pub fn read(&self) -> Option<String> {
        std::env::var(&self.0).ok().filter(|v| !v.is_empty())
    }
}

impl TryFrom<String> for EnvVarName {
    type Error = &'static str;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        if is_env_var_name(&name) {
            Ok(Self(name))
        } else {
            Err(
                "not an environment variable name; use UPPER_SNAKE_CASE, e.g. CANTILEVER_SIGNER_KEY",
            )
        }
    }
}

impl fmt::Display for EnvVarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `s` is `[A-Z_][A-Z0-9_]*`, 1–128 characters.
pub(crate) fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && s.len() <= 128
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// An invalid [`EndpointUrl`] template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidEndpoint(&'static str);

impl fmt::Display for InvalidEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidEndpoint {}

/// An RPC, WebSocket or relay URL that may embed an API key.
///
/// Written in the file as a literal (`ws://127.0.0.1:8546`) or with `${VAR}` references
/// (`"${CHAIN138_WS_URL}"`, `"https://rpc.example/v2/${RPC_KEY}"`), resolved from the environment
/// at load. `Display` and `Debug` show only `scheme://host[:port]` (plus `/…` when a path or query
/// was cut off), never user-info, path or query; the full URL is available only through
/// [`expose_secret`](Self::expose_secret), for the transport.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct EndpointUrl {
    template: String,
    value: String,
    resolved: bool,
}

/// One piece of a URL template.
enum Part<'a> {
    Lit(&'a str),
    Var(&'a str),
}

/// Splits a template into literal text and `${VAR}` references.
fn parse_template(s: &str) -> Result<Vec<Part<'_>>, InvalidEndpoint> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            parts.push(Part::Lit(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(InvalidEndpoint("unterminated `${` reference; write `${VAR_NAME}`"));
        };
        let name = &after[..end];
        if !is_env_var_name(name) {
            return Err(InvalidEndpoint(
                "a `${...}` reference must name an environment variable in UPPER_SNAKE_CASE",
            ));
        }
        parts.push(Part::Var(name));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest));
    }
    Ok(parts)
}

impl EndpointUrl {
    /// Builds an endpoint from a literal URL or a `${VAR}` template (resolve it before use).
    ///
    /// # Errors
    /// Empty, longer than 2048 bytes, or a malformed `${...}` reference.
    pub fn new(template: impl Into<String>) -> Result<Self, InvalidEndpoint> {
        let template = template.into();
        if template.trim().is_empty() {
            return Err(InvalidEndpoint("empty URL"));
        }
        if template.len() > 2048 {
            return Err(InvalidEndpoint("URL longer than 2048 bytes"));
        }
        let parts = parse_template(&template)?;
        let resolved = parts.iter().all(|p| matches!(p, Part::Lit(_)));
        Ok(Self { value: template.clone(), template, resolved })
    }

    /// The names of the environment variables the template references, in order.
    pub fn env_vars(&self) -> Vec<&str> {
        parse_template(&self.template)
            .map(|parts| {
                parts
                    .into_iter()
                    .filter_map(|p| match p {
                        Part::Var(v) => Some(v),
                        Part::Lit(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether every `${VAR}` reference has been replaced by its value.
    pub fn is_resolved(&self) -> bool {
        self.resolved
    }

    /// The full URL, API keys included. Hand it to the transport only; never log or print it.
    pub fn expose_secret(&self) -> &str {
        &self.value
    }

    /// The URL scheme in lowercase (`ws`, `wss`, `http`, `https`), if the URL has one.
    pub fn scheme(&self) -> Option<String> {
        self.value.split_once("://").map(|(s, _)| s.to_ascii_lowercase())
    }

    /// The host (without user-info or port), if the URL has one.
    pub fn host(&self) -> Option<&str> {
        let (_, rest) = self.value.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = if let Some(v6) = host_port.strip_prefix('[') {
            v6.split(']').next().unwrap_or_default()
        } else {
            host_port.split(':').next().unwrap_or_default()
        };
        (!host.is_empty()).then_some(host)
    }

    /// Whether the host is `localhost` or a loopback IP address.
    pub fn is_loopback(&self) -> bool {
        match self.host() {
            Some(h) if h.eq_ignore_ascii_case("localhost") => true,
            Some(h) => h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
            None => false,
        }
    }

    /// `scheme://host[:port]`, plus `/…` when a path, query or fragment was cut off; never
    /// user-info. `<unresolved ${VAR}>`-style text for an unresolved template without scheme.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.value.split_once("://") else {
            if !self.resolved {
                let vars = self.env_vars().iter().map(|v| format!("${{{v}}}")).collect::<Vec<_>>();
                return format!("<unresolved {}>", vars.join(" "));
            }
            return "<redacted url>".to_owned();
        };
        let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..cut];
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let tail = if rest[cut..].trim_start_matches('/').is_empty() { "" } else { "/…" };
        if host_port.contains("${") {
            return format!("{scheme}://<redacted>{tail}");
        }
        format!("{scheme}://{host_port}{tail}")
    }

    /// Replaces every `${VAR}` with its value from `env`.
    ///
    /// # Errors
    /// The names of the variables that are unset or empty (never their values).
    pub(crate) fn resolve(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), Vec<String>> {
        let Ok(parts) = parse_template(&self.template) else {
            return Err(Vec::new());
        };
        let mut value = String::with_capacity(self.template.len());
        let mut missing = Vec::new();
        for part in parts {
            match part {
                Part::Lit(l) => value.push_str(l),
                Part::Var(v) => match env(v).filter(|s| !s.is_empty()) {
                    Some(s) => value.push_str(s.trim()),
                    None => missing.push(v.to_owned()),
                },
            }
        }
        if missing.is_empty() {
            self.value = value;
            self.resolved = true;
            Ok(())
        } else {
            Err(missing)
        }
    }
}

impl TryFrom<String> for EndpointUrl {
    type Error = InvalidEndpoint;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EndpointUrl({})", self.redacted())
    }
}

// ---------------------------------------------------------------------------------------------
// The scan.
// ---------------------------------------------------------------------------------------------

/// What a secret finding looks like (never the value itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretKind {
    HexKey,
    Mnemonic,
    NamedLiteral,
    UrlCredentials,
    UrlApiKey,
    EnvNameLiteral,
}

impl SecretKind {
    /// The full reason text for this finding.
    pub(crate) fn reason(self) -> String {
        let detail = match self {
            Self::HexKey => "64 hex digits, the shape of a private key",
            Self::Mnemonic => "a run of lowercase words, the shape of a BIP-39 mnemonic",
            Self::NamedLiteral => "a literal value under a key named like a secret",
            Self::UrlCredentials => "a URL with a literal credential in its user-info",
            Self::UrlApiKey => {
                "a URL with a literal API key in its path or query; write it as ${VAR}"
            }
            Self::EnvNameLiteral => {
                "an `_env` key holds the NAME of an environment variable, in UPPER_SNAKE_CASE"
            }
        };
        format!("{SECRET_REASON} ({detail})")
    }
}

/// One secret found in the document.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    /// Where it is in the parsed document, if it was parsed (`None` for raw-line findings).
    pub(crate) path: Option<KeyPath>,
    /// The key path to print (a key that is itself secret-shaped is shown as `<redacted key>`).
    pub(crate) display_key: String,
    /// 1-based line.
    pub(crate) line: usize,
    pub(crate) kind: SecretKind,
}

/// Whether `s` holds a run of exactly 64 hex digits (optionally `0x`-prefixed) bounded by
/// non-alphanumeric characters.
pub(crate) fn has_hex_key(s: &str) -> bool {
    s.split(|c: char| !c.is_ascii_alphanumeric()).any(|run| {
        let run = run.strip_prefix("0x").or_else(|| run.strip_prefix("0X")).unwrap_or(run);
        run.len() == 64 && run.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Whether `s` is 12, 15, 18, 21 or 24 words of 3–8 lowercase ASCII letters (BIP-39 shape).
pub(crate) fn looks_like_mnemonic(s: &str) -> bool {
    let mut n = 0usize;
    for word in s.split_whitespace() {
        n += 1;
        if n > 24 || !(3..=8).contains(&word.len()) || !word.bytes().all(|b| b.is_ascii_lowercase())
        {
            return false;
        }
    }
    matches!(n, 12 | 15 | 18 | 21 | 24)
}

/// Whether a key name says its value is a secret. `*_env` keys (which hold variable names) and
/// `keystore` (a path) are references, not secrets.
fn is_secret_key_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    if k.ends_with("_env") || k == "keystore" {
        return false;
    }
    const CONTAINS: &[&str] = &[
        "private_key",
        "privatekey",
        "priv_key",
        "privkey",
        "secret",
        "password",
        "passwd",
        "passphrase",
        "mnemonic",
        "seed_phrase",
        "seedphrase",
        "api_key",
        "apikey",
        "auth_token",
        "access_token",
        "bearer",
    ];
    const EXACT: &[&str] = &["pk", "seed", "pass", "pwd"];
    CONTAINS.iter().any(|p| k.contains(p)) || EXACT.contains(&k.as_str())
}

/// Whether the whole value is `${VAR}` references (a reference, not a literal).
fn is_pure_reference(s: &str) -> bool {
    parse_template(s).is_ok_and(|parts| {
        !parts.is_empty()
            && parts.iter().all(|p| match p {
                Part::Var(_) => true,
                Part::Lit(l) => l.trim().is_empty(),
            })
    })
}

/// Literal credentials in a URL, ignoring `${VAR}` parts.
fn url_secret(s: &str) -> Option<SecretKind> {
    // Replace references by a NUL marker so they neither count as literals nor join runs.
    let lit: String = match parse_template(s) {
        Ok(parts) => parts
            .iter()
            .map(|p| match p {
                Part::Lit(l) => *l,
                Part::Var(_) => "\0",
            })
            .collect(),
        Err(_) => s.to_owned(),
    };
    let (_, rest) = lit.split_once("://")?;
    let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..cut];
    let literal = |t: &str| t.chars().any(|c| c != '\0');
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        let credential = userinfo.split_once(':').map_or(userinfo, |(_, pass)| pass);
        if literal(credential) {
            return Some(SecretKind::UrlCredentials);
        }
    }
    let after = &rest[cut..];
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, q.split('#').next().unwrap_or_default()),
        None => (after.split('#').next().unwrap_or_default(), ""),
    };
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = name.to_ascii_lowercase();
        let secretish = ["key", "token", "secret", "pass", "auth", "pwd", "sig"]
            .iter()
            .any(|w| name.contains(w));
        if secretish && literal(value) {
            return Some(SecretKind::UrlApiKey);
        }
    }
    for seg in path.split('/') {
        let long = seg.len() >= 24;
        let keyish = seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let mixed =
            seg.bytes().any(|b| b.is_ascii_digit()) && seg.bytes().any(|b| b.is_ascii_alphabetic());
        if long && keyish && mixed {
            return Some(SecretKind::UrlApiKey);
        }
    }
    None
}

/// Classifies one string value found under `key` (`secret_ctx`: some ancestor key is named like a
/// secret).
fn classify_str(key: Option<&str>, secret_ctx: bool, s: &str) -> Option<SecretKind> {
    if has_hex_key(s) {
        return Some(SecretKind::HexKey);
    }
    if looks_like_mnemonic(s) {
        return Some(SecretKind::Mnemonic);
    }
    if s.contains("://")
        && let Some(kind) = url_secret(s)
    {
        return Some(kind);
    }
    if key.is_some_and(|k| k.to_ascii_lowercase().ends_with("_env"))
        && !is_env_var_name(s)
        && !is_pure_reference(s)
    {
        return Some(SecretKind::EnvNameLiteral);
    }
    if secret_ctx && !is_pure_reference(s) && !s.is_empty() {
        return Some(SecretKind::NamedLiteral);
    }
    None
}

struct Scanner<'a> {
    lines: &'a LineIndex,
    findings: Vec<Finding>,
    /// Lines covered by a parsed-document finding (raw-line findings there are duplicates).
    covered: Vec<(usize, usize)>,
}

impl Scanner<'_> {
    fn report(
        &mut self,
        path: &KeyPath,
        display: String,
        span: std::ops::Range<usize>,
        kind: SecretKind,
    ) {
        let first = self.lines.line_of(span.start);
        let last = self.lines.line_of(span.end.saturating_sub(1).max(span.start));
        self.covered.push((first, last));
        self.findings.push(Finding {
            path: Some(path.clone()),
            display_key: display,
            line: first,
            kind,
        });
    }

    fn table(&mut self, table: &DeTable<'_>, path: &KeyPath, display: &str, secret_ctx: bool) {
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let child = path.key(name);
            let key_secret = if has_hex_key(name) {
                Some(SecretKind::HexKey)
            } else if looks_like_mnemonic(name) {
                Some(SecretKind::Mnemonic)
            } else {
                None
            };
            let shown = if key_secret.is_some() {
                join_display(display, "<redacted key>")
            } else {
                join_display(display, &KeyPath::root().key(name).to_string())
            };
            if let Some(kind) = key_secret {
                self.report(&child, shown, key.span(), kind);
                continue;
            }
            let ctx = secret_ctx || is_secret_key_name(name);
            self.value(value, &child, &shown, Some(name), ctx);
        }
    }

    fn value(
        &mut self,
        value: &toml::Spanned<DeValue<'_>>,
        path: &KeyPath,
        display: &str,
        key: Option<&str>,
        secret_ctx: bool,
    ) {
        let found = match value.get_ref() {
            DeValue::String(s) => classify_str(key, secret_ctx, s),
            DeValue::Integer(i) => {
                let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
                if has_hex_key(&digits) {
                    Some(SecretKind::HexKey)
                } else {
                    secret_ctx.then_some(SecretKind::NamedLiteral)
                }
            }
            DeValue::Float(_) => secret_ctx.then_some(SecretKind::NamedLiteral),
            DeValue::Boolean(_) | DeValue::Datetime(_) => None,
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let shown = format!("{display}[{i}]");
                    self.value(item, &path.index(i), &shown, key, secret_ctx);
                }
                None
            }
            DeValue::Table(t) => {
                self.table(t, path, display, secret_ctx);
                None
            }
        };
        if let Some(kind) = found {
            self.report(path, display.to_owned(), value.span(), kind);
        }
    }
}

fn join_display(parent: &str, child: &str) -> String {
    if parent.is_empty() { child.to_owned() } else { format!("{parent}.{child}") }
}

/// Scans the parsed document and then the raw lines (comments, and lines the parser could not
/// read) for secrets. Findings come back in file order.
pub(crate) fn scan(doc: &DeTable<'_>, text: &str, lines: &LineIndex) -> Vec<Finding> {
    let mut scanner = Scanner { lines, findings: Vec::new(), covered: Vec::new() };
    scanner.table(doc, &KeyPath::root(), "", false);
    let Scanner { mut findings, covered, .. } = scanner;

    // Raw lines: 64-hex runs outside what the parsed scan already reported (comments, values the
    // parser dropped, e.g. an over-long hex integer on a line with a syntax error).
    let mut header = String::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            let end = trimmed.find(']').unwrap_or(trimmed.len());
            header = trimmed[..end].trim_start_matches('[').trim().to_owned();
        }
        if covered.iter().any(|(a, b)| (*a..=*b).contains(&n)) || !has_hex_key(line) {
            continue;
        }
        let comment_at = comment_start(line);
        let code = &line[..comment_at.unwrap_or(line.len())];
        let display = if has_hex_key(code) {
            match code.split_once('=') {
                Some((k, _)) if !k.trim().is_empty() && !has_hex_key(k) && k.len() <= 128 => {
                    join_display(&header, k.trim())
                }
                _ => join_display(&header, "<unparsed line>"),
            }
        } else {
            "(comment)".to_owned()
        };
        findings.push(Finding {
            path: None,
            display_key: display,
            line: n,
            kind: SecretKind::HexKey,
        });
    }
    findings.sort_by_key(|f| f.line);
    findings
}

/// Byte offset of a `#` that starts a comment (outside basic and literal strings), if any.
fn comment_start(line: &str) -> Option<usize> {
    let mut in_basic = false;
    let mut in_literal = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_basic => escaped = true,
            '"' if !in_literal => in_basic = !in_basic,
            '\'' if !in_basic => in_literal = !in_literal,
            '#' if !in_basic && !in_literal => return Some(i),
            _ => {}
        }
    }
    None
}
