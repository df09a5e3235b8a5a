#!/usr/bin/env python3
"""paramiko's key-then-password fallback on one connection, as `SSHClient.connect(pkey=...,
password=...)` does it: a key the gateway refuses, then the password (paramiko sends a second
SERVICE_REQUEST "ssh-userauth" before it). Then runs `echo fallback-ok`.

Usage: paramiko_fallback.py HOST PORT USER PASSWORD
Prints the command's output; exit code 0 when the login and the command worked."""
import io
import sys
import time

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def random_key():
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()).decode()
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem))


def main():
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    t0 = time.monotonic()
    c.connect(host, port, username=user, pkey=random_key(), password=password,
              look_for_keys=False, allow_agent=False, auth_timeout=10, timeout=10)
    print(f"login took {time.monotonic() - t0:.2f}s", file=sys.stderr)
    _, out, _ = c.exec_command("echo fallback-ok")
    text = out.read().decode()
    rc = out.channel.recv_exit_status()
    c.close()
    print(text, end="")
    return 0 if rc == 0 and text.strip() == "fallback-ok" else 1


if __name__ == "__main__":
    sys.exit(main())
