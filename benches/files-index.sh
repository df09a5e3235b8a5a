#!/usr/bin/env bash
# Files-index speed: indexing the trail of one large SFTP upload (`trail files`: SFTP parsing,
# ranges, SHA-256 of the content) against reading the same trail with `trail cat` (decompress and
# write the channel out), in interleaved rounds; medians, and each command's peak RSS (memory
# must not grow with the file).
#
#   benches/files-index.sh        # after: cargo build --release --bin trailgate
#
# Setup: `trailgate demo` (a gateway and its built-in SSH target, loopback only, in a temp dir),
# OpenSSH `sftp` (commands on stdin: `-b` would forbid the password) uploads SIZE_MIB of random data through it, the demo stops (the trail is
# sealed), then the rounds run on that trail. The page cache holds the trail for every round
# after the first one of each command (the first round of each is a warm-up, not counted).
# Knobs: SIZE_MIB (1024), ROUNDS (5), TRAILGATE_BIN, KEEP (a directory to copy the trail to).
set -euo pipefail
cd "$(dirname "$0")/.."
TG=${TRAILGATE_BIN:-target/release/trailgate}
SIZE_MIB=${SIZE_MIB:-1024}
ROUNDS=${ROUNDS:-5}
[ -x "$TG" ] || { echo "missing $TG: cargo build --release --bin trailgate"; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
cp "$TG" "$tmp/trailgate"
"$tmp/trailgate" demo --dir "$tmp/demo" --ssh-port 0 --api-port 0 >"$tmp/demo.out" 2>"$tmp/demo.log" &
pid=$!
for _ in $(seq 300); do [ -s "$tmp/demo/README.txt" ] && break; sleep 0.1; done
[ -s "$tmp/demo/README.txt" ] || { cat "$tmp/demo.log"; exit 1; }
port=$(grep -o 'ssh -p [0-9]*' "$tmp/demo/README.txt" | awk '{print $3}')
pw=$(grep -o 'password: .*' "$tmp/demo/README.txt" | awk '{print $2}')
printf '#!/bin/sh\necho %s\n' "$pw" >"$tmp/askpass"
chmod +x "$tmp/askpass"
echo "writing $SIZE_MIB MiB of random data"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$tmp/upload.bin"
mkdir -p "$tmp/remote"
echo "put $tmp/upload.bin $tmp/remote/upload.bin" >"$tmp/batch"
t0=$(date +%s.%N)
SSH_ASKPASS="$tmp/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=:0 setsid sftp -q -P "$port" \
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o PubkeyAuthentication=no \
  -o LogLevel=ERROR demo@127.0.0.1 <"$tmp/batch" >/dev/null
t1=$(date +%s.%N)
cmp "$tmp/upload.bin" "$tmp/remote/upload.bin"
rm -f "$tmp/remote/upload.bin"
kill -INT "$pid"
wait "$pid" || true
pid=
trail=$(find "$tmp/demo/data/trails" -name '*.trail' | head -1)
[ -z "${KEEP:-}" ] || cp "$trail" "$KEEP/"
rm -f "$tmp/upload.bin.keep"
python3 - "$tmp/trailgate" "$trail" "$ROUNDS" "$SIZE_MIB" "$t0" "$t1" "$tmp/upload.bin" <<'PY'
import hashlib, json, os, statistics, subprocess, sys, time
tg, trail, rounds, mib, t0, t1, upload = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
info = json.loads(subprocess.check_output([tg, "trail", "info", "--json", trail]))
ch = next(c["id"] for c in info["channels"] if c["type"] == "session-subsystem:sftp")
cmds = {
    "cat": [tg, "trail", "cat", trail, "--channel", str(ch)],
    "files": [tg, "trail", "files", "--json", trail],
}
def run(argv):
    # Peak RSS from GNU time, which forks from a small process (a child forked from this
    # Python would report Python's RSS as its peak).
    start = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + argv, stderr=subprocess.PIPE,
                       stdout=subprocess.DEVNULL if argv[2] == "cat" else subprocess.PIPE, check=True)
    took = time.monotonic() - start
    return took, int(p.stderr.decode().strip().splitlines()[-1]), p.stdout or b""
res = {k: [] for k in cmds}
rss = {k: 0 for k in cmds}
for r in range(rounds + 1):
    for k, argv in cmds.items():
        t, m, out = run(argv)
        if r == 0:
            if k == "files":
                f = json.loads(out)["files"][0]
                # Streamed: a parent holding the file would lend its RSS to every forked child.
                hs = hashlib.sha256()
                with open(upload, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        hs.update(chunk)
                h = hs.hexdigest()
                assert f["sha256"] == h and f["status"] == "ok", f
            continue
        res[k].append(t)
        rss[k] = max(rss[k], m)
size = os.path.getsize(trail)
med = {k: statistics.median(v) for k, v in res.items()}
print(f"upload: {mib} MiB through the gateway in {t1 - t0:.1f} s; trail {size / 2**20:.0f} MiB")
for k in cmds:
    rounds_s = " ".join(f"{t:.2f}" for t in res[k])
    print(f"{k:6} median {med[k]:.2f} s ({mib / med[k]:.0f} MiB/s of content), peak RSS {rss[k] / 1024:.1f} MiB  rounds: {rounds_s}")
print(f"files index speed / cat speed: {med['cat'] / med['files']:.2f} (goal >= 0.80)")
PY
