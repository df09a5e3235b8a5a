#!/usr/bin/env python3
"""N simultaneous password attempts with a wrong password (asyncssh), as a brute-force burst.

Usage: password_burst.py HOST PORT USER N
Prints `refused R other O`: R attempts the gateway refused (PermissionDenied or a disconnect),
O anything else. Exit code 0 when every attempt was refused."""
import asyncio
import sys

import asyncssh


async def one(host, port, user):
    try:
        conn = await asyncssh.connect(
            host, port, username=user, password="wrong password", known_hosts=None,
            client_keys=None, agent_path=None, preferred_auth="password",
            login_timeout=120)
        conn.close()
        return "accepted"
    except (asyncssh.PermissionDenied, asyncssh.DisconnectError, ConnectionError):
        return "refused"
    except Exception as e:
        return f"other {type(e).__name__}: {e}"


async def main():
    host, port, user, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    results = await asyncio.gather(*(one(host, port, user) for _ in range(n)))
    refused = sum(r == "refused" for r in results)
    others = [r for r in results if r != "refused"]
    print(f"refused {refused} other {len(others)}")
    for o in others[:5]:
        print(o)
    return 0 if not others else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
