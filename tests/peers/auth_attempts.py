#!/usr/bin/env python3
"""Up to N wrong-password attempts on one connection (paramiko), as a password guesser does.

Usage: auth_attempts.py HOST PORT USER N
Prints `failed F closed C`: F attempts refused, C = 1 when the gateway closed the connection."""
import socket
import sys

import paramiko


def main():
    host, port, user, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    sock = socket.create_connection((host, port), timeout=20)
    t = paramiko.Transport(sock)
    t.auth_timeout = 10
    t.start_client(timeout=20)
    failed = closed = 0
    for _ in range(n):
        try:
            t.auth_password(user, "wrong password")
            print("accepted")
            return 1
        except paramiko.BadAuthenticationType:
            failed += 1
        except paramiko.AuthenticationException:
            failed += 1
        except (paramiko.SSHException, EOFError, OSError):
            closed = 1
            break
        if not t.is_active():
            closed = 1
            break
    t.close()
    print(f"failed {failed} closed {closed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
