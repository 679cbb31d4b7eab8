//! The reliability fault suite (RELIABILITY.md, tests 1, 6, 7, 8 and the secret rules), the part
//! that needs no engine: WebSocket faults through a loopback proxy, RPC faults through a fake
//! JSON-RPC server, decoders under random input, and secrets kept out of logs and `--help`.

mod fake_rpc;
mod fuzz;
mod proxy;
mod rpc;
mod secrets;
mod ws;
