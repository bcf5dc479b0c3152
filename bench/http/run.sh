#!/bin/sh
# HTTP benchmark: kengd's GET /healthz and GET /v1/groups/to-lien-gia-07 against nginx serving
# static files of the same body sizes, with wrk, in the same run, on loopback only.
#
#   sh bench/http/run.sh [ROUNDS]        (from the repository root; default 1 round)
#   DURATION=10s CONNS=100 THREADS=2 KENGD=build/kengd sh bench/http/run.sh
#
# Needs build/kengd (release build, `make build/kengd`), wrk and nginx-light (`make bench-deps`).
# kengd is single-threaded, so nginx runs twice: `worker_processes 1` (the like-for-like
# comparison) and `worker_processes 2` (one per core of the development machine).
# Each round runs every target once, interleaved, so that load from other people on a shared
# machine hits every contender alike; the table reports the median over rounds.
# Prints a Markdown report on stdout.
set -eu
ROUNDS=${1:-1}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-100}
THREADS=${THREADS:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. bench/lib.sh
KENGD=${KENGD:-build/kengd}
NGINX=${NGINX:-/usr/sbin/nginx}
GROUP=to-lien-gia-07

for tool in wrk curl python3 "$NGINX"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "missing $tool: run make bench-deps" >&2; exit 1; }
done
[ -x "$KENGD" ] || make --no-print-directory "$KENGD" >&2

TMP=$(mktemp -d /tmp/keng-bench-http.XXXXXX)
KENGD_PID=
NGINX_PID=
cleanup() {
    stop_pid "$KENGD_PID"
    stop_pid "$NGINX_PID"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# ---- kengd, on a port it picks itself (written to DATA/kengd.addr) ----
mkdir -p "$TMP/data"
"$KENGD" --listen 127.0.0.1:0 --data "$TMP/data" --groups groups --templates templates \
    --access-log off 2>"$TMP/kengd.log" &
KENGD_PID=$!
wait_kengd "$TMP/data" "$KENGD_PID" "$TMP/kengd.log"
KADDR=$(cat "$TMP/data/kengd.addr")
TOKEN=$(cat "$TMP/data/admin.token")

# ---- nginx's static files: the very bytes kengd answers, so the sizes are equal ----
mkdir -p "$TMP/nginx/html" "$TMP/nginx/logs"
curl -sf -o "$TMP/nginx/html/healthz.json" "http://$KADDR/healthz"
curl -sf -H "Authorization: Bearer $TOKEN" -o "$TMP/nginx/html/group.json" \
    "http://$KADDR/v1/groups/$GROUP"
HSIZE=$(wc -c <"$TMP/nginx/html/healthz.json")
GSIZE=$(wc -c <"$TMP/nginx/html/group.json")
# nginx's workers drop root to nobody when started as root: they must be able to read the files.
chmod 755 "$TMP" "$TMP/nginx" "$TMP/nginx/html"
chmod 644 "$TMP/nginx/html/healthz.json" "$TMP/nginx/html/group.json"
NPORT=$(free_port)

# nginx's `return 200 '...'` answers from memory: a harder reference than the static file that the
# issue names, shown beside it so that a ratio above 100 % is not misread.
nginx_literal() {
    python3 - "$1" <<'PY'
import sys
body = open(sys.argv[1], encoding="utf-8").read()
if "$" in body:
    sys.exit("a body with $ cannot be an nginx string literal")
print("'" + body.replace("\\", "\\\\").replace("'", "\\'") + "'")
PY
}
HLIT=$(nginx_literal "$TMP/nginx/html/healthz.json")
GLIT=$(nginx_literal "$TMP/nginx/html/group.json")

start_nginx() {
    nginx_start "$TMP/nginx" "$1" 4096 "http://127.0.0.1:$NPORT/healthz.json" "
    access_log off;
    default_type application/json;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    open_file_cache max=16 inactive=60s;
    open_file_cache_valid 60s;
    server {
        listen 127.0.0.1:$NPORT;
        root $TMP/nginx/html;
        location = /healthz.mem { return 200 $HLIT; }
        location = /group.mem { return 200 $GLIT; }
    }"
}

# cpu_ticks PID...: user + system CPU ticks of the processes (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() {
    t=0
    for p in "$@"; do
        t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$t"
}
server_pids() {
    case $1 in
        kengd*) echo "$KENGD_PID" ;;
        *) echo "$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')" ;;
    esac
}

# run_wrk NAME URL [wrk args]: appends "NAME ROUND RPS CPU_US_PER_REQUEST" to results, keeps
# wrk's output. The server's CPU time per request does not depend on how much of the two cores
# other people's work left to the server, so it is the steadier number on a shared machine.
run_wrk() {
    name=$1; url=$2; shift 2
    out="$TMP/wrk.$name.$round"
    # shellcheck disable=SC2046
    c0=$(cpu_ticks $(server_pids "$name"))
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "$@" "$url" >"$out" 2>&1
    # shellcheck disable=SC2046
    c1=$(cpu_ticks $(server_pids "$name"))
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$out")
    nreq=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$out")
    bad=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$out")
    errs=$(sed -n 's/.*Socket errors: *\(.*\)/\1/p' "$out")
    if [ -z "$rps" ] || [ -z "$nreq" ] || [ -n "$bad" ]; then
        echo "wrk against $url failed or got non-2xx answers:" >&2; cat "$out" >&2; exit 1
    fi
    us=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="$nreq" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
    echo "$name $round $rps $us" >>"$TMP/results"
    lat=$(awk '$1 == "Latency" { print $2 " avg, " $3 " stdev, max " $4 }' "$out")
    e=${errs:+, socket errors: $errs}
    echo "- round $round, $name: $rps req/s, server CPU $us µs/request, latency $lat$e" \
        >>"$TMP/detail"
}
HZ=$(getconf CLK_TCK)

: >"$TMP/results"
: >"$TMP/detail"
round=1
while [ "$round" -le "$ROUNDS" ]; do
    run_wrk kengd_healthz "http://$KADDR/healthz"
    run_wrk kengd_group "http://$KADDR/v1/groups/$GROUP" -H "Authorization: Bearer $TOKEN"
    for w in 1 2; do
        start_nginx "$w"
        run_wrk "nginx${w}_healthz" "http://127.0.0.1:$NPORT/healthz.json"
        run_wrk "nginx${w}_group" "http://127.0.0.1:$NPORT/group.json"
        run_wrk "nginx${w}mem_healthz" "http://127.0.0.1:$NPORT/healthz.mem"
        run_wrk "nginx${w}mem_group" "http://127.0.0.1:$NPORT/group.mem"
        stop_pid "$NGINX_PID"; NGINX_PID=
    done
    round=$((round + 1))
done
KRSS=$(awk '/^VmRSS/ { print $2 " " $3 }' "/proc/$KENGD_PID/status")

echo "## http benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
CPU=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
WRKV=$(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)
NGINXV=$("$NGINX" -v 2>&1 | sed 's/.*: //')
REV=$(git describe --always --dirty 2>/dev/null || echo '?')
echo "- machine: $(nproc) cores ($CPU), $(uname -sm) $(uname -r)"
echo "- $WRKV, $NGINXV, kengd $KENGD ($REV, -O2, --access-log off)"
echo "- wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS round(s), median reported;" \
    "bodies: /healthz $HSIZE B, /v1/groups/$GROUP $GSIZE B"
echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); kengd RSS at the end: $KRSS"
echo
python3 - "$TMP/results" <<'PY'
import statistics, sys
rows, cpu = {}, {}
for line in open(sys.argv[1]):
    name, _, rps, us = line.split()
    rows.setdefault(name, []).append(float(rps))
    cpu.setdefault(name, []).append(float(us))
med = {k: statistics.median(v) for k, v in rows.items()}
mcpu = {k: statistics.median(v) for k, v in cpu.items()}
print("| request | kengd req/s | reference | 1 nginx worker req/s | kengd / 1 worker "
      "| 2 nginx workers req/s | kengd / 2 workers |")
print("|---|---:|---|---:|---:|---:|---:|")
for what, label in (("healthz", "GET /healthz"), ("group", "GET /v1/groups/to-lien-gia-07")):
    k = med["kengd_" + what]
    for ref, rlabel in (("", "nginx static file, same size"),
                        ("mem", "nginx `return 200` literal, same body")):
        n1, n2 = med["nginx1%s_%s" % (ref, what)], med["nginx2%s_%s" % (ref, what)]
        star = "**" if not ref else ""
        print("| %s | %.0f | %s | %.0f | %s%.0f %%%s | %.0f | %.0f %% |"
              % (label, k, rlabel, n1, star, 100 * k / n1, star, n2, 100 * k / n2))
print()
print("Goal (issue 2): kengd >= 50 % of nginx serving a static file of the same size (in bold).")
print()
print("Server CPU time per request (user + system of the server's processes during the run,")
print("divided by wrk's request count; medians), and nginx's as a share of kengd's, which is the")
print("throughput ratio kengd would reach if both had a core to themselves:")
print()
print("| request | kengd µs/req | nginx static file µs/req (1 worker) | nginx/kengd "
      "| nginx `return` µs/req (1 worker) | nginx/kengd |")
print("|---|---:|---:|---:|---:|---:|")
for what, label in (("healthz", "GET /healthz"), ("group", "GET /v1/groups/to-lien-gia-07")):
    k, f, m = mcpu["kengd_" + what], mcpu["nginx1_" + what], mcpu["nginx1mem_" + what]
    print("| %s | %.1f | %.1f | %.0f %% | %.1f | %.0f %% |"
          % (label, k, f, 100 * f / k, m, 100 * m / k))
PY
echo
echo "Every wrk run:"
echo
cat "$TMP/detail"
