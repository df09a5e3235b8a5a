//! Small helpers shared by the bridges.

/// Splits `host:port` or `[v6]:port`.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_port() {
        assert_eq!(
            super::split_host_port("127.0.0.1:22"),
            Some(("127.0.0.1".into(), 22))
        );
        assert_eq!(
            super::split_host_port("[::1]:2222"),
            Some(("::1".into(), 2222))
        );
        assert_eq!(super::split_host_port("host"), None);
        assert_eq!(super::split_host_port(":22"), None);
        assert_eq!(super::split_host_port("h:99999"), None);
    }
}
