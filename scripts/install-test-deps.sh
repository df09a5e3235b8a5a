#!/usr/bin/env bash
# Installs the real peers the end-to-end tests drive (OpenSSH server and clients, rsync, an X
# server and X client for X11 forwarding, zstd, TigerVNC and x11vnc as VNC targets, headless
# Chromium with its ChromeDriver for the web-console tests, PostgreSQL 15 and moto's S3 server for
# the trailgate-testkit peers).
# Idempotent: skips apt when everything is already present. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v setsid >/dev/null 2>&1 || need+=(util-linux)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v ssh-agent >/dev/null 2>&1 || need+=(openssh-client)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
command -v xauth >/dev/null 2>&1 || need+=(xauth)
command -v xdpyinfo >/dev/null 2>&1 || need+=(x11-utils)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v Xvnc >/dev/null 2>&1 || need+=(tigervnc-standalone-server)
command -v vncpasswd >/dev/null 2>&1 || need+=(tigervnc-tools)
command -v x11vnc >/dev/null 2>&1 || need+=(x11vnc)
command -v xsetroot >/dev/null 2>&1 || need+=(x11-xserver-utils)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)   # checks deploy/trailgate.service
command -v chromium >/dev/null 2>&1 || need+=(chromium)           # /usr/bin/chromium, headless browser
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver) # /usr/bin/chromedriver, same version
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
# PostgreSQL 15 (Debian 12): testkit::pg runs initdb, pg_ctl and createdb from its bin directory.
command -v initdb >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# The account a VeNCrypt X509Plain target (Xvnc, through PAM) checks; no shell, no home.
if ! id tgvnc >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO useradd --no-create-home --shell /usr/sbin/nologin tgvnc
  echo 'tgvnc:tgvnc-pass-1' | $SUDO chpasswd
fi
# PostgreSQL refuses to run as root: as root, testkit::pg runs its clusters as this account.
if ! id tgpg >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO useradd --system --no-create-home --shell /usr/sbin/nologin tgpg
fi
# initdb and pg_ctl open /dev/null as tgpg: some sandboxes leave /dev at mode 0700, so let other
# accounts traverse it (the devices keep their own modes).
if [ "$(id -u)" -eq 0 ] && ! runuser -u tgpg -- sh -c ': </dev/null' 2>/dev/null; then
  chmod o+x /dev
fi
# sshd refuses to start without its privilege-separation directory.
[ -d /run/sshd ] || { mkdir -p /run/sshd 2>/dev/null || sudo mkdir -p /run/sshd; }
# Scriptable SSH clients (asyncssh, paramiko) and moto's S3 server (target/peers-venv/bin/moto_server,
# for testkit::s3) in a venv of the project's own, so the system Python is left alone; the tests run
# target/peers-venv/bin/python.
venv=target/peers-venv
if ! "$venv/bin/python" -c 'import asyncssh, paramiko, moto' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'asyncssh==2.24.*' 'paramiko==5.1.*' \
    'moto[server]==5.2.*'
fi
echo "test dependencies present: $(ssh -V 2>&1); $("$venv/bin/python" -c 'import asyncssh, paramiko, moto; print("asyncssh", asyncssh.__version__, "paramiko", paramiko.__version__, "moto", moto.__version__)'); $(/usr/lib/postgresql/15/bin/postgres --version 2>/dev/null || postgres --version)"
