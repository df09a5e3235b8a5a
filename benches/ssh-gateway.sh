#!/usr/bin/env bash
# SSH gateway benchmark: Trailgate (recording ON) vs direct OpenSSH and vs OpenSSH's own jump host
# (`ssh -J`), all on this machine, loopback only.
#
#   sudo benches/ssh-gateway.sh            # after: cargo build --release --bin trailgate
#
# What it measures, in one run:
#   1. bulk throughput, download (`ssh H 'cat FILE' >/dev/null`) and upload
#      (`ssh H 'cat >/dev/null' <FILE`), median of REPS runs, for direct / ssh -J / gateway;
#      plus the gateway's trail size and CPU use per transfer;
#   2. keystroke echo latency (benches/keystroke_latency.py) direct vs gateway;
#   3. `ssh H true` wall time direct vs gateway (hyperfine, or a plain loop without it);
#   4. (SECTIONS="load", not run by default) LOAD_SESSIONS concurrent real ssh sessions through
#      the gateway: time to establish them, gateway memory per open session, `ssh gw true` while
#      they are open, and memory and descriptors once they are closed.
#
# Setup: a throwaway OpenSSH sshd on a free loopback port (same sshd_config as tests/common), the
# release `trailgate serve` in front of it with the default recording settings (fsync = true,
# flush_interval 1s, zstd_level 3), and an ssh_config with three hosts:
#   direct -> sshd;  jump -> sshd via `ProxyJump direct` (sshd forwards to itself);  gw -> gateway.
# Every client leg uses the same cipher ($CIPHER) and key exchange ($KEX: the one russh, hence the
# gateway's upstream leg, picks against OpenSSH 9.x; OpenSSH's own default, sntrup761x25519, costs the
# client ~100 ms of CPU per connection, KEX=default keeps it). sshd gives sessions an empty HOME so
# the remote user's shell rc files (e.g. a `pyenv init` in root's .bashrc) do not dominate `ssh true`.
# The binary is copied into the temp dir first, so a concurrent rebuild cannot swap it mid-run.
# Everything lives in one temp dir, removed on exit together with every process started here.
#
# Knobs (environment): TRAILGATE_BIN, PAYLOAD_MIB (512), PAYLOAD (reuse an existing file), REPS (3),
# CIPHER (chacha20-poly1305@openssh.com), KEX (curve25519-sha256, or "default"), KEYSTROKES (500),
# KEY_GAP_MS (5), TRUE_RUNS (20), LOAD_SESSIONS (200), LOAD_BATCH (20), LOAD_ROUNDS (2),
# SECTIONS ("bulk latency true"), BULK_PATHS ("direct jump gw"), TG_FSYNC (true), TG_ZSTD_LEVEL,
# TG_ZSTD_FAST_LEVEL (set it to TG_ZSTD_LEVEL, or 3, for a recorder that never compresses faster),
# TG_FLUSH_INTERVAL (e.g. "100ms"), TG_UPSTREAM_CIPHERS (e.g. "chacha20-poly1305@openssh.com": the
# gateway's upstream leg; default: the gateway's own preference, AES-GCM first on AES-NI). The gateway inherits the environment (e.g. TOKIO_WORKER_THREADS).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${TRAILGATE_BIN:-$ROOT/target/release/trailgate}
PAYLOAD_MIB=${PAYLOAD_MIB:-512}
REPS=${REPS:-3}
CIPHER=${CIPHER:-chacha20-poly1305@openssh.com}
KEX=${KEX:-curve25519-sha256}
KEYSTROKES=${KEYSTROKES:-500}
KEY_GAP_MS=${KEY_GAP_MS:-5}
TRUE_RUNS=${TRUE_RUNS:-20}
SECTIONS=${SECTIONS:-bulk latency true}
BULK_PATHS=${BULK_PATHS:-direct jump gw}
TG_FSYNC=${TG_FSYNC:-true}
TG_ZSTD_LEVEL=${TG_ZSTD_LEVEL:-}
TG_FLUSH_INTERVAL=${TG_FLUSH_INTERVAL:-}
TG_UPSTREAM_CIPHERS=${TG_UPSTREAM_CIPHERS:-}
LOAD_SESSIONS=${LOAD_SESSIONS:-200}
LOAD_BATCH=${LOAD_BATCH:-20}
LOAD_ROUNDS=${LOAD_ROUNDS:-2}

die() { echo "ssh-gateway.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (sshd needs it to switch users): sudo $0"
[ -x "$BIN" ] || die "$BIN missing: cargo build --release --bin trailgate"
SSHD=$(command -v sshd || true)
for p in /usr/sbin/sshd /usr/local/sbin/sshd; do [ -n "$SSHD" ] || { [ -x $p ] && SSHD=$p; }; done
[ -n "$SSHD" ] || die "sshd not found (scripts/install-test-deps.sh)"
for c in ssh ssh-keygen python3 awk; do command -v $c >/dev/null || die "$c not found"; done

ulimit -n 65536 2>/dev/null || true   # the load section holds 3 descriptors per session
D=$(mktemp -d "${TMPDIR:-/var/tmp}/tg-sshbench.XXXXXX")
chmod 755 "$D"
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$D"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

has() { [[ " $SECTIONS " == *" $1 "* ]]; }
now_ns() { date +%s%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{if(NR%2)print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { # port pid what
    for _ in $(seq 1 400); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited before listening"
        sleep 0.05
    done
    die "$3 did not listen on port $1"
}
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }              # utime+stime of one process
sys_ticks() { awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print t-$5-$6, t}' /proc/stat; }  # busy total
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)

echo "# Trailgate SSH gateway benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $NCPU CPUs, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(uname -r)"
echo "openssh: $(ssh -V 2>&1)"
echo "trailgate: $BIN (built $(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ); repo HEAD $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "temp dir: $D"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every number)"
cp "$BIN" "$D/trailgate"; BIN=$D/trailgate

# ---------------------------------------------------------------- keys, sshd, gateway, ssh_config
mkdir -p /run/sshd
for k in host_key gateway_key client_key; do ssh-keygen -q -t ed25519 -N '' -C bench -f "$D/$k"; done
cat "$D/gateway_key.pub" "$D/client_key.pub" > "$D/authorized_keys"
SSHD_PORT=$(free_port)
cat > "$D/sshd_config" <<EOF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $D/host_key
PidFile $D/sshd.pid
AuthorizedKeysFile $D/authorized_keys
PermitRootLogin yes
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
AllowTcpForwarding yes
GatewayPorts no
AllowAgentForwarding yes
X11Forwarding no
PrintMotd no
PrintLastLog no
LogLevel DEBUG1
MaxSessions 100
MaxStartups 2000
SetEnv HOME=$D/home
EOF
mkdir -p "$D/home"
"$SSHD" -t -f "$D/sshd_config" || die "sshd -t failed"
"$SSHD" -D -e -E "$D/sshd.log" -f "$D/sshd_config" </dev/null >/dev/null 2>&1 &
SSHD_PID=$!; PIDS+=("$SSHD_PID")
wait_port "$SSHD_PORT" "$SSHD_PID" sshd

REC="fsync = $TG_FSYNC"
[ -n "$TG_ZSTD_LEVEL" ] && REC+=$'\n'"zstd_level = $TG_ZSTD_LEVEL"
[ -n "${TG_ZSTD_FAST_LEVEL:-}" ] && REC+=$'\n'"zstd_fast_level = $TG_ZSTD_FAST_LEVEL"
[ -n "$TG_FLUSH_INTERVAL" ] && REC+=$'\n'"flush_interval = \"$TG_FLUSH_INTERVAL\""
UPC=""
[ -n "$TG_UPSTREAM_CIPHERS" ] && UPC="upstream_ciphers = [$(sed 's/[^ ][^ ]*/"&"/g; s/ /, /g' <<<"$TG_UPSTREAM_CIPHERS")]"
mkdir -p "$D/gw"
cat > "$D/gw/trailgate.toml" <<EOF
data_dir = "$D/gw/data"
node_id = "bench-node"

[ssh]
listen = "127.0.0.1:0"
$UPC

[recording]
$REC

[[users]]
name = "alice"
authorized_keys = ["$(cat "$D/client_key.pub")"]

[[targets]]
name = "db1"
address = "127.0.0.1:$SSHD_PORT"
host_key = "$(cat "$D/host_key.pub")"
user = "$(id -un)"
private_key = "$D/gateway_key"
allow_users = ["alice"]
channel_policy = "bench"

[channel_policies.bench]
allow = ["session-shell", "session-exec"]
EOF
TRAILGATE_LOG=info "$BIN" serve --config "$D/gw/trailgate.toml" </dev/null >"$D/gw/stdout" 2>"$D/gw/stderr" &
GW_PID=$!; PIDS+=("$GW_PID")
GW_ADDR=
for _ in $(seq 1 600); do
    GW_ADDR=$(sed -n 's/^trailgate: ssh listening on //p' "$D/gw/stdout" | head -1)
    [ -n "$GW_ADDR" ] && break
    kill -0 "$GW_PID" 2>/dev/null || { cat "$D/gw/stderr" >&2; die "gateway exited"; }
    sleep 0.05
done
[ -n "$GW_ADDR" ] || die "gateway did not start: $(cat "$D/gw/stderr")"
GW_PORT=${GW_ADDR##*:}

# A plain TCP relay to sshd (benches/src/bin/tcp-relay.rs), the latency floor of any gateway:
# one more process and two more loopback hops, no SSH work at all. Optional.
RELAY_BIN=${RELAY_BIN:-$ROOT/target/release/tcp-relay}
RELAY_PORT=
if [ -x "$RELAY_BIN" ]; then
    cp "$RELAY_BIN" "$D/tcp-relay"
    "$D/tcp-relay" 127.0.0.1:0 "127.0.0.1:$SSHD_PORT" >"$D/relay.out" 2>&1 &
    RELAY_PID=$!
    PIDS+=("$RELAY_PID")
    for _ in $(seq 1 200); do
        RELAY_PORT=$(sed -n 's/^relay listening on .*://p' "$D/relay.out" | head -1)
        [ -n "$RELAY_PORT" ] && break
        sleep 0.05
    done
fi

CFG=$D/ssh_config
cat > "$CFG" <<EOF
Host direct jump
  HostName 127.0.0.1
  Port $SSHD_PORT
  User $(id -un)
Host jump
  ProxyJump direct
Host relay
  HostName 127.0.0.1
  Port ${RELAY_PORT:-1}
  User $(id -un)
Host gw
  HostName 127.0.0.1
  Port $GW_PORT
  User alice@db1
Host *
  IdentityFile $D/client_key
  IdentitiesOnly yes
  Ciphers $CIPHER
$( [ "$KEX" = default ] || echo "  KexAlgorithms $KEX" )
  Compression no
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
  ControlMaster no
  ControlPath none
  ConnectTimeout 20
EOF
S() { ssh -F "$CFG" "$@"; }
for h in direct jump gw; do
    [ "$(S "$h" 'echo ok' </dev/null)" = ok ] || die "ssh $h does not work"
done

# Negotiated ciphers: the client legs from `ssh -v`, the gateway's upstream leg from sshd's log
# (the connection whose client software is russh).
client_cipher() {
    local v; v=$(S -o LogLevel=DEBUG1 "$1" true </dev/null 2>&1)
    echo "$(sed -n 's/.*kex: server->client cipher: \([^ ]*\).*/\1/p' <<<"$v" | sort -u | paste -sd, -)," \
         "kex $(sed -n 's/.*kex: algorithm: \([^ ]*\).*/\1/p' <<<"$v" | sort -u | paste -sd, -)"
}
echo
echo "sshd $SSHD_PORT, gateway $GW_ADDR, recording: $(echo "$REC" | paste -sd';' -) (others default)"
echo "cipher client->sshd (direct):  $(client_cipher direct)"
echo "cipher client legs (ssh -J):   $(client_cipher jump)   (outer jump leg and inner end-to-end leg)"
echo "cipher client->gateway:        $(client_cipher gw)"
russh_log() { awk -v pat="$1" '/remote software version russh/{r=1} r && $0 ~ pat {c=$0} END{print c}' "$D/sshd.log"; }
UP_CIPHER="$(russh_log 'kex: client->server cipher:' | sed -n 's/.*cipher: \([^ ]*\) MAC: .*/\1/p'), kex $(russh_log 'kex: algorithm:' | sed -n 's/.*kex: algorithm: \([^ ]*\).*/\1/p')"
UP_SW=$(sed -n 's/.*remote software version \(russh[^,]*\).*/\1/p' "$D/sshd.log" | head -1)
echo "cipher gateway->sshd:          ${UP_CIPHER:-unknown} (${UP_SW:-russh}, ${TG_UPSTREAM_CIPHERS:-default preference}, as seen by sshd)"

# ---------------------------------------------------------------- newest trail, once sealed
newest_trail() { find "$D/gw/data" -name '*.trail' -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-; }
trail_count() { find "$D/gw/data" -name '*.trail' 2>/dev/null | wc -l; }
ended_count() { grep -c 'session ended' "$D/gw/stderr" || true; }
# -> how long the newest ended session waited for its trail writer (and how many of its frames were
# compressed below zstd_level to catch up), once its end line is logged
recorder_wait() {
    for _ in $(seq 1 100); do
        if [ "$(ended_count)" -ge "$1" ]; then
            grep 'session ended' "$D/gw/stderr" | tail -1 |
                sed -n 's/.*recording_wait_ms=\([0-9]*\).*recording_fast_frames=\([0-9]*\).*/\1 ms, \2 fast frames/p'
            return 0
        fi
        sleep 0.1
    done
    echo "?"
}
wait_sealed() { # expected trail count -> prints the newest trail path once sealed
    local t=
    for _ in $(seq 1 600); do
        if [ "$(trail_count)" -ge "$1" ]; then
            t=$(newest_trail)
            if "$BIN" trail info --json "$t" 2>/dev/null | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("integrity")=="sealed" else 1)'; then
                echo "$t"; return 0
            fi
        fi
        sleep 0.1
    done
    die "no sealed trail after the gateway run"
}

# ---------------------------------------------------------------- 1. bulk throughput
declare -A MBPS
if has bulk; then
    if [ -n "${PAYLOAD:-}" ]; then
        [ -f "$PAYLOAD" ] || die "PAYLOAD=$PAYLOAD missing"
        PAYLOAD_MIB=$(( $(stat -c %s "$PAYLOAD") / 1048576 ))
    else
        PAYLOAD=$D/payload.bin
        echo
        echo "generating $PAYLOAD_MIB MiB payload (1 MiB blocks alternating random bytes / log-like text)..."
        python3 - "$PAYLOAD" "$PAYLOAD_MIB" <<'PY'
import random, sys
path, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(20240601)
users = ["alice", "bob", "carol", "dave", "eve", "mallory", "trent", "peggy"]
acts = ["GET /api/v1/items", "POST /api/v1/login", "SELECT * FROM orders WHERE id=", "rsync --delta",
        "kubectl get pods -n", "systemctl restart", "tar -czf backup-", "INFO worker heartbeat"]
def text_block(n):
    out, size = [], 0
    while size < n:
        line = "2024-06-%02dT%02d:%02d:%02d.%06dZ host-%03d %s[%d]: user=%s src=10.%d.%d.%d %s%d status=%d bytes=%d\n" % (
            rng.randint(1, 30), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999999),
            rng.randint(0, 199), rng.choice(["sshd", "nginx", "app", "cron", "kernel"]), rng.randint(100, 65000),
            rng.choice(users), rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255), rng.choice(acts),
            rng.randint(0, 10**6), rng.choice([200, 200, 200, 201, 304, 404, 500]), rng.randint(0, 10**7))
        out.append(line); size += len(line)
    return "".join(out).encode()[:n]
with open(path, "wb") as f:
    for i in range(mib):
        f.write(rng.randbytes(1 << 20) if i % 2 == 0 else text_block(1 << 20))
PY
    fi
    echo "payload: $PAYLOAD ($PAYLOAD_MIB MiB, zstd -3 ratio of the payload: $(python3 -c '
import sys,subprocess
d=open(sys.argv[1],"rb").read(64<<20)
try:
    c=subprocess.run(["zstd","-3","-c","-q"],input=d,capture_output=True,check=True).stdout
    print("%.2f" % (len(c)/len(d)))
except Exception: print("n/a (no zstd CLI)")' "$PAYLOAD"))"
    cat "$PAYLOAD" > /dev/null   # page cache warm for every path alike
    echo
    echo "| run | direction | path | seconds | MiB/s | machine CPU busy | machine CPU ms/MiB | gateway CPU | trail | waited for recorder, fast frames |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    TRAIL_DOWN=; TRAIL_UP=; GWCPU_DOWN=(); GWCPU_UP=()
    for dir in down up; do
        for rep in $(seq 1 "$REPS"); do
            for path in $BULK_PATHS; do
                n_before=$(trail_count); e_before=$(ended_count)
                read -r b0 t0 < <(sys_ticks); g0=$(cpu_ticks "$GW_PID"); s=$(now_ns)
                if [ $dir = down ]; then
                    S "$path" "cat '$PAYLOAD'" </dev/null >/dev/null
                else
                    S "$path" 'cat >/dev/null' <"$PAYLOAD"
                fi
                e=$(now_ns); read -r b1 t1 < <(sys_ticks); g1=$(cpu_ticks "$GW_PID")
                secs=$(awk -v a="$s" -v b="$e" 'BEGIN{printf "%.3f", (b-a)/1e9}')
                mbps=$(awk -v m="$PAYLOAD_MIB" -v s="$secs" 'BEGIN{printf "%.1f", m/s}')
                busy=$(awk -v b=$((b1-b0)) -v t=$((t1-t0)) -v n="$NCPU" 'BEGIN{printf "%.0f%% of %d CPUs", t? 100*b/t : 0, n}')
                # Whole machine (clients, sshd, gateway, kernel): CPU milliseconds per MiB moved.
                mcpu=$(awk -v b=$((b1-b0)) -v hz="$HZ" -v m="$PAYLOAD_MIB" 'BEGIN{printf "%.1f", 1000*b/hz/m}')
                gcpu=$(awk -v g=$((g1-g0)) -v hz="$HZ" -v s="$secs" 'BEGIN{printf "%.2fs (%.0f%% of 1 CPU)", g/hz, 100*g/hz/s}')
                trail="-"; waited="-"
                if [ $path = gw ]; then
                    t=$(wait_sealed $((n_before + 1)))
                    waited=$(recorder_wait $((e_before + 1)))
                    sz=$(stat -c %s "$t")
                    trail=$(awk -v z="$sz" 'BEGIN{printf "%.1f MiB", z/1048576}')
                    if [ $dir = down ]; then TRAIL_DOWN=${TRAIL_DOWN:-$trail}; GWCPU_DOWN+=("$(awk -v g=$((g1-g0)) -v hz="$HZ" 'BEGIN{print g/hz}')")
                    else TRAIL_UP=${TRAIL_UP:-$trail}; GWCPU_UP+=("$(awk -v g=$((g1-g0)) -v hz="$HZ" 'BEGIN{print g/hz}')"); fi
                else
                    gcpu="-"
                fi
                MBPS[$dir,$path]+="$mbps "
                echo "| $rep | $dir | $path | $secs | $mbps | $busy | $mcpu | $gcpu | $trail | $waited |"
            done
        done
    done
    VERIFY=$("$BIN" trail verify "$(newest_trail)" 2>&1 | tail -1 || true)
    echo
    echo "trail verify (last gateway upload): $VERIFY"
    # SHOW_GW_LOG=PATTERN: the gateway's log lines matching it (e.g. "session ended").
    [ -z "${SHOW_GW_LOG:-}" ] || grep -e "$SHOW_GW_LOG" "$D/gw/stderr" || true
fi

# ---------------------------------------------------------------- 2. keystroke echo latency
if has latency; then
    echo
    LAT_PATHS="direct${RELAY_PORT:+ relay} jump gw"
    args=()
    for path in $LAT_PATHS; do args+=(--path "$path" "ssh -F $CFG -tt $path"); done
    # All paths in one run, keystrokes interleaved round-robin: machine drift hits all alike.
    lat_g0=$(cpu_ticks "$GW_PID"); lat_r0=$( [ -n "$RELAY_PORT" ] && cpu_ticks "$RELAY_PID" || echo 0)
    LAT_OUT=$(python3 "$ROOT/benches/keystroke_latency.py" --count "$KEYSTROKES" --gap-ms "$KEY_GAP_MS" "${args[@]}")
    lat_g1=$(cpu_ticks "$GW_PID"); lat_r1=$( [ -n "$RELAY_PORT" ] && cpu_ticks "$RELAY_PID" || echo 0)
    echo "$LAT_OUT" | sed 's/^/keystroke echo: /'
    LAT_GW_CPU_US=$(awk -v g=$((lat_g1 - lat_g0)) -v hz="$HZ" -v n="$KEYSTROKES" 'BEGIN{printf "%.0f", g / hz * 1e6 / n}')
    LAT_RELAY_CPU_US=$(awk -v g=$((lat_r1 - lat_r0)) -v hz="$HZ" -v n="$KEYSTROKES" 'BEGIN{printf "%.0f", g / hz * 1e6 / n}')
    echo "CPU per keystroke round trip (incl. session setup): gateway $LAT_GW_CPU_US µs, tcp-relay $LAT_RELAY_CPU_US µs"
fi

# ---------------------------------------------------------------- 3. ssh HOST true
declare -A TRUE_MS
if has true; then
    echo
    if command -v hyperfine >/dev/null; then
        hyperfine -N --warmup 3 --runs "$TRUE_RUNS" --export-json "$D/true.json" \
            "ssh -F $CFG direct true" "ssh -F $CFG gw true" 2>&1 | sed "s|$D|\$TMP|g"
        eval "$(python3 - "$D/true.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    name = r["command"].split()[-2]
    print("TRUE_MS[%s]='%.1f %.1f %.1f'" % (name, r["median"] * 1e3, r["min"] * 1e3, r["max"] * 1e3))
PY
)"
    else
        for path in direct gw; do
            S "$path" true </dev/null; ts=()
            for _ in $(seq 1 "$TRUE_RUNS"); do
                s=$(now_ns); S "$path" true </dev/null; e=$(now_ns); ts+=("$(( (e - s) / 1000 ))")
            done
            TRUE_MS[$path]="$(awk -v u="$(median "${ts[@]}")" 'BEGIN{printf "%.1f", u/1000}') - -"
        done
    fi
fi

# ---------------------------------------------------------------- 4. many concurrent sessions
if has load; then
    echo
    rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
    fd_count() { ls "/proc/$1/fd" | wc -l; }
    ready_count() { grep -l '^ready$' "$D"/load/*.out 2>/dev/null | wc -l; }
    wait_ready() { # count
        for _ in $(seq 1 1200); do
            [ "$(ready_count)" -ge "$1" ] && return 0
            sleep 0.1
        done
        die "only $(ready_count) of $1 load sessions came up (see $D/load/*.err)"
    }
    LOAD_ROWS=""
    S gw true </dev/null
    # Several rounds: memory and descriptors must come back, not creep from round to round.
    for round in $(seq 1 "$LOAD_ROUNDS"); do
        rm -rf "$D/load"; mkdir -p "$D/load"
        rss0=$(rss_kib "$GW_PID"); fd0=$(fd_count "$GW_PID"); c0=$(cpu_ticks "$GW_PID")
        LOAD_PIDS=()
        s=$(now_ns)
        for i in $(seq 1 "$LOAD_SESSIONS"); do
            # ssh itself in the background (not the S function's subshell), so its PID is the client's.
            ssh -F "$CFG" gw 'echo ready; exec sleep 3600' </dev/null >"$D/load/$i.out" 2>"$D/load/$i.err" &
            LOAD_PIDS+=($!); PIDS+=($!)
            # At most LOAD_BATCH logins in flight, as a fleet of admins would log in, not a SYN flood.
            if (( i % LOAD_BATCH == 0 )); then wait_ready "$i"; fi
        done
        wait_ready "$LOAD_SESSIONS"
        e=$(now_ns)
        LOAD_SETUP_S=$(awk -v n=$((e - s)) 'BEGIN{printf "%.1f", n/1e9}')
        LOAD_CPU_MS_PER_LOGIN=$(awk -v t=$(( $(cpu_ticks "$GW_PID") - c0 )) -v hz="$HZ" -v n="$LOAD_SESSIONS" 'BEGIN{printf "%.1f", t/hz*1e3/n}')
        rss1=$(rss_kib "$GW_PID"); fd1=$(fd_count "$GW_PID")
        ts=()
        for _ in $(seq 1 10); do
            s=$(now_ns); S gw true </dev/null; e=$(now_ns); ts+=("$(( (e - s) / 1000 ))")
        done
        LOAD_TRUE_MS=$(awk -v u="$(median "${ts[@]}")" 'BEGIN{printf "%.1f", u/1000}')
        kill "${LOAD_PIDS[@]}" 2>/dev/null || true
        wait "${LOAD_PIDS[@]}" 2>/dev/null || true
        # Closed once the gateway holds no more descriptors than before (sockets and trails released).
        for _ in $(seq 1 600); do [ "$(fd_count "$GW_PID")" -le $((fd0 + 2)) ] && break; sleep 0.1; done
        fd2=$(fd_count "$GW_PID"); rss2=$(rss_kib "$GW_PID")
        LOAD_PER_SESSION_KIB=$(( (rss1 - rss0) / LOAD_SESSIONS ))
        LOAD_ROW="| $round | $LOAD_SESSIONS | $LOAD_SETUP_S s | $LOAD_CPU_MS_PER_LOGIN ms | $((rss0 / 1024)) / $((rss1 / 1024)) / $((rss2 / 1024)) MiB | $LOAD_PER_SESSION_KIB KiB | $fd0 / $fd1 / $fd2 | $LOAD_TRUE_MS ms |"
        echo "load: $LOAD_ROW"
        LOAD_ROWS+="$LOAD_ROW"$'\n'
    done
fi

# ---------------------------------------------------------------- summary
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## Summary"
echo
echo "Recording ON: $(echo "$REC" | paste -sd';' -) (flush_interval/zstd_level default unless listed). Client legs: cipher $CIPHER, kex $KEX."
echo "Gateway upstream leg: ${UP_CIPHER:-unknown} (${UP_SW:-russh} default preference)."
verdict() { if [ "$1" = 1 ]; then echo "met"; else echo "**missed**"; fi; }
if has bulk; then
    echo
    echo "### Bulk throughput ($PAYLOAD_MIB MiB, median of $REPS, MiB/s)"
    echo
    echo "| direction | direct ssh | ssh -J | gateway | gateway / ssh -J (median of per-run ratios) | gateway / direct | gateway CPU s (median) | trail size (1 run) | target >= 1.0x ssh -J |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for dir in down up; do
        md=$(median ${MBPS[$dir,direct]:-}); mj=$(median ${MBPS[$dir,jump]:-}); mg=$(median ${MBPS[$dir,gw]:-})
        if [ $dir = down ]; then tr=$TRAIL_DOWN; gc=$(median "${GWCPU_DOWN[@]}"); lbl="download"; else tr=$TRAIL_UP; gc=$(median "${GWCPU_UP[@]}"); lbl="upload"; fi
        ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if (a == "" || b == "" || b == 0) print "-"; else printf "%.2fx", a/b}'; }
        # The ratio per repetition (gw and jump run back to back), then its median: drift of a
        # shared VM between repetitions cancels out.
        pair_ratios() { paste -d' ' <(tr ' ' '\n' <<<"${MBPS[$dir,gw]:-}" | sed '/^$/d') <(tr ' ' '\n' <<<"${MBPS[$dir,$1]:-}" | sed '/^$/d') | awk '$1 != "" && $2 > 0 {printf "%.4f ", $1/$2}'; }
        rj=$(median $(pair_ratios jump)); rd=$(median $(pair_ratios direct))
        rj=${rj:+${rj}x}; rd=${rd:+${rd}x}; rj=${rj:--}; rd=${rd:--}
        case $rj in -) v="-" ;; *) v=$(verdict "$(awk -v r="${rj%x}" 'BEGIN{print (r >= 1.0) ? 1 : 0}')") ;; esac
        echo "| $lbl | ${md:--} | ${mj:--} | ${mg:--} | $rj | $rd | ${gc:--} | ${tr:--} | $v |"
    done
fi
if has latency; then
    get() { grep -E "^${1:+$1 }path=$2 " <<<"$LAT_OUT" | sed -n "s/.* $3=\([0-9.-]*\).*/\1/p"; }
    added=$(get added gw median_us)
    echo
    echo "### Keystroke echo latency ($KEYSTROKES keystrokes per path, 1 byte each, $KEY_GAP_MS ms apart, paths interleaved, µs)"
    echo
    echo "| path | median | p90 | added vs direct: median of per-round differences | p90 |"
    echo "|---|---|---|---|---|"
    for path in $LAT_PATHS; do
        echo "| $path | $(get "" "$path" median_us) | $(get "" "$path" p90_us) | $(get added "$path" median_us) | $(get added "$path" p90_us) |"
    done
    echo
    echo "Target: added latency at the median < 100 µs: $(verdict "$(awk -v a="$added" 'BEGIN{print (a < 100) ? 1 : 0}')") ($added µs)."
fi
if has true; then
    read -r td _ <<<"${TRUE_MS[direct]}"; read -r tg _ <<<"${TRUE_MS[gw]}"
    diff=$(awk -v a="$tg" -v b="$td" 'BEGIN{printf "%.1f", a-b}')
    echo
    echo "### \`ssh HOST true\` wall time ($TRUE_RUNS runs, ms)"
    echo
    echo "| path | median | min | max |"
    echo "|---|---|---|---|"
    read -r a b c <<<"${TRUE_MS[direct]}"; echo "| direct ssh | $a | $b | $c |"
    read -r a b c <<<"${TRUE_MS[gw]}"; echo "| gateway | $a | $b | $c |"
    echo "| added by gateway | $diff | | |"
    echo
    echo "Target: gateway <= direct + 60 ms: $(verdict "$(awk -v d="$diff" 'BEGIN{print (d <= 60) ? 1 : 0}')") (+$diff ms)."
fi
if has load; then
    echo
    echo "### $LOAD_SESSIONS concurrent sessions (logins at most $LOAD_BATCH at a time, each idle in \`sleep\` once up)"
    echo
    echo "| round | sessions | all established in | gateway CPU per login | gateway RSS before / all open / all closed | RSS per open session | gateway fds before / open / closed | \`ssh gw true\` while open (median of 10) |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s' "$LOAD_ROWS"
fi
