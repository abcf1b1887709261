//! Kinko's gateway: the `kinko` binary and everything between traders and the engine thread.
//!
//! For now it holds the embedded default configuration and the in-process demo; the WebSocket and
//! FIX servers come with their issues. The gateway translates and forwards: it must never touch a
//! book or a balance itself.

pub mod defaults;
pub mod demo;
