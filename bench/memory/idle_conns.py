#!/usr/bin/env python3
"""Holds N idle keep-alive connections to kengd and reports its resident memory around them.

    python3 bench/memory/idle_conns.py PID HOST PORT [N] [IDLE_SECONDS]

Reads VmRSS of PID, opens N connections, sends one `GET /healthz` on each and reads the whole
answer (so every connection went through a full request and sits idle in keep-alive), waits
IDLE_SECONDS (default 2), reads VmRSS again, then asks /healthz once more on every connection
to prove that kengd still holds them all. Prints key=value lines for bench/memory/run.sh.
"""

import resource
import socket
import sys
import time

REQ = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %s" % pid)


def read_answer(s):
    """Reads one HTTP answer with a Content-Length body; returns its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed by kengd")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed by kengd in the body")
        body += chunk
    return int(head.split(b" ", 2)[1])


def main():
    pid, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    idle = float(sys.argv[5]) if len(sys.argv) > 5 else 2.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    before = rss_kb(pid)
    socks = []
    t0 = time.monotonic()
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(REQ)
        if read_answer(s) != 200:
            raise SystemExit("GET /healthz did not answer 200")
        socks.append(s)
    opened = time.monotonic() - t0
    time.sleep(idle)
    after = rss_kb(pid)

    held = 0
    for s in socks:
        try:
            s.sendall(REQ)
            if read_answer(s) == 200:
                held += 1
        except OSError:
            pass
    after_second = rss_kb(pid)
    for s in socks:
        s.close()
    print(f"connections={n}")
    print(f"open_seconds={opened:.2f}")
    print(f"idle_seconds={idle:g}")
    print(f"rss_before_kb={before}")
    print(f"rss_idle_kb={after}")
    print(f"rss_after_second_request_kb={after_second}")
    print(f"held={held}")
    print(f"per_conn_bytes={(after - before) * 1024 / n:.0f}")


if __name__ == "__main__":
    main()
