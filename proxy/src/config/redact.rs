//! TOML parse errors without secrets: the parser quotes the offending line, and a line such as
//! `password = "..."` must not end up in a terminal, a journal or a CI log.

/// Keys whose values are secrets (or secret-derived) and are never echoed.
const SECRET_KEYS: &[&str] = &[
    "password",
    "password_hash",
    "token_sha256",
    "token",
    "secret",
];

/// Renders a parse error: position and message, with the offending line quoted only after the
/// values of secret keys are replaced by `<redacted>`.
pub fn parse_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    let Some(span) = e.span() else {
        return msg.to_string();
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let col = start - text[..start].rfind('\n').map_or(0, |i| i + 1) + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    format!(
        "line {line_no}, column {col}: {msg}\n  | {}",
        redact_line(line)
    )
}

/// `password = "hunter2"` -> `password = <redacted>`; other lines unchanged. A line that is not
/// `key = value` but mentions a secret key anywhere is redacted whole (a broken line may hold
/// a value on it).
pub fn redact_line(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    if let Some((key, _)) = line.split_once('=') {
        let k = key.trim().trim_matches('"').to_ascii_lowercase();
        let last = k.rsplit('.').next().unwrap_or(&k).to_string();
        if SECRET_KEYS.contains(&last.as_str()) {
            return format!("{}= <redacted>", key);
        }
        if !SECRET_KEYS.iter().any(|s| lower.contains(s)) {
            return line.to_string();
        }
        // Inline tables can carry a secret after the first `=`.
        return format!("{}= <redacted>", key);
    }
    if SECRET_KEYS.iter().any(|s| lower.contains(s)) {
        return "<redacted>".into();
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_redacted_and_others_kept() {
        assert_eq!(
            redact_line(r#"password = "hunter2"#),
            "password = <redacted>"
        );
        assert_eq!(
            redact_line(r#"  password_hash="$argon2id$x"#),
            "  password_hash= <redacted>"
        );
        assert_eq!(redact_line(r#"user = "root""#), r#"user = "root""#);
        assert_eq!(redact_line(r#"t = { password = "x" }"#), "t = <redacted>");
        assert_eq!(redact_line(r#"password "oops"#), "<redacted>");
    }

    #[test]
    fn a_parse_error_on_a_password_line_does_not_show_the_password() {
        let text = "[[targets]]\nname = \"db1\"\npassword = \"hunter2\" junk\n";
        let e = toml::from_str::<toml::Value>(text).unwrap_err();
        let m = parse_error(text, &e);
        assert!(!m.contains("hunter2"), "{m}");
        assert!(m.contains("line 3"), "{m}");
        assert!(m.contains("password = <redacted>"), "{m}");
    }
}
