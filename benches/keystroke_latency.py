#!/usr/bin/env python3
"""Interactive keystroke echo latency over SSH sessions, interleaved (stdlib only).

Usage: keystroke_latency.py [--count N] [--warmup W] [--gap-ms G] --path NAME 'ssh ... DEST' ...

Each given ssh command (which must request a remote pty, e.g. with -tt) is started with the remote
command `stty raw -echo; printf READY; exec cat`, so every byte written to a session is echoed
back exactly once, by `cat`, through the remote pty. Once every session is ready, the script
sends one byte at a time, round-robin over the sessions (one keystroke in flight at a time), and
times write -> echo read with a monotonic clock. Interleaving makes the machine's speed drift (a
shared VM) hit every path alike; each path's difference to the first is taken per round (the
samples of one round are adjacent in time), and its median reported. The first W rounds are
discarded (warm-up). Between keystrokes it pauses G ms, like a typist does.

Prints one line per path: `path=NAME median_us=.. p90_us=.. mean_us=.. min_us=.. max_us=.. n=..`
and, for every path after the first, `added path=NAME vs=FIRST median_us=.. p90_us=..`.
"""

import argparse
import os
import select
import shlex
import statistics
import subprocess
import sys
import time

MARKER = b"TG_READY_7f3a"


def read_exact(fd, n, timeout):
    buf = b""
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out waiting for {n - len(buf)} byte(s)")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError("ssh closed its output")
            buf += chunk
    return buf


def wait_marker(fd, timeout):
    buf = b""
    deadline = time.monotonic() + timeout
    while MARKER not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"remote side not ready; got {buf[-200:]!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError(f"ssh closed its output before ready; got {buf[-200:]!r}")
            buf += chunk
    # Anything after the marker would be a stray echo: there must be none.
    rest = buf.split(MARKER, 1)[1]
    if rest:
        raise RuntimeError(f"unexpected output after marker: {rest!r}")


def stats(samples):
    s = sorted(samples)
    p90 = statistics.quantiles(s, n=10, method="inclusive")[8]
    return statistics.median(s), p90, statistics.fmean(s), s[0], s[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--gap-ms", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--path", nargs=2, action="append", metavar=("NAME", "CMD"), required=True)
    a = ap.parse_args()
    # printf's marker is split in two so the remote shell's own command line cannot match it.
    half = len(MARKER) // 2
    remote = "stty raw -echo; printf '%s%s' '{}' '{}'; exec cat".format(
        MARKER[:half].decode(), MARKER[half:].decode()
    )
    procs = []
    samples = {name: [] for name, _ in a.path}
    try:
        for name, cmd in a.path:
            p = subprocess.Popen(
                shlex.split(cmd) + [remote],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
            )
            procs.append((name, p))
        for _, p in procs:
            wait_marker(p.stdout.fileno(), a.timeout)
        alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789"
        for i in range(a.warmup + a.count):
            b = alphabet[i % len(alphabet) : i % len(alphabet) + 1]
            # Rotate the order each round so no path always goes first.
            k = i % len(procs)
            for name, p in procs[k:] + procs[:k]:
                wfd, rfd = p.stdin.fileno(), p.stdout.fileno()
                t0 = time.perf_counter_ns()
                os.write(wfd, b)
                got = read_exact(rfd, 1, 5.0)
                t1 = time.perf_counter_ns()
                if got != b:
                    raise RuntimeError(f"{name}: echo mismatch: sent {b!r}, got {got!r}")
                if i >= a.warmup:
                    samples[name].append((t1 - t0) / 1000.0)
                if a.gap_ms > 0:
                    time.sleep(a.gap_ms / 1000.0)
    finally:
        for _, p in procs:
            p.terminate()
        for _, p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    first = a.path[0][0]
    for name, _ in a.path:
        med, p90, mean, lo, hi = stats(samples[name])
        print(
            "path={} median_us={:.0f} p90_us={:.0f} mean_us={:.0f} min_us={:.0f} max_us={:.0f} n={}".format(
                name, med, p90, mean, lo, hi, len(samples[name])
            )
        )
    for name, _ in a.path[1:]:
        diffs = [x - y for x, y in zip(samples[name], samples[first])]
        med, p90, _, _, _ = stats(diffs)
        print("added path={} vs={} median_us={:.0f} p90_us={:.0f}".format(name, first, med, p90))
    return 0


if __name__ == "__main__":
    sys.exit(main())
