#!/usr/bin/env bash
# Installs the real peers the end-to-end tests drive (OpenSSH server and clients, rsync, an X
# server and X client for X11 forwarding, zstd, TigerVNC and x11vnc as VNC targets, and headless
# Chromium with its ChromeDriver for the web-console tests).
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
# sshd refuses to start without its privilege-separation directory.
[ -d /run/sshd ] || { mkdir -p /run/sshd 2>/dev/null || sudo mkdir -p /run/sshd; }
# Scriptable SSH clients (asyncssh, paramiko) in a venv of the project's own, so the system
# Python is left alone; the tests run target/peers-venv/bin/python.
venv=target/peers-venv
if ! "$venv/bin/python" -c 'import asyncssh, paramiko' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'asyncssh==2.24.*' 'paramiko==5.1.*'
fi
echo "test dependencies present: $(ssh -V 2>&1); $("$venv/bin/python" -c 'import asyncssh, paramiko; print("asyncssh", asyncssh.__version__, "paramiko", paramiko.__version__)')"
