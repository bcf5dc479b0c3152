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
