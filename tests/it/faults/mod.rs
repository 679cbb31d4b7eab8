//! The reliability fault suite (RELIABILITY.md, tests 1, 3, 6, 7, 8, 11, 13 and the security
//! rules): WebSocket faults through a loopback proxy, RPC faults through a fake JSON-RPC server,
//! decoders under random input, secrets kept out of logs and `--help`, reorgs and shutdown
//! against the exec task, keys by role, and poisoned tokens against the live engine.

mod attacks;
mod exec_reorg;
mod fake_rpc;
mod fuzz;
mod keys;
mod proxy;
mod rpc;
mod secrets;
mod ws;
