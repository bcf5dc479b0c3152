#!/usr/bin/env python3
"""The timed part of bench/publish/run.sh: publishes one alert in a running kengd and measures
what the officer and the households see, while a second process probes the loop.

    python3 bench/publish/probe.py --addr HOST:PORT --token T --alert ID --nginx-log FILE
        --n N [--pid KENGD_PID] [--interval-ms 2] [--baseline-s 1] [--timeout-s 600]

1. Starts a prober (this file with --healthz, a separate process so that this one's work never
   delays its timing through the GIL): on one keep-alive connection it sends GET /healthz every
   INTERVAL ms (back to back when an answer takes longer) and records when each request was sent
   and how long its answer took. kengd runs everything on one libuv loop, so that latency is the
   loop's stall as seen from outside (plus ~0.1-0.3 ms of Python, visible in the baseline).
2. After BASELINE seconds, sends POST /v1/alerts/ID/publish on a new connection and times it.
3. Tails nginx's access log (format `$msec $http_idempotency_key`, one line per 2xx answer) until
   it holds N distinct idempotency keys of this alert (or, after a quiet second, kengd has
   nothing pending or inflight): first and last arrival, duplicates.
4. Polls GET /v1/alerts/ID/deliveries?limit=1 every 50 ms until nothing is pending or inflight.
5. Stops the prober and prints key=value lines (times in ms or s as named) for run.sh.

Python 3 standard library only. Every address is the loopback one run.sh passes.
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time


def prober(addr, interval_ms):
    """--healthz mode: probes until SIGTERM (or the parent is gone), then prints
    `start_ns latency_ns` per request and `errors=K` on stdout."""
    host, port = addr.rsplit(":", 1)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    parent = os.getppid()
    step = int(interval_ms * 1e6)
    samples = []
    errors = 0
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.connect()
    print("ready", flush=True)
    nxt = time.monotonic_ns()
    while not stop:
        t0 = time.monotonic_ns()
        try:
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            r.read()
            ok = r.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
        t1 = time.monotonic_ns()
        if ok:
            samples.append((t0, t1 - t0))
        else:
            errors += 1
        if len(samples) % 256 == 0 and os.getppid() != parent:
            break
        nxt = max(nxt + step, t1)
        wait = nxt - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
    out = sys.stdout
    for t0, lat in samples:
        out.write(f"{t0} {lat}\n")
    out.write(f"errors={errors}\n")
    out.flush()


def cpu_seconds(pid):
    """User + system CPU time of pid in seconds (fields 14 and 15 of /proc/PID/stat)."""
    if not pid:
        return None
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request(addr, method, path, token, body=None, timeout=600):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {"Authorization": "Bearer " + token}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def stats(lats_ms):
    """(count, p50, p99, max) of a list of latencies in ms; nearest-rank percentiles."""
    if not lats_ms:
        return 0, 0.0, 0.0, 0.0
    s = sorted(lats_ms)

    def pct(p):
        return s[min(len(s) - 1, max(0, int(len(s) * p / 100.0 + 0.999999) - 1))]
    return len(s), pct(50), pct(99), s[-1]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--healthz":
        prober(sys.argv[2], float(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--addr", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--alert", required=True)
    ap.add_argument("--nginx-log", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--interval-ms", type=float, default=2.0)
    ap.add_argument("--baseline-s", type=float, default=1.0)
    ap.add_argument("--timeout-s", type=float, default=600.0)
    a = ap.parse_args()
    # run.sh's cleanup sends SIGTERM: leave through `finally`, which stops the prober.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--healthz", a.addr,
                              str(a.interval_ms)], stdout=subprocess.PIPE, text=True)
    out = {}
    try:
        if child.stdout.readline().strip() != "ready":
            sys.exit("the /healthz prober did not start")
        time.sleep(a.baseline_s)

        # nginx's $msec is wall-clock time; this pair maps it onto the monotonic clock.
        wall0, mono0 = time.time(), time.monotonic()
        cpu0 = cpu_seconds(a.pid)
        t_pub = time.monotonic()
        status, body = request(a.addr, "POST", f"/v1/alerts/{a.alert}/publish", a.token, None,
                               timeout=a.timeout_s)
        t_resp = time.monotonic()
        if status // 100 != 2:
            sys.exit(f"publish answered {status}: {body[:300]!r}")
        out["publish_status"] = status
        try:
            fan = json.loads(body).get("fanout", {})
        except (ValueError, AttributeError):
            fan = {}
        for k in ("groups", "recipients", "deliveries", "held", "unreachable"):
            out[f"fanout_{k}"] = fan.get(k, "?")

        # Tail nginx's log until every recipient's key arrived.
        prefix = (a.alert + ".").encode()
        keys = set()
        lines = 0
        first = last = None
        rest = b""
        deadline = t_pub + a.timeout_s
        last_progress = time.monotonic()
        with open(a.nginx_log, "rb") as f:
            while len(keys) < a.n:
                chunk = f.read()
                if chunk:
                    last_progress = time.monotonic()
                    data = rest + chunk
                    cut = data.rfind(b"\n") + 1
                    rest = data[cut:]
                    for line in data[:cut].splitlines():
                        msec, _, key = line.partition(b" ")
                        if not key.startswith(prefix):
                            continue
                        t = float(msec)
                        lines += 1
                        keys.add(key)
                        first = t if first is None or t < first else first
                        last = t if last is None or t > last else last
                    continue
                now = time.monotonic()
                if now > deadline:
                    break
                if now - last_progress > 1:
                    # Quiet for a second: stop if kengd has nothing left to send (a household's
                    # delivery is dead, or never existed); retries still pending are waited for.
                    last_progress = now
                    st, b = request(a.addr, "GET", f"/v1/alerts/{a.alert}/deliveries?limit=1",
                                    a.token)
                    c = json.loads(b).get("counts", {}) if st == 200 else {}
                    if c.get("pending", 1) == 0 and c.get("inflight", 1) == 0:
                        break
                time.sleep(0.005)
        t_seen_all = time.monotonic()

        # kengd's own view: nothing pending or inflight any more.
        counts = {}
        t_settled = None
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            status, body = request(a.addr, "GET", f"/v1/alerts/{a.alert}/deliveries?limit=1",
                                   a.token)
            if status == 200:
                counts = json.loads(body).get("counts", {})
                if counts.get("pending", 1) == 0 and counts.get("inflight", 1) == 0:
                    t_settled = t0
                    break
            if len(keys) < a.n and time.monotonic() - t_seen_all > 10:
                break  # deliveries are missing at nginx: do not wait for the full timeout
            time.sleep(0.05)
        cpu1 = cpu_seconds(a.pid)
        time.sleep(0.2)
    finally:
        child.send_signal(signal.SIGTERM)
        probe_out, _ = child.communicate(timeout=60)

    samples = []
    for line in probe_out.splitlines():
        if line.startswith("errors="):
            out["probe_errors"] = int(line[7:])
            continue
        t0, lat = line.split()
        samples.append((int(t0) / 1e9, int(lat) / 1e9))

    def to_mono(wall):
        return wall - wall0 + mono0

    def ms(x):
        return f"{x * 1000:.1f}" if x is not None else "-"

    t_first = to_mono(first) if first is not None else None
    t_last = to_mono(last) if last is not None else None
    out["publish_ms"] = ms(t_resp - t_pub)
    out["first_delivery_ms"] = ms(t_first - t_pub) if t_first is not None else "-"
    out["first_after_response_ms"] = ms(t_first - t_resp) if t_first is not None else "-"
    out["all_delivered_s"] = f"{t_last - t_pub:.2f}" if t_last is not None else "-"
    out["settled_s"] = f"{t_settled - t_pub:.2f}" if t_settled is not None else "-"
    span = (t_last - t_first) if t_first is not None else 0
    out["deliveries_per_s"] = f"{len(keys) / span:.0f}" if span > 0 else "-"
    out["arrived_distinct"] = len(keys)
    out["arrived_lines"] = lines
    out["duplicates"] = lines - len(keys)
    out["missing"] = a.n - len(keys)
    for k in ("pending", "inflight", "delivered", "failed", "dead"):
        out[f"kengd_{k}"] = counts.get(k, "?")
    if cpu0 is not None and cpu1 is not None:
        out["kengd_cpu_s"] = f"{cpu1 - cpu0:.2f}"

    # Loop stalls by phase. A request counts for publish (and throughout) when its wait overlaps
    # the window, so a /healthz sent just before publish and held up by it counts as held up by
    # publish; for fan-out, only requests sent after publish answered count.
    end = t_last if t_last is not None else t_seen_all

    def phase(name, lo, hi, sent_within=False):
        if sent_within:
            lats = [lat * 1000 for t0, lat in samples if lo <= t0 <= hi]
        else:
            lats = [lat * 1000 for t0, lat in samples if t0 <= hi and t0 + lat >= lo]
        n, p50, p99, mx = stats(lats)
        out[f"{name}_n"] = n
        out[f"{name}_p50_ms"] = f"{p50:.1f}"
        out[f"{name}_p99_ms"] = f"{p99:.1f}"
        out[f"{name}_max_ms"] = f"{mx:.1f}"
        out[f"{name}_over20"] = sum(1 for x in lats if x > 20)

    base = [lat * 1000 for t0, lat in samples if t0 + lat < t_pub]
    n, p50, p99, mx = stats(base)
    out.update(baseline_n=n, baseline_p50_ms=f"{p50:.1f}", baseline_p99_ms=f"{p99:.1f}",
               baseline_max_ms=f"{mx:.1f}")
    phase("during_publish", t_pub, t_resp)
    phase("during_fanout", t_resp, end, sent_within=True)
    phase("throughout", t_pub, end)
    out["probe_interval_ms"] = f"{a.interval_ms:g}"
    for k, v in out.items():
        print(f"{k}={v}")
    return 1 if len(keys) < a.n else 0


if __name__ == "__main__":
    sys.exit(main())
