#!/bin/sh
# Publish benchmark: what an officer and the households see when one alert is published to N
# webhook households (default 100,000) through the real kengd, and what the rest of kengd's
# users see meanwhile.
#
#   sh bench/publish/run.sh [N]       (from the repository root; needs nginx-light, python3)
#
# Uses kengd's public interface only (generated groups/ files, flags, the HTTP API), so it
# measures any version of publish. On 127.0.0.1 only, in a temporary directory:
#   - nginx (one worker, keep-alive, `return 204`) is the webhook receiver; its access log
#     writes `$msec $http_idempotency_key` per 2xx answer, so every arrival is timed and counted;
#   - bench/gen/members.py N DIR --webhook URL writes N households in inter-household groups
#     of 50 (relay: auto) under residential groups, each with one webhook contact to nginx;
#   - build/kengd (`make all` if missing) runs on a port of its choosing with a fresh data
#     directory, `--quiet-hours off`, `--access-log off`, and no KENG_* from the environment;
#   - an immediate lost_elder alert to all groups is created with the admin token, then
#     bench/publish/probe.py publishes it while probing GET /healthz every 2 ms on its own
#     connection (PROBE_INTERVAL_MS), and times the publish answer, the first and the last
#     delivery at nginx and the moment GET /v1/alerts/ID/deliveries shows nothing pending.
# Prints a Markdown report on stdout; exits 1 if a household got no delivery (or one is dead).
# Everything started here is stopped, and the temporary directory removed, on exit.
set -eu
N=${1:-100000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. bench/lib.sh
KENGD=${KENGD:-build/kengd}
NGINX=${NGINX:-/usr/sbin/nginx}
INTERVAL=${PROBE_INTERVAL_MS:-2}

for tool in curl python3 "$NGINX"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "missing $tool: run make bench-deps" >&2; exit 1; }
done
[ -x "$KENGD" ] || make --no-print-directory all >&2

TMP=$(mktemp -d /tmp/keng-bench-publish.XXXXXX)
KENGD_PID=
NGINX_PID=
PROBE_PID=
cleanup() {
    stop_pid "$PROBE_PID"
    stop_pid "$KENGD_PID"
    stop_pid "$NGINX_PID"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f s", b - a }'; }
status() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$KENGD_PID/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }

# ---- nginx, the webhook receiver ----
NPORT=$(free_port)
# One short line per 2xx, unbuffered so that probe.py sees arrivals as they happen; $msec is
# the time of the request's end, in ms (nginx's cached clock).
nginx_start "$TMP/nginx" 1 1024 "http://127.0.0.1:$NPORT/ready" "
    log_format arrivals '\$msec \$http_idempotency_key';
    map \$status \$delivered { ~^2 1; default 0; }
    access_log $TMP/nginx/logs/arrivals.log arrivals if=\$delivered;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_buffer_size 16k;
    server {
        listen 127.0.0.1:$NPORT;
        location / { return 204; }
    }"
HOOK="http://127.0.0.1:$NPORT/hook"

# ---- the ward: N webhook households ----
T0=$(now)
GEN_OUT=$(python3 bench/gen/members.py "$N" "$TMP/ward" --webhook "$HOOK")
GEN_OUT=${GEN_OUT%% ->*}
T1=$(now)

# ---- kengd: loopback only, nothing from the caller's KENG_* environment ----
mkdir -p "$TMP/data"
for v in $(env | sed -n 's/^\(KENG_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
T_SPAWN=$(now)
"$KENGD" --listen 127.0.0.1:0 --data "$TMP/data" --groups "$TMP/ward" --templates templates \
    --quiet-hours off --access-log off 2>"$TMP/kengd.log" &
KENGD_PID=$!
wait_kengd "$TMP/data" "$KENGD_PID" "$TMP/kengd.log"
T_LISTEN=$(now)
ADDR=$(cat "$TMP/data/kengd.addr")
case $ADDR in 127.0.0.1:*) ;; *) echo "kengd listens on $ADDR, not loopback" >&2; exit 1 ;; esac
TOKEN=$(cat "$TMP/data/admin.token")
api() { curl -sS -f -H "Authorization: Bearer $TOKEN" "$@"; }
jget() { python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."): v = v[k]
print(v)' "$1"; }
TOTAL=$(api "http://$ADDR/v1/members?limit=1" | jget total)
[ "$TOTAL" -eq "$N" ] || { echo "kengd holds $TOTAL members, not $N" >&2; exit 1; }
RSS_LOADED=$(status VmRSS)
HWM_LOADED=$(status VmHWM)

# ---- the alert: a draft, created through the API like an officer's ----
SEEN=$(TZ=Asia/Ho_Chi_Minh date -d '-2 hours' '+%Y-%m-%d %H:%M')
ALERT=$(api -H 'Content-Type: application/json' -X POST "http://$ADDR/v1/alerts" --data-binary @- <<JSON | jget id
{"kind": "lost_elder", "urgency": "immediate", "severity": "severe",
 "person_name": "Nguyễn Thị Lan", "age": 78, "sex": "female",
 "last_seen_at": "$SEEN", "last_seen_place": "chợ Hòa Cường, cổng đường Núi Thành",
 "description": "Áo bà ba màu nâu, quần đen, tóc bạc búi sau gáy, đi dép nhựa; hay quên, nói giọng Quảng.",
 "contact_phone": "0905 123 456", "targets": {"all": true}}
JSON
)

# ---- publish, timed, with the loop probed throughout ----
python3 bench/publish/probe.py --addr "$ADDR" --token "$TOKEN" --alert "$ALERT" \
    --nginx-log "$TMP/nginx/logs/arrivals.log" --n "$N" --pid "$KENGD_PID" \
    --interval-ms "$INTERVAL" >"$TMP/probe.out" &
PROBE_PID=$!
PROBE_RC=0
wait "$PROBE_PID" || PROBE_RC=$?
PROBE_PID=
RSS_END=$(status VmRSS)
HWM_END=$(status VmHWM)
kv() { sed -n "s/^$1=//p" "$TMP/probe.out"; }
[ -n "$(kv publish_ms)" ] || { echo "probe.py failed (exit $PROBE_RC)" >&2; exit 1; }
PUBLISH_LOG=$(grep -m1 "publish $ALERT" "$TMP/kengd.log" | cut -d' ' -f3- || true)

echo "## publish benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
CPU=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
REV=$(git describe --always --dirty 2>/dev/null || echo '?')
echo "- machine: $(nproc) cores ($CPU), $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- kengd $KENGD ($REV), $(curl-config --version 2>/dev/null || echo libcurl), SQLite" \
    "$(pkg-config --modversion sqlite3 2>/dev/null || echo '?'), receiver $("$NGINX" -v 2>&1 | sed 's/.*: //')" \
    "(1 worker, return 204)"
echo "- ward: \`members.py $N DIR --webhook $HOOK\`: $GEN_OUT, every contact a webhook," \
    "relay auto; generated in $(secs "$T0" "$T1"), kengd spawn → listening $(secs "$T_SPAWN" "$T_LISTEN")"
echo "- alert $ALERT: lost_elder, urgency immediate, targets all; publish answered groups" \
    "$(kv fanout_groups), recipients $(kv fanout_recipients), deliveries $(kv fanout_deliveries)"
echo "- loop probe: GET /healthz on one keep-alive connection every $(kv probe_interval_ms) ms" \
    "(back to back when slower), $(kv throughout_n) requests from publish to the last delivery"
echo
echo "| what | value | goal |"
echo "|---|---:|---|"
echo "| POST /v1/alerts/ID/publish: answer ($(kv publish_status)) after | **$(kv publish_ms) ms** | |"
echo "| publish sent → first delivery at nginx | **$(kv first_delivery_ms) ms** | ≤ 50 ms |"
echo "| publish answered → first delivery | $(kv first_after_response_ms) ms | |"
echo "| publish sent → all $N delivered at nginx | **$(kv all_delivered_s) s** ($(kv deliveries_per_s)/s from first to last) | |"
echo "| publish sent → deliveries show 0 pending, 0 inflight | $(kv settled_s) s | |"
echo "| loop stall before publish: /healthz p50 / p99 / max | $(kv baseline_p50_ms) / $(kv baseline_p99_ms) / $(kv baseline_max_ms) ms | |"
echo "| … while publish runs (publish sent → answered): max | **$(kv during_publish_max_ms) ms** | < 20 ms |"
echo "| … during fan-out (sent after the answer, until the last delivery): p99 / max | $(kv during_fanout_p99_ms) / **$(kv during_fanout_max_ms) ms** | < 20 ms |"
echo "| … throughout: p50 / p99 / max; probes over 20 ms | $(kv throughout_p50_ms) / $(kv throughout_p99_ms) / $(kv throughout_max_ms) ms; $(kv throughout_over20) of $(kv throughout_n) | < 20 ms |"
echo "| kengd RSS with $N members loaded, before publish (VmRSS / VmHWM) | $(mb "$RSS_LOADED") / $(mb "$HWM_LOADED") | |"
echo "| kengd RSS at the end (VmRSS / VmHWM) | **$(mb "$RSS_END") / $(mb "$HWM_END")** | |"
echo "| kengd CPU time, publish → settled | $(kv kengd_cpu_s) s | |"
echo "| arrived at nginx: distinct households / requests (duplicates) | $(kv arrived_distinct) / $(kv arrived_lines) ($(kv duplicates)) | all $N |"
echo "| kengd's counts: delivered / dead / pending / inflight | $(kv kengd_delivered) / $(kv kengd_dead) / $(kv kengd_pending) / $(kv kengd_inflight) | |"
echo
echo "kengd's log: \`${PUBLISH_LOG:-no publish line}\`; /healthz probe errors: $(kv probe_errors)."
MISSING=$(kv missing)
if [ "$PROBE_RC" -ne 0 ] || [ "$MISSING" != 0 ] || [ "$(kv kengd_delivered)" != "$N" ]; then
    echo
    echo "**FAILED**: $MISSING of $N households got no 2xx delivery at nginx; kengd counts" \
        "$(kv kengd_delivered) delivered, $(kv kengd_dead) dead (probe exit $PROBE_RC)."
    exit 1
fi
