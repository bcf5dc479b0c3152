#!/bin/sh
# Fan-out benchmark: N webhook deliveries (default 100000) to nginx answering 204 on loopback,
# keng's engine (outbox writes included) against a bare libcurl-multi client in the same run.
# Usage: [ROUNDS=5] sh bench/fanout/run.sh [N]   (from the repository root; needs nginx-light)
set -eu
N=${1:-100000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/bench/lib.sh"
TMP=$(mktemp -d /tmp/keng-bench-fanout.XXXXXX)
NGINX_PID=
cleanup() {
    stop_pid "$NGINX_PID"
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

PKGS="libuv libcurl sqlite3 libcjson openssl"
CFLAGS="-std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror"
cd "$ROOT"
cc $CFLAGS -Iinclude $(pkg-config --cflags $PKGS) bench/fanout/engine.c src/fanout.c src/outbox.c \
    src/channel_webhook.c src/channel_zalo.c src/channel_telegram.c src/channel_email.c \
    src/channel_file.c src/store.c src/ckpt.c src/media.c src/buf.c src/log.c src/auth.c \
    -o "$TMP/engine" $(pkg-config --libs $PKGS)
cc $CFLAGS $(pkg-config --cflags libuv libcurl) bench/fanout/bare.c -o "$TMP/bare" \
    $(pkg-config --libs libuv libcurl)

PORT=$(free_port)
nginx_start "$TMP/nginx" 1 4096 "http://127.0.0.1:$PORT/" "
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_buffer_size 16k;
    server {
        listen 127.0.0.1:$PORT;
        location / { return 204; }
    }"
URL="http://127.0.0.1:$PORT/hook"
ROUNDS=${ROUNDS:-5}
echo "# N=$N rounds=$ROUNDS receiver=nginx 204 on $URL, $(nproc) cores, $(curl-config --version)"
# Alternated rounds (bare, engine, bare, engine, …), each engine run on a fresh database: the VM's
# speed drifts by tens of percent within a minute, so both sides see the same drift; medians.
: > "$TMP/runs"
for i in $(seq "$ROUNDS"); do
    "$TMP/bare" "$URL" "$N" | tee -a "$TMP/runs"
    rm -f "$TMP"/keng.db*
    "$TMP/engine" "$URL" "$N" "$TMP/keng.db" | tee -a "$TMP/runs"
done
python3 - "$TMP/runs" <<'PY'
import re, statistics, sys
runs = {"bare": [], "engine": []}
for line in open(sys.argv[1]):
    kind = line.split()[0]
    kv = dict(re.findall(r"(\w+)=([0-9.]+)", line))
    runs[kind].append({k: float(kv[k]) for k in ("per_s", "cpu_us", "usr_us", "sys_us")})
med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
pairs = [100 * e["per_s"] / b["per_s"] for b, e in zip(runs["bare"], runs["engine"])]
print("bare median %.0f/s, engine median %.0f/s, ratio %.1f %% (goal >= 80 %%); median of the"
      " rounds' ratios %.1f %%; per round: %s"
      % (med["bare"]["per_s"], med["engine"]["per_s"],
         100 * med["engine"]["per_s"] / med["bare"]["per_s"], statistics.median(pairs),
         ", ".join("%.1f %%" % p for p in pairs)))
print("loop CPU per delivery (median): bare %.2f us (user %.2f, system %.2f), engine %.2f us"
      " (user %.2f, system %.2f); bare/engine %.1f %%"
      % (med["bare"]["cpu_us"], med["bare"]["usr_us"], med["bare"]["sys_us"],
         med["engine"]["cpu_us"], med["engine"]["usr_us"], med["engine"]["sys_us"],
         100 * med["bare"]["cpu_us"] / med["engine"]["cpu_us"]))
PY
