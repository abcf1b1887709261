//! The embedded default configuration lives in the engine crate (the engine node and the server
//! share it); this re-export keeps the gateway's callers short.

pub use engine::defaults::{assets, config, instruments};
