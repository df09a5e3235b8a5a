#!/usr/bin/env bash
# Console first page with 1,000,000 sessions in the catalog: the time from navigation to the
# sessions table showing its first page (50 rows) in headless Chromium, ROUNDS cold page loads.
#
#   benches/console-first-page.sh     # after: cargo build --release --bin trailgate
#
# Builds the catalog with the catalog benchmark (CATALOG_KEEP; CATALOG_SESSIONS, default
# 1,000,000; about 1.5 minutes) unless DATA already holds one, starts `trailgate serve` on it
# (API only), and drives Chromium over WebDriver (chromedriver, scripts/install-test-deps.sh).
# The token is placed in the tab's sessionStorage first, as signing in does.
# Knobs: DATA (a data directory to reuse), ROUNDS (5), TRAILGATE_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
TG=${TRAILGATE_BIN:-target/release/trailgate}
ROUNDS=${ROUNDS:-5}
[ -x "$TG" ] || { echo "missing $TG: cargo build --release --bin trailgate"; exit 1; }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
DATA=${DATA:-$tmp/data}
if [ ! -s "$DATA/catalog.sqlite" ]; then
  mkdir -p "$DATA"
  CATALOG_KEEP="$DATA" cargo bench -q -p trailgate-benches --bench catalog | grep -E "^catalog:"
fi
token=bench-console-token
sha=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
cat >"$tmp/trailgate.toml" <<CONF
data_dir = "$DATA"
[ssh]
listen = "127.0.0.1:0"
[api]
listen = "127.0.0.1:0"
[[api_tokens]]
name = "bench"
token_sha256 = "$sha"
role = "auditor"
CONF
"$TG" serve --config "$tmp/trailgate.toml" >"$tmp/out" 2>"$tmp/log" & pids+=($!)
for _ in $(seq 300); do grep -q "api listening on" "$tmp/out" && break; sleep 0.1; done
api=$(grep -o 'api listening on [0-9.:]*' "$tmp/out" | awk '{print $4}')
[ -n "$api" ] || { cat "$tmp/log"; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chromedriver --port="$port" >/dev/null 2>&1 & pids+=($!)
python3 - "$port" "$api" "$token" "$ROUNDS" "$tmp/profile" <<'PY'
import json, statistics, sys, time, urllib.request
port, api, token, rounds, profile = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
base = f"http://127.0.0.1:{port}"
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req).read())["value"]
for _ in range(100):
    try:
        if call("GET", "/status")["ready"]: break
    except Exception: pass
    time.sleep(0.1)
args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1400,1000", f"--user-data-dir={profile}"]
sid = call("POST", "/session", {"capabilities": {"alwaysMatch": {"browserName": "chrome",
      "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}})["sessionId"]
s = f"/session/{sid}"
def js(script, *a):
    return call("POST", s + "/execute/sync", {"script": script, "args": list(a)})
call("POST", s + "/url", {"url": f"http://{api}/console/app.css"})
js("sessionStorage.setItem('tg_token', arguments[0])", token)
times = []
for r in range(rounds + 1):
    call("POST", s + "/url", {"url": f"http://{api}/?r={r}#/sessions"})
    for _ in range(600):
        t = js("const n = document.querySelectorAll('#sessions tr[data-id]').length; "
               "return n >= 50 ? performance.now() : null;")
        if t is not None: break
        time.sleep(0.01)
    else:
        sys.exit("the first page never showed")
    total = js("const e = document.querySelector('#total'); return e ? e.textContent : null;")
    if r: times.append(t)
    print(f"round {r}{' (warm-up)' if r == 0 else ''}: first page in {t:.0f} ms ({total})")
call("DELETE", s)
print(f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms over {rounds} loads (goal < 1000 ms)")
PY
