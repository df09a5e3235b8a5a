//! Trailgate's proxy: listeners, the SSH and VNC bridges, policies, and the live-session registry.
//! Protocol bridges (`ssh`, `vnc`) build on the neutral modules and are never imported by them.
//!
//! Modules:
//! - [`admission`]: pre-authentication limits (connection caps, password checks, throttling).
//! - [`listener`]: the accept loop every listener runs.
//! - [`tls`]: TLS material and rustls configurations (listeners and TLS to targets).
//! - [`stream`]: a connection the gateway can close from outside (`Closable`).
//! - [`readbuf`]: a socket read buffer held only while it has data (`ReadBuffered`).
//! - [`config`]: the TOML configuration, its defaults and `validate()`.
//! - [`auth`]: gateway credentials (argon2id, public keys) and target selection in user names.
//! - [`policy`]: channel and settings policies, TLS settings, VNC options; pure data.
//! - [`runtime`]: what may change while running (the config on SIGHUP, API-managed policies).
//! - [`services`]: what every bridge shares (config, keys, registry, metrics, limits, shutdown).
//! - [`ssh`]: the SSH bridge ([`SshService`], server handler, upstream client, per-channel relays).
//! - [`vnc`]: the VNC bridge ([`VncService`], VeNCrypt/TLS toward viewers, RFB toward targets).
//! - [`registry`]: live sessions and how to terminate them.
//! - [`cluster`]: this node among others on one catalog (heartbeat, lost nodes, remote kills).
//! - [`metrics`]: Prometheus counters and gauges of connections, channels, bytes, failures.
//! - [`session`]: the protocol-neutral session core (session, channel state, timers, end) and
//!   the record the catalog stores.
//! - [`util`]: small shared helpers.

pub mod admission;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod listener;
pub mod metrics;
pub mod policy;
pub mod readbuf;
pub mod registry;
pub mod runtime;
pub mod services;
pub mod session;
pub mod ssh;
pub mod stream;
pub mod tls;
pub mod util;
pub mod vnc;

pub use config::Config;
pub use error::ProxyError;
pub use services::Services;
pub use ssh::SshService;
pub use vnc::VncService;
