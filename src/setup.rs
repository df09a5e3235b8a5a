//! `trailgate setup`: writes a real configuration for this machine: the data directory, a first
//! gateway user (password hashed), a first admin API token (shown once), and a first SSH target
//! whose host key is fetched and shown for confirmation, never trusted silently. Interactive on a
//! terminal; every answer can also be given as a flag (`--yes` and `--accept-host-key` for
//! scripts).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use russh::keys::HashAlg;

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Where to write the configuration.
    #[arg(long, default_value = "./trailgate.toml")]
    pub out: PathBuf,
    /// Trails, catalog and keys (default: `trailgate-data` beside the configuration).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The SSH listener.
    #[arg(long, default_value = "127.0.0.1:2222")]
    pub listen: String,
    /// The control API's listener.
    #[arg(long, default_value = "127.0.0.1:8022")]
    pub api_listen: String,
    /// The first gateway user.
    #[arg(long)]
    pub user: Option<String>,
    /// Read that user's password from standard input (one line) instead of a prompt.
    #[arg(long)]
    pub password_stdin: bool,
    /// The first target's name.
    #[arg(long)]
    pub target_name: Option<String>,
    /// The first target's address, host:port.
    #[arg(long)]
    pub target_address: Option<String>,
    /// The account the gateway logs into on the target.
    #[arg(long)]
    pub target_user: Option<String>,
    /// The private key (OpenSSH format) the gateway logs in with.
    #[arg(long)]
    pub target_key: Option<PathBuf>,
    /// Trust the target's host key if its SHA256 fingerprint is this (`SHA256:...`), without asking.
    #[arg(long)]
    pub accept_host_key: Option<String>,
    /// Overwrite an existing configuration file.
    #[arg(long)]
    pub force: bool,
}

/// `bytes` random bytes, as hex.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .context("reading /dev/urandom")?;
    Ok(hex::encode(b))
}

/// A new API token and the SHA-256 (hex) that `api_tokens[].token_sha256` takes.
pub fn new_api_token() -> Result<(String, String)> {
    let token = random_hex(32)?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    Ok((token, sha))
}

fn ask(prompt: &str, default: Option<&str>) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("{prompt}: not given as a flag, and standard input is not a terminal to ask on");
    }
    match default {
        Some(d) => eprint!("{prompt} [{d}]: "),
        None => eprint!("{prompt}: "),
    }
    std::io::stderr().flush().ok();
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let v = line.trim().to_string();
    Ok(if v.is_empty() {
        default.unwrap_or_default().to_string()
    } else {
        v
    })
}

fn value(flag: Option<String>, prompt: &str, default: Option<&str>) -> Result<String> {
    match flag {
        Some(v) => Ok(v),
        None => ask(prompt, default),
    }
}

fn password(from_stdin: bool) -> Result<String> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    if from_stdin || !stdin.is_terminal() {
        stdin.lock().read_line(&mut line)?;
    } else {
        eprint!("password for this user (not echoed): ");
        let _quiet = crate::serve::NoEcho::new();
        stdin.lock().read_line(&mut line)?;
    }
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.len() < 8 {
        bail!("the password must have at least 8 characters");
    }
    Ok(pw)
}

pub fn run(a: SetupArgs) -> Result<ExitCode> {
    if a.out.exists() && !a.force {
        bail!(
            "{} exists: choose another --out, or --force to replace it",
            a.out.display()
        );
    }
    let user = value(a.user.clone(), "first gateway user", Some("admin"))?;
    let pw = password(a.password_stdin)?;
    let hash = trailgate_proxy::auth::hash_password(&pw).map_err(anyhow::Error::msg)?;
    let name = value(a.target_name.clone(), "first target's name", None)?;
    let address = value(a.target_address.clone(), "its address (host:port)", None)?;
    let target_user = value(a.target_user.clone(), "account on the target", None)?;
    let key_path = match &a.target_key {
        Some(p) => p.clone(),
        None => PathBuf::from(ask("private key the gateway logs in with", None)?),
    };
    let key_path = key_path
        .canonicalize()
        .with_context(|| format!("target key {}", key_path.display()))?;
    russh::keys::load_secret_key(&key_path, None)
        .with_context(|| format!("target key {}", key_path.display()))?;

    // The host key: fetched, shown, and trusted only when confirmed.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let key = rt.block_on(trailgate_proxy::ssh::hostkey::fetch_host_key(
        &address,
        std::time::Duration::from_secs(10),
    ))?;
    let fp = key.fingerprint(HashAlg::Sha256).to_string();
    let line = key.to_openssh()?;
    eprintln!("{address} offers host key {fp}\n  {line}");
    match &a.accept_host_key {
        Some(want) if want == &fp => {}
        Some(want) => {
            bail!("{address} offered {fp}, not the --accept-host-key {want}: refusing to trust it")
        }
        None => {
            let yes = ask("trust this key for the target? (yes/no)", Some("no"))?;
            if yes != "yes" {
                bail!(
                    "host key not trusted: nothing written (compare the fingerprint with the target's `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`)"
                );
            }
        }
    }

    let (token, token_sha) = new_api_token()?;
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("trailgate-data"));
    let text = format!(
        r#"# Written by `trailgate setup`. Keys: docs/configuration.md.
data_dir = "{data}"

[ssh]
listen = "{listen}"

[recording]
min_free_space = "1GiB"

[[users]]
name = "{user}"
password_hash = "{hash}"

[[targets]]
name = "{name}"
address = "{address}"
host_key = "{line}"
user = "{target_user}"
private_key = "{key}"

[settings_policies.default]
timeout = 1800
max_session = "12h"

[api]
listen = "{api}"

[[api_tokens]]
name = "{user}-admin"
token_sha256 = "{token_sha}"
role = "admin"
"#,
        data = data_dir.display(),
        listen = a.listen,
        api = a.api_listen,
        key = key_path.display(),
    );
    // Every target names its settings policy explicitly.
    let text = text.replace(
        &format!("private_key = \"{}\"\n", key_path.display()),
        &format!(
            "private_key = \"{}\"\nsettings_policy = \"default\"\n",
            key_path.display()
        ),
    );
    trailgate_proxy::Config::parse(&text)
        .context("the configuration setup made does not validate")?;
    std::fs::write(&a.out, &text).with_context(|| format!("writing {}", a.out.display()))?;
    let port = a.listen.rsplit(':').next().unwrap_or("2222");
    println!("wrote {}", a.out.display());
    println!("API token for {user}-admin (shown once; only its SHA-256 is stored): {token}");
    println!("start:   trailgate serve --config {}", a.out.display());
    println!("connect: ssh -p {port} {user}@{name}@GATEWAY-HOST");
    Ok(ExitCode::SUCCESS)
}
