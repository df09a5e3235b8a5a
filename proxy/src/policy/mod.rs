//! Policies, as pure data and decisions (no I/O): which channel kinds a target allows, and the
//! settings policy (timeouts, preconnect check, TLS per leg) with the global VNC options.
//!
//! Modules:
//! - [`channel`]: channel policies (SSH channel kinds).
//! - [`settings`]: the settings policy object and its validation.
//! - [`tls`]: TLS settings of one leg and what they compile to for rustls.
//! - [`options`]: the global VNC options (service switch, log level, metadata cleanup).

pub mod channel;
pub mod options;
pub mod settings;
pub mod tls;

pub use channel::{ChannelKind, ChannelPolicy};
pub use options::VncOptions;
pub use settings::SettingsPolicy;
pub use tls::{TlsPolicy, TlsSecuritySettings, TlsVersion};
