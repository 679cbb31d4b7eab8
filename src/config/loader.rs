//! Loading with every error reported.
//!
//! 1. Parse with `toml`'s recovering parser into a span-carrying document (`DeTable`): every
//!    syntax error is collected, not just the first.
//! 2. Scan the raw document for secrets ([`super::secrets::scan`]); report them first and remove
//!    them from a working copy, so no later message can echo them.
//! 3. If the TOML itself is broken, stop after reporting the syntax errors (the structure cannot be
//!    trusted, so schema errors would be noise).
//! 4. Deserialize the working copy with `serde_path_to_error`. Serde stops at the first error, so
//!    on each error: record it (key path, line from the span, reason rewritten without the value),
//!    remove the offending key or array element from the working copy, and retry — bounded by the
//!    size of the document and by [`MAX_PASSES`]. A "missing field" error removes the table that
//!    lacks it. Array removals are logged so later paths are mapped back to the indices of the
//!    file (`chains[2]` stays `chains[2]` even after `chains[1]` was dropped).
//! 5. Resolve `${VAR}` references in URL fields, then run the semantic checks (ranges, uniqueness,
//!    cross-references, security). Errors under a key already reported are suppressed, and
//!    cross-references are checked against the names declared in the file, so one mistake is not
//!    reported three times.

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ConfigErrorKind, ConfigErrors};
use super::path::{KeyPath, LineIndex, Seg, span_of};
use super::secrets;
use super::validate::{self, Declared, Issue};
use super::{ChainConfig, Config, EngineConfig, RiskConfig, StrategiesConfig, TelemetryConfig};

/// Files larger than this are refused unread (a configuration is a few kilobytes).
pub(crate) const MAX_BYTES: usize = 1 << 20;
/// Stop after this many errors.
const MAX_ERRORS: usize = 200;
/// Upper bound on deserialize-and-prune passes.
const MAX_PASSES: usize = 1_000;
/// Budget of values visited over all passes (each pass revisits the document), so a huge broken
/// file costs bounded time; when spent, checking stops with a "too many errors" note.
const VISIT_BUDGET: usize = 4_000_000;

/// Environment lookup used to resolve `${VAR}` in URL fields.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The document root as serde sees it; `risk` is optional here so its absence is reported like
/// any other missing key rather than aborting the pass.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    #[serde(default)]
    engine: EngineConfig,
    #[serde(default)]
    telemetry: TelemetryConfig,
    #[serde(default)]
    chains: Vec<ChainConfig>,
    #[serde(default)]
    strategies: StrategiesConfig,
    #[serde(default)]
    risk: Option<RiskConfig>,
}

/// Array elements removed from the working copy, in order: (array path then, index removed).
#[derive(Default)]
struct RemovalLog(Vec<(KeyPath, usize)>);

impl RemovalLog {
    /// Maps a path in the working copy back to the same element in the file.
    fn to_original(&self, path: &KeyPath) -> KeyPath {
        let mut p = path.clone();
        for (array, removed) in self.0.iter().rev() {
            let n = array.segs().len();
            if p.segs().len() > n
                && p.segs()[..n] == array.segs()[..]
                && let Seg::Index(i) = &mut p.segs_mut()[n]
                && *i >= *removed
            {
                *i += 1;
            }
        }
        p
    }
}

/// Collects errors against the original document.
struct Collector<'a, 'i> {
    file: &'a str,
    doc: &'a DeTable<'i>,
    lines: &'a LineIndex,
    errors: Vec<ConfigError>,
    /// Paths (file coordinates) already reported; problems under them are not reported again.
    reported: Vec<KeyPath>,
    /// Checking stopped before the document was fully examined.
    stopped_early: bool,
}

impl Collector<'_, '_> {
    fn line_for(&self, path: &KeyPath, span: Option<std::ops::Range<usize>>) -> Option<usize> {
        match span {
            Some(s) if !(s.is_empty() && s.start == 0) => Some(self.lines.line_of(s.start)),
            _ => span_of(self.doc, path).map(|s| self.lines.line_of(s.start)),
        }
    }

    fn report(
        &mut self,
        path: KeyPath,
        span: Option<std::ops::Range<usize>>,
        kind: ConfigErrorKind,
        reason: String,
    ) {
        let line = self.line_for(&path, span);
        self.errors.push(ConfigError::new(self.file, line, path.to_string(), kind, reason));
        self.reported.push(path);
    }

    /// Whether `path` is at or under a key already reported.
    fn is_under_reported(&self, path: &KeyPath) -> bool {
        self.reported.iter().any(|r| path.starts_with(r))
    }

    /// Whether `path` is at, under or above a key already reported.
    fn overlaps_reported(&self, path: &KeyPath) -> bool {
        self.reported.iter().any(|r| path.starts_with(r) || r.starts_with(path))
    }

    fn full(&self) -> bool {
        self.errors.len() >= MAX_ERRORS
    }
}

/// Loads and validates `text`, read from `file` (used only to name it in errors).
pub(crate) fn load_str(text: &str, file: &str, env: Env<'_>) -> Result<Config, ConfigErrors> {
    if text.len() > MAX_BYTES {
        return Err(ConfigErrors::single(ConfigError::new(
            file,
            None,
            "",
            ConfigErrorKind::Io,
            format!("file is larger than {} KiB; not a configuration file", MAX_BYTES / 1024),
        )));
    }
    let lines = LineIndex::new(text);
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    let mut out = Collector {
        file,
        doc: doc.get_ref(),
        lines: &lines,
        errors: Vec::new(),
        reported: Vec::new(),
        stopped_early: false,
    };

    // 2. Secrets, before anything else.
    let findings = secrets::scan(doc.get_ref(), text, &lines);
    let mut secret_paths = Vec::new();
    for f in &findings {
        out.errors.push(ConfigError::new(
            file,
            Some(f.line),
            f.display_key.clone(),
            ConfigErrorKind::Secret,
            f.kind.reason(),
        ));
        if let Some(p) = &f.path {
            out.reported.push(p.clone());
            secret_paths.push(p.clone());
        }
    }

    // 3. Syntax.
    if !syntax_errors.is_empty() {
        for e in &syntax_errors {
            let line = e.span().map(|s| lines.line_of(s.start));
            // `message()` is built from the grammar, never from the input; `Display` would quote
            // the offending line, so it is not used.
            out.errors.push(ConfigError::new(
                file,
                line,
                "",
                ConfigErrorKind::Syntax,
                format!("invalid TOML: {}", e.message()),
            ));
        }
        return Err(ConfigErrors::new(out.errors));
    }

    // 4. Schema, pruning the working copy after each error.
    let mut work = doc.clone();
    let mut log = RemovalLog::default();
    secret_paths.sort();
    secret_paths.dedup();
    for p in secret_paths.iter().rev() {
        remove(work.get_mut(), p, &mut log);
    }
    let first_schema_error = out.errors.len();
    let root = deserialize_all(&mut work, &mut log, &mut out);

    let config = root.map(|root| {
        let risk_known = root.risk.is_some();
        let risk = match root.risk {
            Some(risk) => Some(risk),
            None => {
                let path = KeyPath::root().key("risk");
                if !out.overlaps_reported(&path) {
                    out.report(
                        path,
                        None,
                        ConfigErrorKind::Missing,
                        "missing required table `[risk]` (at least `nav_usd`)".to_owned(),
                    );
                }
                None
            }
        };
        let mut config = Config {
            engine: root.engine,
            telemetry: root.telemetry,
            chains: root.chains,
            strategies: root.strategies,
            risk: risk.unwrap_or_else(|| RiskConfig::with_nav(1.0)),
        };

        // 5. Environment, then semantics.
        let declared = Declared::from_doc(doc.get_ref());
        let mut issues = resolve_env(&mut config, env);
        issues.extend(validate::validate(&config, Some(&declared), risk_known));
        for issue in issues {
            if out.full() {
                break;
            }
            let path = log.to_original(&issue.path);
            if out.is_under_reported(&path) {
                continue;
            }
            let mut reason = issue.reason;
            if let Some(related) = issue.related {
                let related = log.to_original(&related);
                match out.line_for(&related, None) {
                    Some(line) => reason.push_str(&format!(" (see {related}, line {line})")),
                    None => reason.push_str(&format!(" (see {related})")),
                }
            }
            out.report(path, None, issue.kind, reason);
        }
        config
    });

    if out.full() || out.stopped_early {
        out.errors.push(ConfigError::new(
            file,
            None,
            "",
            ConfigErrorKind::TooManyErrors,
            format!(
                "stopped after {} errors (the file is too broken to check further); fix these and run the check again",
                out.errors.len()
            ),
        ));
    }
    // Schema and semantic errors in file order; secrets stay first.
    out.errors[first_schema_error..].sort_by_key(|e| e.line().unwrap_or(usize::MAX));
    match config {
        Some(config) if out.errors.is_empty() => Ok(config),
        _ => Err(ConfigErrors::new(out.errors)),
    }
}

/// Deserializes, pruning after each error, until the document deserializes or nothing more can
/// be pruned. `None` when the root itself cannot be built.
fn deserialize_all(
    work: &mut toml::Spanned<DeTable<'_>>,
    log: &mut RemovalLog,
    out: &mut Collector<'_, '_>,
) -> Option<RawRoot> {
    // Each pass (and each placeholder trial) costs about one visit per value.
    let mut attempts = (VISIT_BUDGET / count_values(work.get_ref()).max(1)).clamp(8, MAX_PASSES);
    loop {
        if out.full() {
            return None;
        }
        if attempts == 0 {
            out.stopped_early = true;
            return None;
        }
        attempts -= 1;
        let de = toml::de::Deserializer::from(work.clone());
        let err = match serde_path_to_error::deserialize::<_, RawRoot>(de) {
            Ok(root) => return Some(root),
            Err(err) => err,
        };
        let cur = convert_path(err.path());
        let inner = err.into_inner();
        let message = inner.message();
        let span = inner.span();
        let orig = log.to_original(&cur);

        if let Some(field) = missing_field(message) {
            let target = orig.key(field);
            if !out.overlaps_reported(&target) {
                out.report(
                    target.clone(),
                    span,
                    ConfigErrorKind::Missing,
                    format!("missing required key `{field}`"),
                );
            }
            // A neutral stand-in for the missing or refused key keeps its table, so the rest of
            // that table is still checked; problems at the stand-in itself are suppressed.
            if try_placeholder(work, &cur, field, &mut attempts) {
                out.reported.push(target);
                continue;
            }
        } else {
            let value = lookup(work.get_ref(), &cur);
            let (kind, reason) = describe(message, value);
            // `overlaps`: a table whose reported child was removed (a secret, an unknown key) may
            // now fail as a whole (an empty signer); that is the same mistake, not a new one.
            if !out.overlaps_reported(&orig) {
                out.report(orig, span, kind, reason);
            }
        }
        if cur.is_root() || !remove(work.get_mut(), &cur, log) {
            return None;
        }
    }
}

/// Number of values (tables, arrays and scalars) in `table`.
fn count_values(table: &DeTable<'_>) -> usize {
    fn value(v: &DeValue<'_>) -> usize {
        1 + match v {
            DeValue::Table(t) => count_values(t),
            DeValue::Array(a) => a.iter().map(|i| value(i.get_ref())).sum(),
            _ => 0,
        }
    }
    table.values().map(|v| value(v.get_ref())).sum()
}

/// Stand-ins for a required key that is missing or whose value was refused: `""`, the zero
/// address (for addresses and URLs), 0, `false`, `[]`, `{}`. Enum keys have no neutral value (a
/// guessed venue kind would change what the rest of the table must hold), so for them the table
/// is dropped instead.
fn placeholders() -> [DeValue<'static>; 6] {
    [
        DeValue::String("".into()),
        DeValue::String("0x0000000000000000000000000000000000000000".into()),
        DeValue::Integer(toml::de::DeInteger::default()),
        DeValue::Boolean(false),
        DeValue::Array(toml::de::DeArray::new()),
        DeValue::Table(DeTable::new()),
    ]
}

/// Inserts the first placeholder for `field` in the table at `table_path` that deserializes past
/// that key; `false` (and `work` unchanged) when none does.
fn try_placeholder(
    work: &mut toml::Spanned<DeTable<'_>>,
    table_path: &KeyPath,
    field: &str,
    attempts: &mut usize,
) -> bool {
    let target = table_path.key(field);
    for candidate in placeholders() {
        if *attempts == 0 {
            return false;
        }
        *attempts -= 1;
        let mut trial = work.clone();
        let table = if table_path.is_root() {
            Some(trial.get_mut())
        } else {
            match lookup_mut(trial.get_mut(), table_path.segs()) {
                Some(DeValue::Table(t)) => Some(t),
                _ => None,
            }
        };
        let Some(table) = table else { return false };
        table.insert(
            toml::Spanned::new(0..0, field.to_owned().into()),
            toml::Spanned::new(0..0, candidate),
        );
        let de = toml::de::Deserializer::from(trial.clone());
        let passes = match serde_path_to_error::deserialize::<_, RawRoot>(de) {
            Ok(_) => true,
            Err(err) => {
                let at = convert_path(err.path());
                let same_missing =
                    at == *table_path && missing_field(err.inner().message()) == Some(field);
                !same_missing && !at.starts_with(&target)
            }
        };
        if passes {
            *work = trial;
            return true;
        }
    }
    false
}

fn convert_path(path: &serde_path_to_error::Path) -> KeyPath {
    let mut out = KeyPath::root();
    for seg in path.iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => out.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => out.push(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// The value at `path` in `doc`.
fn lookup<'a, 'i>(doc: &'a DeTable<'i>, path: &KeyPath) -> Option<&'a DeValue<'i>> {
    let (first, rest) = path.segs().split_first()?;
    let Seg::Key(k) = first else { return None };
    let mut value = doc.get(k.as_str())?.get_ref();
    for seg in rest {
        value = match (value, seg) {
            (DeValue::Table(t), Seg::Key(k)) => t.get(k.as_str())?.get_ref(),
            (DeValue::Array(a), Seg::Index(i)) => a.get(*i)?.get_ref(),
            _ => return None,
        };
    }
    Some(value)
}

/// The value at `path` in `doc`, mutably.
fn lookup_mut<'a, 'i>(doc: &'a mut DeTable<'i>, path: &[Seg]) -> Option<&'a mut DeValue<'i>> {
    let (first, rest) = path.split_first()?;
    let Seg::Key(k) = first else { return None };
    let mut value = doc.get_mut(k.as_str())?.get_mut();
    for seg in rest {
        value = match (value, seg) {
            (DeValue::Table(t), Seg::Key(k)) => t.get_mut(k.as_str())?.get_mut(),
            (DeValue::Array(a), Seg::Index(i)) => a.get_mut(*i)?.get_mut(),
            _ => return None,
        };
    }
    Some(value)
}

/// Removes the key or array element at `path` from `doc`; logs array removals.
fn remove(doc: &mut DeTable<'_>, path: &KeyPath, log: &mut RemovalLog) -> bool {
    let Some((last, parents)) = path.segs().split_last() else { return false };
    if parents.is_empty() {
        return match last {
            Seg::Key(k) => doc.remove(k.as_str()).is_some(),
            Seg::Index(_) => false,
        };
    }
    match (lookup_mut(doc, parents), last) {
        (Some(DeValue::Table(t)), Seg::Key(k)) => t.remove(k.as_str()).is_some(),
        (Some(DeValue::Array(a)), Seg::Index(i)) if *i < a.len() => {
            let old = std::mem::replace(a, toml::de::DeArray::new());
            for (j, item) in old.into_iter().enumerate() {
                if j != *i {
                    a.push(item);
                }
            }
            log.0.push((path.parent(), *i));
            true
        }
        _ => false,
    }
}

/// What was found, without quoting a string.
fn found(value: Option<&DeValue<'_>>) -> String {
    match value {
        Some(DeValue::String(_)) => "a string".to_owned(),
        Some(DeValue::Integer(i)) if i.as_str().len() <= 24 => {
            format!("the integer {i}")
        }
        Some(DeValue::Integer(_)) => "an integer".to_owned(),
        Some(DeValue::Float(f)) if f.as_str().len() <= 24 => format!("the number {}", f.as_str()),
        Some(DeValue::Float(_)) => "a number".to_owned(),
        Some(DeValue::Boolean(b)) => format!("`{b}`"),
        Some(DeValue::Datetime(_)) => "a date-time".to_owned(),
        Some(DeValue::Array(_)) => "an array".to_owned(),
        Some(DeValue::Table(_)) => "a table".to_owned(),
        None => "another type".to_owned(),
    }
}

/// Serde's names for expected types, in the file's vocabulary.
fn humanize(expected: &str) -> String {
    match expected {
        "u8" => "an integer from 0 to 255".to_owned(),
        "u16" => "an integer from 0 to 65535".to_owned(),
        "u32" => "an integer from 0 to 4294967295".to_owned(),
        "u64" | "usize" => "a non-negative integer".to_owned(),
        "i64" | "i32" => "an integer".to_owned(),
        "f64" | "f32" => "a number".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        e if e.starts_with("struct ") => "a table".to_owned(),
        e => e.to_owned(),
    }
}

/// Enum-like text safe to echo: short, lowercase letters, `-` and `_` only (no digits, so never a
/// hex key).
fn safe_to_echo(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 24
        && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_')
}

/// Rewrites a serde message into a reason that names expected and found types but never quotes
/// a string from the file.
fn describe(message: &str, value: Option<&DeValue<'_>>) -> (ConfigErrorKind, String) {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = match tail.strip_prefix(", expected one of ") {
            Some(list) => format!("expected one of {list}"),
            None => match tail.strip_prefix(", expected ") {
                Some(one) => format!("expected {one}"),
                None => "this table takes no keys".to_owned(),
            },
        };
        let name = if secrets::has_hex_key(name) { "<redacted>" } else { name };
        return (ConfigErrorKind::UnknownKey, format!("unknown key `{name}`; {expected}"));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (variant, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = tail.strip_prefix(", expected ").unwrap_or("another value");
        let shown = if safe_to_echo(variant) { format!(" `{variant}`") } else { String::new() };
        return (
            ConfigErrorKind::InvalidValue,
            format!("unknown value{shown}; expected {expected}"),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let expected = rest.split_once(", expected ").map_or("another type", |(_, e)| e);
        return (
            ConfigErrorKind::WrongType,
            format!("wrong type: expected {}, found {}", humanize(expected), found(value)),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        let expected = rest.split_once(", expected ").map_or("another value", |(_, e)| e);
        return (
            ConfigErrorKind::InvalidValue,
            format!("out of range: expected {}, found {}", humanize(expected), found(value)),
        );
    }
    if message.starts_with("wanted string or table") {
        return (
            ConfigErrorKind::WrongType,
            format!("wrong type: expected a string, found {}", found(value)),
        );
    }
    // Our own messages (addresses, env names, signers, URLs) never include the value; still, hide
    // the value if a deserializer echoed it.
    let mut reason = message.to_owned();
    if let Some(DeValue::String(s)) = value
        && s.len() >= 4
    {
        reason = reason.replace(&format!("{:?}", s.as_ref() as &str), "<value>");
        reason = reason.replace(s.as_ref() as &str, "<value>");
    }
    (ConfigErrorKind::InvalidValue, reason)
}

/// Resolves `${VAR}` in every URL field; an issue per unset variable, naming the variable.
fn resolve_env(config: &mut Config, env: Env<'_>) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut resolve = |url: &mut super::EndpointUrl, path: KeyPath| {
        if let Err(missing) = url.resolve(env) {
            for var in missing {
                issues.push(Issue {
                    path: path.clone(),
                    kind: ConfigErrorKind::Environment,
                    reason: format!("environment variable `{var}` is not set (or is empty)"),
                    related: None,
                });
            }
        }
    };
    for (i, chain) in config.chains.iter_mut().enumerate() {
        let base = KeyPath::root().key("chains").index(i);
        resolve(&mut chain.ws_url, base.key("ws_url"));
        resolve(&mut chain.http_url, base.key("http_url"));
        let sub = base.key("submission");
        if let Some(url) = chain.submission.private_rpc_url.as_mut() {
            resolve(url, sub.key("private_rpc_url"));
        }
        for (j, relay) in chain.submission.relays.iter_mut().enumerate() {
            resolve(&mut relay.url, sub.key("relays").index(j).key("url"));
        }
    }
    issues
}
