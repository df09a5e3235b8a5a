//! Config rules, one test per rule where it matters.

use super::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhM8K3JtY0l5nJwq9G8x1x3p3oQmFf5Jq7V0iY0r2Ge test";

fn base(target_extra: &str) -> String {
    format!(
        "[[users]]\nname = \"alice\"\nauthorized_keys = [\"{KEY}\"]\n\n[[targets]]\nname = \"db1\"\naddress = \"127.0.0.1:22\"\nuser = \"root\"\npassword = \"x\"\n{target_extra}\n"
    )
}

fn err(text: &str) -> String {
    match Config::parse(text) {
        Err(ProxyError::Config(m)) => m,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn a_valid_config_gets_defaults() {
    let c = Config::parse(&base(&format!("host_key = \"{KEY}\""))).unwrap();
    assert_eq!(c.ssh.listen.port(), 2222);
    assert_eq!(c.recording.flush_interval, Duration::from_secs(1));
    assert_eq!(c.recording.on_failure, OnFailure::Terminate);
    assert_eq!(c.targets[0].channel_policy, "default");
    assert_eq!(c.targets_for("alice").len(), 1);
}

#[test]
fn errors_name_the_key_and_the_problem() {
    let m = err(&base(""));
    assert!(
        m.contains("targets[0] (db1)") && m.contains("no upstream host-key source"),
        "{m}"
    );
    assert!(Config::parse(&base("insecure_skip_host_key_check = true")).is_ok());
    let m = err(&format!(
        "bogus = 1\n{}",
        base("insecure_skip_host_key_check = true")
    ));
    assert!(m.contains("unknown field `bogus`"), "{m}");
    let m = err(&base("host_key = \"not a key\""));
    assert!(m.contains("targets[0] (db1).host_key"), "{m}");
    let m = err(&format!(
        "[recording]\nzstd_level = 40\n{}",
        base("insecure_skip_host_key_check = true")
    ));
    assert!(m.contains("recording.zstd_level"), "{m}");
    for (key, bad) in [
        ("zstd_level", 0),
        ("zstd_level", -8),
        ("zstd_fast_level", 23),
    ] {
        let m = err(&format!(
            "[recording]\n{key} = {bad}\n{}",
            base("insecure_skip_host_key_check = true")
        ));
        let want = format!("recording.{key}: {bad} is not a level");
        assert!(m.contains(&want), "{m}");
    }
    let fast = format!(
        "[recording]\nzstd_level = -3\n{}",
        base("insecure_skip_host_key_check = true")
    );
    assert_eq!(
        Config::parse(&fast).map(|c| c.recording.zstd_level).ok(),
        Some(-3)
    );
    let m = err(&format!(
        "[ssh]\nupstream_ciphers = [\"aes128-gcm@openssh.com\", \"3des-cbc\"]\n{}",
        base("insecure_skip_host_key_check = true")
    ));
    assert!(
        m.starts_with("ssh.upstream_ciphers[1]: unknown or refused cipher \"3des-cbc\""),
        "{m}"
    );
    let m = err(&format!(
        "[ssh]\nciphers = []\n{}",
        base("insecure_skip_host_key_check = true")
    ));
    assert!(
        m.contains("ssh.ciphers") && m.contains("at least one"),
        "{m}"
    );
    let m = err(&format!(
        "[recording]\nflush_interval = \"soon\"\n{}",
        base("insecure_skip_host_key_check = true")
    ));
    assert!(m.contains("flush_interval"), "{m}");
    let m = err(&format!(
        "[channel_policies.default]\nallow = [\"telnet\"]\n{}",
        base("insecure_skip_host_key_check = true")
    ));
    assert!(
        m.contains("channel_policies.default.allow[0]") && m.contains("telnet"),
        "{m}"
    );
    let m = err(&base(
        "insecure_skip_host_key_check = true\nallow_users = [\"mallory\"]",
    ));
    assert!(m.contains("allow_users") && m.contains("mallory"), "{m}");
    let m = err(&base(
        "insecure_skip_host_key_check = true\nchannel_policy = \"strict\"",
    ));
    assert!(m.contains("channel_policies.strict"), "{m}");
    let m = err("[[api_tokens]]\nname = \"x\"\ntoken_sha256 = \"abc\"\nrole = \"admin\"\n");
    assert!(m.contains("api_tokens[0] (x).token_sha256"), "{m}");
    let m = err("[[api_tokens]]\nname = \"x\"\ntoken_sha256 = \"abc\"\nrole = \"root\"\n");
    assert!(m.contains("role"), "{m}");
}

mod example {
    /// The example the README runs must stay a valid config as keys are added.
    #[test]
    fn the_shipped_example_config_loads() {
        let text = include_str!("../../../deploy/examples/trailgate.toml");
        if let Err(e) = super::Config::parse(text) {
            panic!("deploy/examples/trailgate.toml: {e}");
        }
    }
}
