#!/usr/bin/env python3
"""A password attempt with a login name of LEN bytes (paramiko).

Usage: long_login.py HOST PORT LEN
Prints `refused` (authentication failed or the connection was closed) or `accepted`."""
import socket
import sys

import paramiko


def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sock = socket.create_connection((host, port), timeout=20)
    t = paramiko.Transport(sock)
    t.start_client(timeout=20)
    try:
        t.auth_password("a" * n, "whatever")
        print("accepted")
    except (paramiko.AuthenticationException, paramiko.SSHException, EOFError, OSError):
        print("refused")
    finally:
        t.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
