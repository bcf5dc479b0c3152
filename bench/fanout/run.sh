#!/bin/sh
# Fan-out benchmark: N webhook deliveries (default 100000) to nginx answering 204 on loopback,
# keng's engine (outbox writes included) against a bare libcurl-multi client in the same run.
# Usage: sh bench/fanout/run.sh [N]     (from the repository root; needs nginx-light)
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
mkdir -p "$TMP/nginx/logs"
cat > "$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_buffer_size 16k;
    server {
        listen 127.0.0.1:$PORT;
        location / { return 204; }
    }
}
CONF
/usr/sbin/nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" &
NGINX_PID=$!
wait_nginx "http://127.0.0.1:$PORT/" "$NGINX_PID" "$TMP/nginx"
URL="http://127.0.0.1:$PORT/hook"
echo "# N=$N receiver=nginx 204 on $URL, $(nproc) cores, $(curl-config --version)"
B1=$("$TMP/bare" "$URL" "$N"); echo "$B1"
E1=$("$TMP/engine" "$URL" "$N" "$TMP/keng.db"); echo "$E1"
B2=$("$TMP/bare" "$URL" "$N"); echo "$B2"
rm -f "$TMP"/keng.db*
E2=$("$TMP/engine" "$URL" "$N" "$TMP/keng.db"); echo "$E2"
rate() { echo "$1" | sed -n 's/.*per_s=\([0-9]*\).*/\1/p'; }
cpu() { echo "$1" | sed -n 's/.*cpu_us=\([0-9.]*\).*/\1/p'; }
python3 - "$(rate "$B1")" "$(rate "$B2")" "$(rate "$E1")" "$(rate "$E2")" \
    "$(cpu "$B1")" "$(cpu "$B2")" "$(cpu "$E1")" "$(cpu "$E2")" <<'PY'
import sys
b1, b2, e1, e2, cb1, cb2, ce1, ce2 = map(float, sys.argv[1:])
bare, eng = (b1 + b2) / 2, (e1 + e2) / 2
print("bare mean %.0f/s, engine mean %.0f/s, ratio %.1f %% (goal >= 80 %%)" % (bare, eng, 100 * eng / bare))
cb, ce = (cb1 + cb2) / 2, (ce1 + ce2) / 2
print("loop CPU per delivery: bare %.2f us, engine %.2f us (bare/engine %.1f %%)" % (cb, ce, 100 * cb / ce))
PY
