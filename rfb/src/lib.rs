//! RFB (VNC) protocol pieces for Trailgate, pure and free of I/O: the gateway's VNC bridge uses
//! them to speak and frame the protocol, the recorder's tools to decode recorded sessions.
//!
//! Modules:
//! - [`pixel`]: the pixel format.
//! - [`handshake`]: version lines, security types and VeNCrypt subtypes, ServerInit.
//! - [`client`]: client-to-server message framing and the SetEncodings filter.
//! - [`vncauth`]: the VNC authentication response (DES).
//! - [`error`]: the crate's error type.

pub mod client;
pub mod error;
pub mod handshake;
pub mod pixel;
pub mod vncauth;

pub use client::ClientMessage;
pub use error::{Result, RfbError};
pub use handshake::{ServerInit, Version};
pub use pixel::PixelFormat;
