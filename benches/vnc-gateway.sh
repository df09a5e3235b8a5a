#!/usr/bin/env bash
# VNC gateway benchmark: Trailgate (recording ON, default settings) against a plain
# TLS-terminating TCP relay (benches/src/bin/tls-relay.rs) in front of the same Xvnc, and
# against Xvnc directly, in one run, alternating paths (benches/src/bin/vnc-bench.rs).
#
#   benches/vnc-gateway.sh     # after: cargo build --release -p trailgate -p trailgate-benches \
#                              #   --bin trailgate --bin vnc-bench --bin tls-relay
#
# Measures: throughput of full-screen Raw updates of a GEOMETRY (1920x1080) desktop as fast as a
# client asks for them (gateway vs relay), and the time from a KeyEvent to the update that
# shows it (gateway vs direct): keys typed into an xterm, timed to the update with their echo.
# Needs Xvnc, xsetroot (scripts/install-test-deps.sh) and xterm (apt-get install xterm).
# Knobs: GEOMETRY, FRAMES (200), ROUNDS (5), MOVES (300), TRAILGATE_BIN, REL (target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
REL=${REL:-target/release}
TG=${TRAILGATE_BIN:-$REL/trailgate}
GEOMETRY=${GEOMETRY:-1920x1080}
FRAMES=${FRAMES:-200}
ROUNDS=${ROUNDS:-5}
MOVES=${MOVES:-300}
for b in "$TG" $REL/vnc-bench $REL/tls-relay; do
  [ -x "$b" ] || { echo "missing $b: build it first (see the header)"; exit 1; }
done
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; [ -z "${KEEP_LOG:-}" ] || cp "$tmp/gw.log" "$KEEP_LOG"; rm -rf "$tmp"; }
trap cleanup EXIT
cp "$TG" "$tmp/trailgate"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
"$tmp/trailgate" certs dev --out "$tmp/certs" >/dev/null
display=$((200 + RANDOM % 500))
xport=$(free_port)
Xvnc ":$display" -rfbport "$xport" -localhost -nolisten tcp -geometry "$GEOMETRY" -depth 24 \
  -SecurityTypes None -desktop bench 2>"$tmp/xvnc.log" & pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$xport) 2>/dev/null && break; sleep 0.1; done
DISPLAY=":$display" xsetroot -solid '#406080'
# The keys' echo: a terminal at the top left (no window manager: focus follows the pointer).
DISPLAY=":$display" xterm -geometry 80x10+0+0 -e cat 2>/dev/null & pids+=($!)
hash=$(printf 'bench-pass\n' | "$tmp/trailgate" hash-password)
cat >"$tmp/trailgate.toml" <<CONF
data_dir = "data"
[ssh]
listen = "127.0.0.1:0"
[vnc]
listen = "127.0.0.1:0"
tls_cert = "certs/gateway.pem"
tls_key = "certs/gateway.key"
[[users]]
name = "bench"
password_hash = "$hash"
[[targets]]
name = "desk"
protocol = "vnc"
address = "127.0.0.1:$xport"
tls = "none"
CONF
"$tmp/trailgate" serve --config "$tmp/trailgate.toml" >"$tmp/gw.out" 2>"$tmp/gw.log" & pids+=($!)
gw_pid=$!
for _ in $(seq 100); do grep -q "vnc listening" "$tmp/gw.out" && break; sleep 0.1; done
gw=$(sed -n 's/^trailgate: vnc listening on //p' "$tmp/gw.out")
$REL/tls-relay 127.0.0.1:0 "127.0.0.1:$xport" "$tmp/certs/gateway.pem" "$tmp/certs/gateway.key" >"$tmp/relay.out" & pids+=($!)
for _ in $(seq 100); do grep -q "relay listening" "$tmp/relay.out" && break; sleep 0.1; done
relay=$(sed -n 's/^relay listening on //p' "$tmp/relay.out")
echo "Xvnc $GEOMETRY :$display on $xport; gateway $gw (pid $gw_pid); relay $relay"
${BENCH_BIN:-$REL/vnc-bench} --ca "$tmp/certs/ca.pem" --gateway "$gw" --login bench@desk --password bench-pass \
  --relay "$relay" --direct "127.0.0.1:$xport" --frames "$FRAMES" --rounds "$ROUNDS" --moves "$MOVES"
echo "gateway RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$gw_pid/status); trails: $(du -sh "$tmp/data/trails" | cut -f1)"
