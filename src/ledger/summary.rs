//! The desk's summary of a ledger: per run and per strategy.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use alloy::primitives::{Address, I256};
use serde::Serialize;

use super::read::{corrupt, open_read_only, parse_i256, parse_str, parse_tag, position};
use super::record::{Halt, InclusionStatus, Position};
use super::{LedgerError, RunId, schema};

/// The strategy name used for records whose opportunity row is missing.
const UNKNOWN_STRATEGY: &str = "(unknown)";
/// Refusal kinds listed per strategy.
const TOP_REFUSALS: usize = 3;

/// Everything `cantilever ledger` prints. `Display` is the desk's text; `Serialize` is `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerSummary {
    /// The database file.
    pub path: String,
    /// Its schema version.
    pub schema_version: i64,
    /// Every run, oldest first.
    pub runs: Vec<RunSummary>,
    /// Positions still open (any run).
    pub open_positions: Vec<Position>,
    /// The most recent halt row (engaged or re-armed).
    pub last_halt: Option<LastHalt>,
}

/// The latest halt row and the run that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastHalt {
    /// The run.
    pub run: RunId,
    /// Engaged or re-armed, why and when.
    #[serde(flatten)]
    pub halt: Halt,
}

/// One process run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// Its id.
    pub run: RunId,
    /// Hash of the configuration it ran with.
    pub config_hash: String,
    /// cantilever version.
    pub version: String,
    /// Process id.
    pub pid: u32,
    /// Start (unix ms).
    pub started_at_ms: u64,
    /// Clean end (unix ms); `None` when the process died or is still running.
    pub ended_at_ms: Option<u64>,
    /// Per strategy, by name.
    pub strategies: Vec<StrategySummary>,
    /// All strategies together (`strategy = "all"`).
    pub total: StrategySummary,
}

/// Counts of one strategy in one run (or of the whole run).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct StrategySummary {
    /// Strategy name, or `all`.
    pub strategy: String,
    /// Opportunities found.
    pub opportunities: u64,
    /// Decisions that approved.
    pub approved: u64,
    /// Decisions that refused.
    pub refused: u64,
    /// The most frequent refusal kinds, most frequent first.
    pub top_refusals: Vec<RefusalCount>,
    /// Submissions sent (raw txs and bundles).
    pub submissions: u64,
    /// Submissions whose latest inclusion row is `included`.
    pub included: u64,
    /// ... `reverted`.
    pub reverted: u64,
    /// ... `missed`.
    pub missed: u64,
    /// ... `orphaned` (reorged out, no later outcome yet).
    pub orphaned: u64,
    /// `included / (included + reverted + missed)`; `None` before any outcome.
    pub inclusion_rate: Option<f64>,
    /// Realised PnL in USD, summed over final outcomes that carry a USD value.
    pub realised_pnl_usd: f64,
    /// Realised PnL per token, exact (raw units).
    pub realised_pnl: Vec<TokenPnl>,
}

/// How often one refusal kind occurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusalCount {
    /// The kind (`exposure`, `flash_spike`, ...; `unspecified` when none was given).
    pub kind: String,
    /// How many refusals.
    pub count: u64,
    /// One of its reasons in words.
    pub example: Option<String>,
}

/// Exact realised PnL in one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenPnl {
    /// The token.
    pub token: Address,
    /// Raw units, decimal.
    #[serde(serialize_with = "decimal")]
    pub pnl: I256,
}

fn decimal<S: serde::Serializer>(v: &I256, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl LedgerSummary {
    /// Reads the ledger at `path` (read-only; safe while the bot is writing it) and summarises it.
    ///
    /// # Errors
    /// [`LedgerError::NotFound`] for a missing file, [`LedgerError::Open`] for a file that is not
    /// a database, [`LedgerError::NewerSchema`], [`LedgerError::Corrupt`] for unparsable values.
    pub fn load(path: &Path) -> Result<Self, LedgerError> {
        let conn = open_read_only(path)?;
        let schema_version =
            schema::current_version(&conn).map_err(LedgerError::sql("reading the schema"))?;
        let mut summary = Self {
            path: path.display().to_string(),
            schema_version,
            runs: Vec::new(),
            open_positions: Vec::new(),
            last_halt: None,
        };
        if schema_version == 0 {
            return Ok(summary);
        }
        let mut runs: BTreeMap<i64, RunSummary> = BTreeMap::new();
        let mut per: BTreeMap<(i64, String), StrategySummary> = BTreeMap::new();
        let mut refusals: BTreeMap<(i64, String), Vec<RefusalCount>> = BTreeMap::new();
        let mut pnl: BTreeMap<(i64, String), BTreeMap<Address, I256>> = BTreeMap::new();

        let each = |sql: &str, f: &mut dyn FnMut(&rusqlite::Row<'_>) -> Result<(), LedgerError>| {
            let mut stmt = conn.prepare(sql).map_err(LedgerError::sql("summarising"))?;
            let mut rows = stmt.query([]).map_err(LedgerError::sql("summarising"))?;
            while let Some(row) = rows.next()? {
                f(row)?;
            }
            Ok::<(), LedgerError>(())
        };
        each(
            "SELECT id, config_hash, version, pid, started_at_ms, ended_at_ms FROM runs ORDER BY id",
            &mut |r| {
                let run = RunSummary {
                    run: RunId(r.get(0)?),
                    config_hash: r.get(1)?,
                    version: r.get(2)?,
                    pid: r.get(3)?,
                    started_at_ms: r.get(4)?,
                    ended_at_ms: r.get(5)?,
                    strategies: Vec::new(),
                    total: StrategySummary::default(),
                };
                runs.insert(run.run.0, run);
                Ok(())
            },
        )?;
        each("SELECT run_id, strategy, COUNT(*) FROM opportunities GROUP BY 1, 2", &mut |r| {
            slot(&mut per, r.get(0)?, r.get(1)?).opportunities = r.get(2)?;
            Ok(())
        })?;
        each(
            &format!(
                "SELECT d.run_id, COALESCE(o.strategy, '{UNKNOWN_STRATEGY}'), d.approved,
                    COALESCE(d.refusal_kind, 'unspecified'), COUNT(*), MAX(d.reason)
                 FROM decisions d LEFT JOIN opportunities o
                    ON o.run_id = d.run_id AND o.id = d.opportunity_id
                 GROUP BY 1, 2, 3, 4"
            ),
            &mut |r| {
                let (run, strategy): (i64, String) = (r.get(0)?, r.get(1)?);
                let count: u64 = r.get(4)?;
                if r.get(2)? {
                    slot(&mut per, run, strategy).approved += count;
                } else {
                    slot(&mut per, run, strategy.clone()).refused += count;
                    refusals.entry((run, strategy)).or_default().push(RefusalCount {
                        kind: r.get(3)?,
                        count,
                        example: r.get(5)?,
                    });
                }
                Ok(())
            },
        )?;
        each(
            &format!(
                "SELECT s.run_id, COALESCE(o.strategy, '{UNKNOWN_STRATEGY}'), COUNT(*)
                 FROM submissions s LEFT JOIN opportunities o
                    ON o.run_id = s.run_id AND o.id = s.opportunity_id
                 GROUP BY 1, 2"
            ),
            &mut |r| {
                slot(&mut per, r.get(0)?, r.get(1)?).submissions = r.get(2)?;
                Ok(())
            },
        )?;
        // The latest inclusion row of each submission is its outcome.
        each(
            &format!(
                "SELECT i.run_id, COALESCE(o.strategy, '{UNKNOWN_STRATEGY}'), i.status,
                    i.pnl_token, i.realised_pnl, i.realised_pnl_usd
                 FROM inclusions i
                 JOIN (SELECT MAX(seq) AS seq FROM inclusions GROUP BY run_id, submission_id)
                    latest ON latest.seq = i.seq
                 LEFT JOIN submissions s ON s.run_id = i.run_id AND s.id = i.submission_id
                 LEFT JOIN opportunities o ON o.run_id = s.run_id AND o.id = s.opportunity_id"
            ),
            &mut |r| {
                let (run, strategy): (i64, String) = (r.get(0)?, r.get(1)?);
                let status: InclusionStatus = parse_tag(r, 2, "inclusions", "status")?;
                let s = slot(&mut per, run, strategy.clone());
                match status {
                    InclusionStatus::Included => s.included += 1,
                    InclusionStatus::Reverted => s.reverted += 1,
                    InclusionStatus::Missed => s.missed += 1,
                    InclusionStatus::Orphaned => {
                        s.orphaned += 1;
                        return Ok(());
                    }
                }
                s.realised_pnl_usd += r.get::<_, Option<f64>>(5)?.unwrap_or(0.0);
                let token: String = r.get(3)?;
                let token: Address = parse_str(&token, "inclusions", "pnl_token")?;
                let value = parse_i256(r, 4, "inclusions", "realised_pnl")?;
                let sum = pnl.entry((run, strategy)).or_default().entry(token).or_default();
                *sum = sum.checked_add(value).ok_or_else(|| {
                    corrupt("inclusions", "realised_pnl", &value.to_string(), "sum overflows")
                })?;
                Ok(())
            },
        )?;
        each(
            "SELECT id, chain_id, token, amount, amount_usd, state, opened_at_ms, closed_at_ms,
                notes FROM positions WHERE state = 'open' ORDER BY opened_at_ms, id",
            &mut |r| {
                summary.open_positions.push(position(r)?);
                Ok(())
            },
        )?;
        each(
            "SELECT run_id, engaged, reason, at_ms FROM halts ORDER BY seq DESC LIMIT 1",
            &mut |r| {
                let halt = Halt { engaged: r.get(1)?, reason: r.get(2)?, at_ms: r.get(3)? };
                summary.last_halt = Some(LastHalt { run: RunId(r.get(0)?), halt });
                Ok(())
            },
        )?;

        for ((run, strategy), mut s) in per {
            let key = (run, strategy);
            let mut top = refusals.remove(&key).unwrap_or_default();
            top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.kind.cmp(&b.kind)));
            top.truncate(TOP_REFUSALS);
            s.top_refusals = top;
            s.realised_pnl = pnl
                .remove(&key)
                .unwrap_or_default()
                .into_iter()
                .map(|(token, pnl)| TokenPnl { token, pnl })
                .collect();
            s.inclusion_rate = rate(&s);
            let Some(run) = runs.get_mut(&run) else { continue };
            add_into(&mut run.total, &s);
            run.strategies.push(s);
        }
        for run in runs.values_mut() {
            run.total.strategy = "all".to_owned();
            run.total.inclusion_rate = rate(&run.total);
            run.total.top_refusals.sort_by(|a, b| b.count.cmp(&a.count).then(a.kind.cmp(&b.kind)));
            run.total.top_refusals.truncate(TOP_REFUSALS);
        }
        summary.runs = runs.into_values().collect();
        Ok(summary)
    }
}

/// The counts of `strategy` in `run`, created empty on first use.
fn slot(
    per: &mut BTreeMap<(i64, String), StrategySummary>,
    run: i64,
    strategy: String,
) -> &mut StrategySummary {
    per.entry((run, strategy.clone()))
        .or_insert_with(|| StrategySummary { strategy, ..Default::default() })
}

fn rate(s: &StrategySummary) -> Option<f64> {
    let decided = s.included + s.reverted + s.missed;
    (decided > 0).then(|| s.included as f64 / decided as f64)
}

/// Adds `s` into the run total (refusal kinds and PnL tokens merged).
fn add_into(total: &mut StrategySummary, s: &StrategySummary) {
    total.opportunities += s.opportunities;
    total.approved += s.approved;
    total.refused += s.refused;
    total.submissions += s.submissions;
    total.included += s.included;
    total.reverted += s.reverted;
    total.missed += s.missed;
    total.orphaned += s.orphaned;
    total.realised_pnl_usd += s.realised_pnl_usd;
    for r in &s.top_refusals {
        match total.top_refusals.iter_mut().find(|t| t.kind == r.kind) {
            Some(t) => t.count += r.count,
            None => total.top_refusals.push(r.clone()),
        }
    }
    for p in &s.realised_pnl {
        match total.realised_pnl.iter_mut().find(|t| t.token == p.token) {
            Some(t) => t.pnl = t.pnl.saturating_add(p.pnl),
            None => total.realised_pnl.push(p.clone()),
        }
    }
}

impl fmt::Display for LedgerSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ledger {} (schema {}): {} run(s)",
            self.path,
            self.schema_version,
            self.runs.len()
        )?;
        for run in &self.runs {
            writeln!(f)?;
            write!(f, "{run}")?;
        }
        writeln!(f)?;
        if self.open_positions.is_empty() {
            writeln!(f, "open positions: none")?;
        } else {
            writeln!(f, "open positions: {}", self.open_positions.len())?;
            for p in &self.open_positions {
                write!(
                    f,
                    "  {}  chain {}  token {}  amount {}",
                    p.id, p.chain_id, p.token, p.amount
                )?;
                if let Some(usd) = p.amount_usd {
                    write!(f, " (${usd:.2})")?;
                }
                writeln!(f, "  since {}", Utc(p.opened_at_ms))?;
            }
        }
        match &self.last_halt {
            None => writeln!(f, "last halt: none"),
            Some(LastHalt { run, halt: h }) => writeln!(
                f,
                "last halt: {} at {} (run {run}): {}",
                if h.engaged { "ENGAGED" } else { "re-armed" },
                Utc(h.at_ms),
                h.reason
            ),
        }
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run {}  started {}  ", self.run, Utc(self.started_at_ms))?;
        match self.ended_at_ms {
            Some(end) => write!(f, "ended {}", Utc(end))?,
            None => write!(f, "no clean end (running, or killed)")?,
        }
        writeln!(f, "  pid {}  version {}  config {}", self.pid, self.version, self.config_hash)?;
        writeln!(
            f,
            "  {:<14}{:>8}{:>10}{:>9}{:>11}{:>10}{:>10}{:>8}{:>11}{:>14}",
            "strategy",
            "opps",
            "approved",
            "refused",
            "submitted",
            "included",
            "reverted",
            "missed",
            "incl.rate",
            "pnl usd"
        )?;
        for s in self.strategies.iter().chain(std::iter::once(&self.total)) {
            let rate =
                s.inclusion_rate.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
            writeln!(
                f,
                "  {:<14}{:>8}{:>10}{:>9}{:>11}{:>10}{:>10}{:>8}{:>11}{:>14.2}",
                s.strategy,
                s.opportunities,
                s.approved,
                s.refused,
                s.submissions,
                s.included,
                s.reverted,
                s.missed,
                rate,
                s.realised_pnl_usd
            )?;
        }
        for s in &self.strategies {
            if !s.top_refusals.is_empty() {
                write!(f, "  top refusals, {}:", s.strategy)?;
                for (i, r) in s.top_refusals.iter().enumerate() {
                    write!(f, "{} {} x{}", if i == 0 { "" } else { ";" }, r.kind, r.count)?;
                    if let Some(e) = &r.example {
                        write!(f, " (e.g. {e})")?;
                    }
                }
                writeln!(f)?;
            }
            for p in &s.realised_pnl {
                writeln!(f, "  realised pnl, {}: {} raw of {}", s.strategy, p.pnl, p.token)?;
            }
            if s.orphaned > 0 {
                writeln!(f, "  {}: {} submission(s) orphaned by a reorg", s.strategy, s.orphaned)?;
            }
        }
        Ok(())
    }
}

/// Unix milliseconds shown as a UTC date and time (`2025-03-01 14:02:07Z`).
struct Utc(u64);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Utc;

    #[test]
    fn utc_dates() {
        assert_eq!(Utc(0).to_string(), "1970-01-01 00:00:00Z");
        assert_eq!(Utc(951_782_400_000).to_string(), "2000-02-29 00:00:00Z");
        assert_eq!(Utc(1_740_837_727_000).to_string(), "2025-03-01 14:02:07Z");
    }
}
