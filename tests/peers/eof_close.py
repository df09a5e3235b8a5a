#!/usr/bin/env python3
"""Opens N sessions through the gateway that each run `cat` without a pty, send a payload, send
EOF and close the connection at once (asyncssh `write_eof()` then `close()`), C at a time.

Usage: eof_close.py HOST PORT USER KEYFILE N C
Prints one line per session: `ok <payload>` or `error <message>`; exit code 0 when every
session connected and sent its payload."""
import asyncio
import sys

import asyncssh


async def one(host, port, user, key, i, sem):
    payload = f"session-{i}-payload\n"
    async with sem:
        try:
            conn = await asyncssh.connect(
                host, port, username=user, client_keys=[key], known_hosts=None,
                agent_path=None, preferred_auth="publickey")
            chan, _ = await conn.create_session(asyncssh.SSHClientSession, "cat")
            chan.write(payload)
            chan.write_eof()
            conn.close()
            await conn.wait_closed()
            return f"ok {payload.strip()}"
        except Exception as e:  # reported, never swallowed
            return f"error {type(e).__name__}: {e}"


async def main():
    host, port, user, key, n, c = sys.argv[1:7]
    sem = asyncio.Semaphore(int(c))
    results = await asyncio.gather(
        *(one(host, int(port), user, key, i, sem) for i in range(int(n))))
    for r in results:
        print(r)
    return 0 if all(r.startswith("ok ") for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
