#!/bin/sh
# Memory benchmark: kengd's resident memory with N generated members loaded (default 100,000),
# then with 1,000 idle keep-alive connections held, and how long the import of the N members took.
#
#   sh bench/memory/run.sh [N] [CONNS]      (from the repository root; needs build/kengd, python3)
#
# Generates the ward with bench/gen/members.py into a temporary directory, starts kengd on it
# (loopback, port chosen by kengd, --access-log off), waits until GET /v1/members?limit=1 reports
# every member, reads /proc/PID/status, holds CONNS idle connections (bench/memory/idle_conns.py),
# restarts kengd on the same data (the import of an unchanged ward, as on every start or SIGHUP)
# and measures kengd with the small example ward of groups/ for comparison.
# Prints a Markdown report on stdout.
set -eu
N=${1:-100000}
CONNS=${2:-1000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. bench/lib.sh
KENGD=${KENGD:-build/kengd}
[ -x "$KENGD" ] || make --no-print-directory "$KENGD" >&2

TMP=$(mktemp -d /tmp/keng-bench-memory.XXXXXX)
KENGD_PID=
stop_kengd() {
    if [ -n "$KENGD_PID" ]; then
        kill "$KENGD_PID" 2>/dev/null || true
        wait "$KENGD_PID" 2>/dev/null || true
        KENGD_PID=
    fi
}
cleanup() {
    stop_kengd
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# kengd needs a descriptor per connection; the default soft limit of 1024 is too tight.
ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)"

now() { date +%s.%N; }
# status FIELD: a field of /proc/PID/status in kB.
status() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$KENGD_PID/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }
# log_time PATTERN LOG: the epoch time of the first log line matching PATTERN.
log_time() {
    python3 - "$1" "$2" <<'PY'
import datetime, sys
for line in open(sys.argv[2], encoding="utf-8", errors="replace"):
    if sys.argv[1] in line:
        t = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
        print("%.3f" % t.replace(tzinfo=datetime.timezone.utc).timestamp())
        break
PY
}

# start_kengd DATA GROUPS LOG: starts kengd, waits until it listens; sets KENGD_PID, ADDR, T_SPAWN.
start_kengd() {
    rm -f "$1/kengd.addr"
    T_SPAWN=$(now)
    "$KENGD" --listen 127.0.0.1:0 --data "$1" --groups "$2" --templates templates \
        --access-log off 2>"$3" &
    KENGD_PID=$!
    wait_kengd "$1" "$KENGD_PID" "$3"
    T_LISTEN=$(now)
    ADDR=$(cat "$1/kengd.addr")
}

members_total() {
    curl -sf -H "Authorization: Bearer $(cat "$1/admin.token")" "http://$ADDR/v1/members?limit=1" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["total"])'
}

# ---- the example ward, for the fixed cost ----
mkdir -p "$TMP/small"
start_kengd "$TMP/small" groups "$TMP/small.log"
SMALL_TOTAL=$(members_total "$TMP/small")
SMALL_RSS=$(status VmRSS)
stop_kengd

# ---- N generated members ----
T0=$(now)
GEN_OUT=$(python3 bench/gen/members.py "$N" "$TMP/ward")
GEN_OUT=${GEN_OUT%% ->*}
T1=$(now)
GEN_FILES=$(find "$TMP/ward" -name '*.json' | wc -l)
GEN_BYTES=$(du -sb "$TMP/ward" | cut -f1)
mkdir -p "$TMP/data"
start_kengd "$TMP/data" "$TMP/ward" "$TMP/big.log"
i=0
while :; do
    TOTAL=$(members_total "$TMP/data" || echo 0)
    [ "$TOTAL" -ge "$N" ] && break
    i=$((i + 1)); [ $i -lt 600 ] || { echo "only $TOTAL of $N members after 60 s" >&2; exit 1; }
    sleep 0.1
done
T_READY=$(now)
T_IMPORTED=$(log_time "groups: imported" "$TMP/big.log")
T_FIRST_SPAWN=$T_SPAWN
T_FIRST_LISTEN=$T_LISTEN
IMPORT_LINE=$(grep -m1 "groups: imported" "$TMP/big.log" | cut -d' ' -f3-)
RSS_LOADED=$(status VmRSS)
HWM_LOADED=$(status VmHWM)
ANON_LOADED=$(status RssAnon)
FILE_LOADED=$(status RssFile)
DB_BYTES=$(cat "$TMP/data"/keng.db* | wc -c)
BIG_PID=$KENGD_PID

# ---- idle keep-alive connections ----
HOST=${ADDR%:*}
PORT=${ADDR##*:}
IDLE=$(python3 bench/memory/idle_conns.py "$KENGD_PID" "$HOST" "$PORT" "$CONNS" 2)
kv() { echo "$IDLE" | sed -n "s/^$1=//p"; }
RSS_CONNS=$(kv rss_idle_kb)
HELD=$(kv held)
PER_CONN=$(kv per_conn_bytes)

# ---- restart on the same data: the import of an unchanged ward ----
T_STOP=$(now)
stop_kengd
T_STOPPED=$(now)
start_kengd "$TMP/data" "$TMP/ward" "$TMP/again.log"
T_REIMPORTED=$(log_time "groups: imported" "$TMP/again.log")
RSS_AGAIN=$(status VmRSS)
HWM_AGAIN=$(status VmHWM)
stop_kengd

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f s", b - a }'; }
echo "## memory benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
CPU=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
RAM=$(awk '/^MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo)
REV=$(git describe --always --dirty 2>/dev/null || echo '?')
SQLITEV=$(pkg-config --modversion sqlite3 2>/dev/null || echo '?')
echo "- machine: $(nproc) cores ($CPU), $(uname -sm) $(uname -r), $RAM RAM," \
    "load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- kengd $KENGD ($REV, -O2, --access-log off), SQLite $SQLITEV"
echo "- ward: \`python3 bench/gen/members.py $N DIR\`: $GEN_OUT; $GEN_FILES files, $GEN_BYTES bytes," \
    "generated in $(secs "$T0" "$T1")"
echo
echo "| what | value | goal |"
echo "|---|---:|---|"
echo "| kengd RSS, example ward ($SMALL_TOTAL members) | $(mb "$SMALL_RSS") | |"
echo "| kengd RSS, $TOTAL members loaded (VmRSS) | **$(mb "$RSS_LOADED")** | < 100 MB |"
echo "| … of which anonymous / file-backed (RssAnon / RssFile) |" \
    "$(mb "$ANON_LOADED") / $(mb "$FILE_LOADED") | |"
echo "| peak RSS during the import (VmHWM) | $(mb "$HWM_LOADED") | |"
echo "| kengd RSS with $CONNS idle keep-alive connections | **$(mb "$RSS_CONNS")** | |"
echo "| connections still answering after the idle wait | $HELD of $CONNS | all held |"
echo "| RSS growth per idle connection | $PER_CONN bytes | |"
echo "| database after the import (keng.db + WAL) | $(mb $((DB_BYTES / 1024))) | |"
echo "| first import: spawn → \"groups: imported\" | $(secs "$T_FIRST_SPAWN" "$T_IMPORTED") | |"
echo "| first import: spawn → listening / → members total = $N |" \
    "$(secs "$T_FIRST_SPAWN" "$T_FIRST_LISTEN") / $(secs "$T_FIRST_SPAWN" "$T_READY") | |"
echo "| restart on the same data: spawn → \"groups: imported\" (nothing changed) |" \
    "$(secs "$T_SPAWN" "$T_REIMPORTED") | |"
echo "| RSS after that restart / its peak | $(mb "$RSS_AGAIN") / $(mb "$HWM_AGAIN") | |"
echo "| SIGTERM → exit (with $N members) | $(secs "$T_STOP" "$T_STOPPED") | < 10 s |"
echo
echo "kengd's log line: \`$IMPORT_LINE\`; idle connections opened in $(kv open_seconds) s," \
    "held $(kv idle_seconds) s, RSS after a second request on each:" \
    "$(mb "$(kv rss_after_second_request_kb)") (pid $BIG_PID)."
