//! Integration tests: one binary, a module per area, against real anvil chains (never a mock).
//! A missing anvil or node fails these tests with the reason; nothing skips.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, unreachable_pub)]

mod artifacts;
mod backtest;
mod bench;
mod cassette;
mod cli;
mod cli_run;
mod devnet;
mod engine;
mod exec;
mod executor;
mod faults;
mod harness;
mod ingest;
mod ledger;
mod peg;
mod pmm;
mod quote;
mod soak;
mod state;
mod telemetry;
mod venues;
mod xbacktest;
mod xchain;
