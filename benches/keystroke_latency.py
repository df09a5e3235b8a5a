#!/usr/bin/env python3
"""Interactive keystroke echo latency over one SSH session (stdlib only).

Usage: keystroke_latency.py [--count N] [--warmup W] [--gap-ms G] -- ssh [opts...] DEST

The given ssh command (which must request a remote pty, e.g. with -tt) is run with the remote
command `stty raw -echo; printf READY; exec cat`, so every byte written to the session is echoed
back exactly once, by `cat`, through the remote pty. After the marker arrives, the script sends
one byte at a time and times write -> echo read with a monotonic clock. The first W samples are
discarded (connection warm-up); N samples are kept. Between keystrokes it pauses G ms, like a
typist does, so each byte travels alone.

Prints one line: `median_us=.. p90_us=.. mean_us=.. min_us=.. max_us=.. n=..`.
"""

import argparse
import os
import select
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--gap-ms", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("ssh", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.ssh[1:] if a.ssh[:1] == ["--"] else a.ssh
    if not cmd:
        ap.error("missing ssh command")
    # printf's marker is split in two so the remote shell's own command line cannot match it.
    half = len(MARKER) // 2
    remote = "stty raw -echo; printf '%s%s' '{}' '{}'; exec cat".format(
        MARKER[:half].decode(), MARKER[half:].decode()
    )
    p = subprocess.Popen(
        cmd + [remote], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
    )
    wfd, rfd = p.stdin.fileno(), p.stdout.fileno()
    samples = []
    try:
        wait_marker(rfd, a.timeout)
        alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789"
        for i in range(a.warmup + a.count):
            b = alphabet[i % len(alphabet) : i % len(alphabet) + 1]
            t0 = time.perf_counter_ns()
            os.write(wfd, b)
            got = read_exact(rfd, 1, 5.0)
            t1 = time.perf_counter_ns()
            if got != b:
                raise RuntimeError(f"echo mismatch: sent {b!r}, got {got!r}")
            if i >= a.warmup:
                samples.append((t1 - t0) / 1000.0)
            if a.gap_ms > 0:
                time.sleep(a.gap_ms / 1000.0)
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    samples.sort()
    p90 = statistics.quantiles(samples, n=10, method="inclusive")[8]
    print(
        "median_us={:.0f} p90_us={:.0f} mean_us={:.0f} min_us={:.0f} max_us={:.0f} n={}".format(
            statistics.median(samples),
            p90,
            statistics.fmean(samples),
            samples[0],
            samples[-1],
            len(samples),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
