# Shared by the benchmarks' run.sh (sourced, from the repository root): stopping what a run
# started, a free port on 127.0.0.1, and waiting for kengd, which picks its own port and writes
# it to DATA/kengd.addr.

# stop_pid PID: stops a process this run started (nothing when PID is empty).
stop_pid() {
    if [ -n "$1" ]; then kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# wait_kengd DATA PID LOG: until kengd (PID) has written DATA/kengd.addr; if it exits or takes
# more than 120 s, shows the end of its LOG and exits the run.
wait_kengd() {
    _i=0
    until [ -s "$1/kengd.addr" ]; do
        _i=$((_i + 1))
        if [ $_i -ge 6000 ] || ! kill -0 "$2" 2>/dev/null; then
            echo "kengd did not start:" >&2; tail -5 "$3" >&2; exit 1
        fi
        sleep 0.02
    done
}

# nginx_start PREFIX WORKERS CONNECTIONS READY_URL HTTP: writes PREFIX/nginx.conf (not a
# daemon; pid and error log under PREFIX; HTTP is the body of its http { } block), starts
# ${NGINX:-/usr/sbin/nginx} and waits until it answers READY_URL. Sets NGINX_PID.
nginx_start() {
    mkdir -p "$1/logs"
    cat >"$1/nginx.conf" <<CONF
worker_processes $2;
daemon off;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events { worker_connections $3; }
http {
$5
}
CONF
    "${NGINX:-/usr/sbin/nginx}" -p "$1" -c "$1/nginx.conf" -e "$1/logs/error.log" &
    NGINX_PID=$!
    wait_nginx "$4" "$NGINX_PID" "$1"
}

# wait_nginx URL PID PREFIX: until the nginx (PID, started with -p PREFIX) answers URL; if it
# exits or takes more than 5 s, shows the end of its error log and exits the run.
wait_nginx() {
    _i=0
    until curl -s -o /dev/null "$1"; do
        _i=$((_i + 1))
        if [ $_i -ge 100 ] || ! kill -0 "$2" 2>/dev/null; then
            echo "nginx did not start:" >&2; tail -5 "$3/logs/error.log" >&2; exit 1
        fi
        sleep 0.05
    done
}
