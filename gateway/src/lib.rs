//! Kinko's gateway: the `kinko` server. HTTP (health, Prometheus metrics, public REST) and the
//! WebSocket API for traders on one port, the FIX 4.4 acceptor on another, both over TLS unless
//! the configuration asks for plain TCP in so many words; the engine thread
//! behind them; the hub that routes the engine's published batches to sessions and subscribers.
//!
//! The gateway translates and forwards: it never touches a book or a balance itself. Everything it
//! tells a client about the market or an account is mirrored from the engine's events.

pub mod admin;
pub mod auth;
pub mod config;
pub mod custody;
pub mod defaults;
pub mod demo;
pub mod fix;
pub mod hub;
pub mod keystore;
pub mod market;
pub mod metrics;
pub mod operator;
pub mod protocol;
pub mod server;
pub mod session;
pub mod transport;
