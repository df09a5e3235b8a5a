//! The RFB handshake's pieces: version strings, security types and VeNCrypt subtypes,
//! ServerInit. Pure: callers read the bytes; these functions say what they mean.

use serde::Serialize;

use crate::error::{Result, RfbError};
use crate::pixel::PixelFormat;

/// A protocol version line, `RFB 003.008\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    pub const V3_3: Version = Version { major: 3, minor: 3 };
    pub const V3_7: Version = Version { major: 3, minor: 7 };
    pub const V3_8: Version = Version { major: 3, minor: 8 };
    pub const LEN: usize = 12;

    pub fn parse(b: &[u8; 12]) -> Result<Version> {
        let bad = || RfbError::Malformed(format!("version line {:?}", String::from_utf8_lossy(b)));
        if &b[..4] != b"RFB " || b[7] != b'.' || b[11] != b'\n' {
            return Err(bad());
        }
        let num = |s: &[u8]| -> Result<u16> {
            std::str::from_utf8(s)
                .ok()
                .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)
        };
        Ok(Version {
            major: num(&b[4..7])?,
            minor: num(&b[8..11])?,
        })
    }

    pub fn line(&self) -> [u8; 12] {
        let s = format!("RFB {:03}.{:03}\n", self.major, self.minor);
        let mut b = [0u8; 12];
        b.copy_from_slice(s.as_bytes());
        b
    }

    /// The version a client speaking to a server announcing `self` uses: the servers' rules
    /// (RFC 6143 §7.1.1): 3.8 and later mean 3.8; 3.7; anything else means 3.3 (3.5 was a typo
    /// of some old clients for 3.3; 3.4/3.6 are UltraVNC's and mean 3.3).
    pub fn effective(&self) -> Version {
        match (self.major, self.minor) {
            (3, m) if m >= 8 => Version::V3_8,
            (3, 7) => Version::V3_7,
            (m, _) if m > 3 => Version::V3_8,
            _ => Version::V3_3,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Security types (RFB) and VeNCrypt subtypes.
pub mod security {
    pub const INVALID: u8 = 0;
    pub const NONE: u8 = 1;
    pub const VNC_AUTH: u8 = 2;
    pub const VENCRYPT: u8 = 19;

    pub const PLAIN: u32 = 256;
    pub const TLS_NONE: u32 = 257;
    pub const TLS_VNC: u32 = 258;
    pub const TLS_PLAIN: u32 = 259;
    pub const X509_NONE: u32 = 260;
    pub const X509_VNC: u32 = 261;
    pub const X509_PLAIN: u32 = 262;

    /// A name for records and logs.
    pub fn name(kind: u8, sub: Option<u32>) -> String {
        let sub = sub.map(|s| match s {
            PLAIN => "plain".to_string(),
            TLS_NONE => "tls-none".into(),
            TLS_VNC => "tls-vnc".into(),
            TLS_PLAIN => "tls-plain".into(),
            X509_NONE => "x509-none".into(),
            X509_VNC => "x509-vnc".into(),
            X509_PLAIN => "x509-plain".into(),
            other => format!("subtype-{other}"),
        });
        match (kind, sub) {
            (VENCRYPT, Some(s)) => format!("vencrypt-{s}"),
            (NONE, _) => "none".into(),
            (VNC_AUTH, _) => "vnc-auth".into(),
            (VENCRYPT, None) => "vencrypt".into(),
            (k, _) => format!("type-{k}"),
        }
    }
}

/// The longest desktop name accepted in a ServerInit.
pub const MAX_NAME: usize = 64 * 1024;

/// ServerInit: framebuffer size, pixel format, desktop name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerInit {
    pub width: u16,
    pub height: u16,
    pub pixel_format: PixelFormat,
    pub name: String,
}

impl ServerInit {
    /// Parses a ServerInit at the start of `b`: `Ok(None)` while incomplete, else the message
    /// and its length.
    pub fn parse(b: &[u8]) -> Result<Option<(ServerInit, usize)>> {
        if b.len() < 24 {
            return Ok(None);
        }
        let name_len = u32::from_be_bytes([b[20], b[21], b[22], b[23]]) as usize;
        if name_len > MAX_NAME {
            return Err(RfbError::TooLong {
                what: "desktop name",
                len: name_len,
                max: MAX_NAME,
            });
        }
        if b.len() < 24 + name_len {
            return Ok(None);
        }
        let mut pf = [0u8; 16];
        pf.copy_from_slice(&b[4..20]);
        Ok(Some((
            ServerInit {
                width: u16::from_be_bytes([b[0], b[1]]),
                height: u16::from_be_bytes([b[2], b[3]]),
                pixel_format: PixelFormat::parse(&pf)?,
                name: String::from_utf8_lossy(&b[24..24 + name_len]).into_owned(),
            },
            24 + name_len,
        )))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24 + self.name.len());
        v.extend_from_slice(&self.width.to_be_bytes());
        v.extend_from_slice(&self.height.to_be_bytes());
        v.extend_from_slice(&self.pixel_format.to_bytes());
        v.extend_from_slice(&(self.name.len() as u32).to_be_bytes());
        v.extend_from_slice(self.name.as_bytes());
        v
    }
}

/// A VeNCrypt Plain credential message: u32 lengths, then user name and password.
pub fn plain_credentials(user: &str, password: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + user.len() + password.len());
    v.extend_from_slice(&(user.len() as u32).to_be_bytes());
    v.extend_from_slice(&(password.len() as u32).to_be_bytes());
    v.extend_from_slice(user.as_bytes());
    v.extend_from_slice(password.as_bytes());
    v
}

/// The ClientHello's first byte: a TLS handshake record. No RFB client starts with it (a version
/// line starts with `R`), so one byte tells TLS-first clients apart.
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_map() {
        let v = Version::parse(b"RFB 003.008\n").unwrap();
        assert_eq!(v, Version::V3_8);
        assert_eq!(&v.line(), b"RFB 003.008\n");
        assert_eq!(
            Version::parse(b"RFB 003.889\n").unwrap().effective(),
            Version::V3_8
        );
        assert_eq!(
            Version::parse(b"RFB 003.005\n").unwrap().effective(),
            Version::V3_3
        );
        assert!(Version::parse(b"SSH-2.0-x\r\n\0").is_err());
        assert!(Version::parse(b"RFB 0x3.008\n").is_err());
    }

    #[test]
    fn server_init_round_trips_and_waits_for_more() {
        let si = ServerInit {
            width: 1024,
            height: 768,
            pixel_format: PixelFormat::RGB888,
            name: "desk".into(),
        };
        let b = si.to_bytes();
        assert_eq!(ServerInit::parse(&b[..b.len() - 1]).unwrap(), None);
        assert_eq!(ServerInit::parse(&b).unwrap(), Some((si, b.len())));
    }
}
