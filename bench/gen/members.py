#!/usr/bin/env python3
"""Generates a big ward for the memory benchmark (DESIGN.md §10: kengd RSS under 100 MB with
100,000 members loaded), in the groups/ format of DESIGN.md §5.

    python3 bench/gen/members.py [N] [OUTDIR] [--seed S] [--webhook URL [--secret S]]
        N       members (households), default 100000
        OUTDIR  default /tmp/keng-ward-N
        --webhook URL   every contact is {"type": "webhook", "url": URL, "secret": S} and every
                        group is `relay: auto`, so an alert to all reaches each household directly
                        (bench/publish); without it contacts are {"type": "file"}

Households hh-K-NNNN are defined in inter-household groups of 50 (to-lien-gia-KKK-TT); every 20
of those hang under a residential group khu-pho-KKK whose members are references to their
leaders, so multi-group membership is exercised at scale. Every contact is {"type": "file"}
unless --webhook is given.
Deterministic for a given N and seed; 100k members take a few seconds.
OUTDIR gets a marker file; a non-empty directory without it is refused, so a typo cannot wipe
someone's groups/.
"""

import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wardlib as W  # noqa: E402

PER_TLG = 50
TLG_PER_KP = 20
MARKER = ".keng-bench-ward"
STREETS = ["Núi Thành", "Lê Thanh Nghị", "Trưng Nữ Vương", "Tiểu La", "Nguyễn Hữu Thọ",
           "Phan Đăng Lưu", "đường 2 Tháng 9", "Lê Đình Thám", "Duy Tân", "Hoàng Diệu",
           "Nguyễn Văn Linh", "Phan Châu Trinh", "Lê Lợi", "Hùng Vương", "Ông Ích Khiêm"]


def phone(i):
    """Unique for i < 6,000,000 (six prefixes x 10^6 numbers): i is scattered over that range
    by multiplying with a unit modulo 6,000,000, which is a bijection."""
    x = (i * 2718281 + 104729) % 6000000
    return "+84" + W.PHONE_PREFIXES[x // 1000000] + f"{x % 1000000:06d}"


def dumps(m):
    return json.dumps(m, ensure_ascii=False, separators=(", ", ": "))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=100000)
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--webhook", metavar="URL", help="webhook contacts to URL, relay: auto")
    ap.add_argument("--secret", default="bench-secret", help="the webhook secret")
    args = ap.parse_args()
    if not 1 <= args.n <= 6000000:
        ap.error("N must be 1..6000000")
    outdir = args.outdir or f"/tmp/keng-ward-{args.n}"
    os.makedirs(outdir, exist_ok=True)
    old = [f for f in os.listdir(outdir) if f.endswith(".json")]
    if old and not os.path.exists(os.path.join(outdir, MARKER)):
        sys.exit(f"{outdir} holds .json files and was not made by members.py; "
                 "choose an empty directory")
    for f in old:
        os.remove(os.path.join(outdir, f))
    with open(os.path.join(outdir, MARKER), "w") as f:
        f.write(f"members.py n={args.n} seed={args.seed}\n")

    if args.webhook and not args.webhook.startswith(("http://", "https://")):
        ap.error("--webhook must be an http:// or https:// URL")
    contacts = ([{"type": "webhook", "url": args.webhook, "secret": args.secret}]
                if args.webhook else [{"type": "file"}])
    relay = "auto" if args.webhook else "leader"
    rng = random.Random(args.seed)
    # name parts drawn once per member from small pools: fast and still varied
    n_tlg = (args.n + PER_TLG - 1) // PER_TLG
    n_kp = (n_tlg + TLG_PER_KP - 1) // TLG_PER_KP
    nfiles = 0
    i = 0
    for k in range(1, n_kp + 1):
        kp_id = f"khu-pho-{k:03d}"
        clat0 = 16.0 + rng.random() * 0.1
        clon0 = 108.15 + rng.random() * 0.1
        leaders = []
        for t in range(1, TLG_PER_KP + 1):
            if i >= args.n:
                break
            gid = f"to-lien-gia-{k:03d}-{t:02d}"
            street = rng.choice(STREETS)
            clat = clat0 + rng.uniform(-0.004, 0.004)
            clon = clon0 + rng.uniform(-0.004, 0.004)
            lines = []
            first = None
            for j in range(1, PER_TLG + 1):
                if i >= args.n:
                    break
                hid = f"hh-{k}-{(t - 1) * PER_TLG + j:04d}"
                first = first or hid
                hon, name = W.person_name(rng)
                lines.append("    " + dumps({
                    "id": hid, "name": f"Hộ {hon} {name}",
                    "address": f"K{rng.randrange(2, 400, 2)}/{rng.randint(1, 80)} {street}",
                    "phone": phone(i), "lang": "en" if rng.random() < 0.01 else "vi",
                    "camera": rng.random() < 0.3,
                    "lat": round(clat + rng.uniform(-0.0006, 0.0006), 6),
                    "lon": round(clon + rng.uniform(-0.0006, 0.0006), 6),
                    "contacts": contacts}))
                i += 1
            leaders.append(first)
            head = ("{\n"
                    f'  "id": "{gid}",\n'
                    f'  "name": "Tổ liên gia số {t} – Khu phố {k}",\n'
                    '  "kind": "inter_household",\n'
                    f'  "parent": "{kp_id}",\n'
                    f'  "leader": "{first}",\n'
                    f'  "relay": "{relay}",\n'
                    '  "relay_timeout": 600,\n'
                    '  "members": [\n')
            with open(os.path.join(outdir, gid + ".json"), "w", encoding="utf-8") as f:
                f.write(head + ",\n".join(lines) + "\n  ]\n}\n")
            nfiles += 1
        with open(os.path.join(outdir, kp_id + ".json"), "w", encoding="utf-8") as f:
            f.write(W.dump_group({"id": kp_id, "name": f"Khu phố {k}", "kind": "residential",
                                  "leader": leaders[0], "relay": "auto", "members": leaders}))
        nfiles += 1
    print(f"{args.n} members in {nfiles} group files -> {outdir}")


if __name__ == "__main__":
    main()
