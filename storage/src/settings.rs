//! `[storage]` as the object store needs it: `s3://bucket/prefix`, an optional endpoint (any
//! S3-compatible server; `http://` is allowed for it), the region, and credentials from an AWS
//! credentials file (`[default]` profile, or the one named) or from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).

use std::path::Path;

use crate::{Result, StorageError};

#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// Object keys start with this (no leading or trailing `/`; may be empty).
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    // Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Splits `s3://bucket/prefix`; errors name the problem.
pub fn parse_url(url: &str) -> Result<(String, String)> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        StorageError::Settings(format!("url must be s3://bucket[/prefix], got {url:?}"))
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
        return Err(StorageError::Settings(format!(
            "url: {bucket:?} is not a bucket name (3-63 of a-z, 0-9, '-', '.')"
        )));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

impl S3Settings {
    /// From `[storage]`: the URL, endpoint, region and an optional credentials file (else the
    /// environment).
    pub fn new(
        url: &str,
        endpoint: Option<&str>,
        region: Option<&str>,
        credentials_file: Option<&Path>,
        profile: Option<&str>,
    ) -> Result<S3Settings> {
        let (bucket, prefix) = parse_url(url)?;
        if let Some(e) = endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(StorageError::Settings(format!(
                "endpoint must start with http:// or https://, got {e:?}"
            )));
        }
        let mut s = S3Settings {
            bucket,
            prefix,
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
            region: region
                .map(str::to_string)
                .or_else(|| std::env::var("AWS_REGION").ok())
                .unwrap_or_else(|| "us-east-1".into()),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
        };
        match credentials_file {
            Some(f) => {
                let text = std::fs::read_to_string(f).map_err(|e| StorageError::io(f, e))?;
                let profile = profile.unwrap_or("default");
                let kv = ini_profile(&text, profile).ok_or_else(|| {
                    StorageError::Settings(format!(
                        "credentials_file {}: no [{profile}] profile",
                        f.display()
                    ))
                })?;
                let get = |k: &str| kv.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                s.access_key_id = get("aws_access_key_id");
                s.secret_access_key = get("aws_secret_access_key");
                s.session_token = get("aws_session_token");
                if s.access_key_id.is_none() || s.secret_access_key.is_none() {
                    return Err(StorageError::Settings(format!(
                        "credentials_file {}: [{profile}] needs aws_access_key_id and aws_secret_access_key",
                        f.display()
                    )));
                }
            }
            None => {
                s.access_key_id = std::env::var("AWS_ACCESS_KEY_ID").ok();
                s.secret_access_key = std::env::var("AWS_SECRET_ACCESS_KEY").ok();
                s.session_token = std::env::var("AWS_SESSION_TOKEN").ok();
            }
        }
        Ok(s)
    }

    /// The object key of a session's trail.
    pub fn key_for(&self, session_id: &str) -> String {
        if self.prefix.is_empty() {
            format!("{session_id}.trail")
        } else {
            format!("{}/{session_id}.trail", self.prefix)
        }
    }
}

/// The `key = value` pairs of one `[profile]` section of an INI file.
fn ini_profile(text: &str, profile: &str) -> Option<Vec<(String, String)>> {
    let mut inside = false;
    let mut found = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            inside = name == profile || name == format!("profile {profile}");
            found |= inside;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_bucket_and_prefix_and_bad_ones_say_why() {
        assert_eq!(
            parse_url("s3://trails").unwrap(),
            ("trails".into(), "".into())
        );
        assert_eq!(
            parse_url("s3://trails/prod/eu/").unwrap(),
            ("trails".into(), "prod/eu".into())
        );
        assert!(
            parse_url("http://x")
                .unwrap_err()
                .to_string()
                .contains("s3://bucket")
        );
        assert!(
            parse_url("s3://A_b")
                .unwrap_err()
                .to_string()
                .contains("bucket name")
        );
    }

    #[test]
    fn credentials_come_from_the_named_profile_and_are_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("creds");
        std::fs::write(
            &f,
            "[default]\naws_access_key_id = AK1\naws_secret_access_key = SECRET1\n\n[profile ops]\naws_access_key_id=AK2\naws_secret_access_key=SECRET2\n",
        )
        .unwrap();
        let s = S3Settings::new("s3://b-1/p", None, Some("eu-west-1"), Some(&f), None).unwrap();
        assert_eq!(s.access_key_id.as_deref(), Some("AK1"));
        assert_eq!(s.key_for("abc"), "p/abc.trail");
        let s = S3Settings::new("s3://b-1", None, None, Some(&f), Some("ops")).unwrap();
        assert_eq!(s.secret_access_key.as_deref(), Some("SECRET2"));
        assert!(!format!("{s:?}").contains("SECRET"));
        let e = S3Settings::new("s3://b-1", None, None, Some(&f), Some("nope")).unwrap_err();
        assert!(e.to_string().contains("no [nope] profile"), "{e}");
        let e = S3Settings::new("s3://b-1", Some("minio:9000"), None, Some(&f), None).unwrap_err();
        assert!(e.to_string().contains("endpoint must start"), "{e}");
    }
}
