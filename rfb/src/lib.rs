//! RFB (VNC) protocol pieces for Trailgate, pure and free of I/O: the gateway's VNC bridge uses
//! them to speak and frame the protocol, the recorder's tools to decode recorded sessions.
//!
//! Modules:
//! - [`pixel`]: the pixel format.
//! - [`handshake`]: version lines, security types and VeNCrypt subtypes, ServerInit.
//! - [`client`]: client-to-server message framing and the SetEncodings filter.
//! - [`vncauth`]: the VNC authentication response (DES).
//! - [`decode`]: a streaming decoder of recorded sessions into a framebuffer (and PNG).
//! - [`encode`]: server message builders for synthetic streams (tests, tools).
//! - [`fbs`]: FBS 001.000 recordings (rfbproxy's format, replayed by VNC players).
//! - [`error`]: the crate's error type.

pub mod client;
pub mod decode;
pub mod encode;
pub mod error;
pub mod fbs;
pub mod handshake;
pub mod pixel;
pub mod vncauth;

pub use client::ClientMessage;
pub use decode::{Decoder, Framebuffer};
pub use error::{Result, RfbError};
pub use handshake::{ServerInit, Version};
pub use pixel::PixelFormat;
