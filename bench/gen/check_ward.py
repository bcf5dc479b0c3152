#!/usr/bin/env python3
"""Checks a directory of group files (DESIGN.md §5) for the mistakes an importer must refuse
and a few the example ward promises. Python 3 standard library only.

    python3 bench/gen/check_ward.py [DIR] [--min-households N] [--bbox LAT0,LAT1,LON0,LON1]
                                          [--any-contacts] [--bench]

Default DIR is groups/ of this repository, with the example ward's promises: at least 300
households, every kind of group, coordinates inside Hòa Cường Bắc, only {"type": "file"}
contacts and channels. --bench checks a members.py ward (format and references only).
Prints every problem as FILE:LINE: reason, then a summary; exits 1 if there was a problem.
"""

import argparse
import json
import os
import re
import sys
import unicodedata

KINDS = {"residential", "inter_household", "pawnshop", "guesthouse", "landlord", "other"}
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MOBILE_RE = re.compile(r"^\+84[35789][0-9]{8}$")
LANGS = {"vi", "en"}


class Checker:
    def __init__(self, args):
        self.args = args
        self.errors = []
        self.defined = {}       # member id -> (file, line)
        self.refs = []          # (member id, file, line)
        self.groups = {}        # group id -> group dict
        self.where = {}         # group id -> file
        self.members_of = {}    # group id -> set of member ids
        self.phones = {}
        self.member_objs = {}
        self.keyline = {}       # group id -> {key: line}

    def err(self, fn, line, msg):
        self.errors.append(f"{fn}:{line}: {msg}")

    def check_text(self, fn, line, what, s):
        if not isinstance(s, str) or not s.strip():
            self.err(fn, line, f"{what} must be a non-empty string")
        elif unicodedata.normalize("NFC", s) != s:
            self.err(fn, line, f"{what} is not NFC-normalized UTF-8: {s!r}")

    def check_contacts(self, fn, line, what, cs):
        if not isinstance(cs, list) or not cs:
            self.err(fn, line, f"{what} must be a non-empty list")
            return
        for c in cs:
            if not isinstance(c, dict) or not isinstance(c.get("type"), str):
                self.err(fn, line, f"{what}: every entry needs a string \"type\"")
            elif not self.args.any_contacts and c["type"] != "file":
                self.err(fn, line, f"{what}: type {c['type']!r}, the example ward uses only "
                                   "\"file\" so nothing leaves the machine")

    def check_member(self, fn, line, m, gid):
        mid = m.get("id")
        if not isinstance(mid, str) or not ID_RE.match(mid):
            self.err(fn, line, f"member id {mid!r} is not lower-case letters, digits and '-'")
            return None
        if mid in self.defined:
            f0, l0 = self.defined[mid]
            self.err(fn, line, f"member {mid} defined again (first defined at {f0}:{l0}); "
                               "reference it by id instead")
            return mid
        self.defined[mid] = (fn, line)
        self.member_objs[mid] = m
        for k in ("name", "address"):
            self.check_text(fn, line, f"{mid}.{k}", m.get(k))
        ph = m.get("phone")
        if not isinstance(ph, str) or not MOBILE_RE.match(ph):
            self.err(fn, line, f"{mid}.phone {ph!r} is not a Vietnamese mobile in E.164 "
                               "(+84 then 9 digits starting 3, 5, 7, 8 or 9)")
        elif ph in self.phones:
            self.err(fn, line, f"{mid}.phone {ph} already used by {self.phones[ph]}")
        else:
            self.phones[ph] = mid
        if m.get("lang") not in LANGS:
            self.err(fn, line, f"{mid}.lang {m.get('lang')!r} is not one of {sorted(LANGS)}")
        if not isinstance(m.get("camera"), bool):
            self.err(fn, line, f"{mid}.camera must be true or false")
        lat, lon = m.get("lat"), m.get("lon")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lon)):
            self.err(fn, line, f"{mid}: lat and lon must be numbers")
        elif self.args.bbox:
            a0, a1, o0, o1 = self.args.bbox
            if not (a0 <= lat <= a1 and o0 <= lon <= o1):
                self.err(fn, line, f"{mid}: ({lat}, {lon}) is outside the ward's box")
        self.check_contacts(fn, line, f"{mid}.contacts", m.get("contacts"))
        extra = set(m) - {"id", "name", "address", "phone", "lang", "camera", "lat", "lon",
                          "contacts"}
        if extra:
            self.err(fn, line, f"{mid}: unknown keys {sorted(extra)}")
        return mid

    def load(self, path, fn):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as e:
            self.err(fn, 1, f"not UTF-8: {e}")
            return
        try:
            g = json.loads(text)
        except json.JSONDecodeError as e:
            self.err(fn, e.lineno, f"bad JSON: {e.msg}")
            return
        lines = text.split("\n")

        def line_of(needle, start=0):
            for i in range(start, len(lines)):
                if needle in lines[i]:
                    return i + 1
            return 1

        if not isinstance(g, dict):
            self.err(fn, 1, "a group file holds one JSON object")
            return
        gid = g.get("id")
        if not isinstance(gid, str) or not ID_RE.match(gid):
            self.err(fn, line_of('"id"'), f"group id {gid!r} is not lower-case letters, "
                                          "digits and '-'")
            return
        if fn != gid + ".json":
            self.err(fn, line_of('"id"'), f"file name should be {gid}.json")
        if gid in self.groups:
            self.err(fn, line_of('"id"'), f"group {gid} also in {self.where[gid]}")
            return
        self.groups[gid] = g
        self.where[gid] = fn
        self.keyline[gid] = {k: line_of(f'"{k}"') for k in ("leader", "parent", "relay")}
        self.check_text(fn, line_of('"name"'), "name", g.get("name"))
        kind = g.get("kind")
        if kind not in KINDS:
            self.err(fn, line_of('"kind"'), f"kind {kind!r} is not one of {sorted(KINDS)}")
        if kind == "other":
            self.check_text(fn, line_of('"kind"'), "label (required for kind other)",
                            g.get("label"))
        elif "label" in g:
            self.err(fn, line_of('"label"'), "label is only for kind other")
        if g.get("relay") not in ("auto", "leader"):
            self.err(fn, line_of('"relay"'), f"relay {g.get('relay')!r} is not auto or leader")
        if "relay_timeout" in g:
            rt = g["relay_timeout"]
            if not isinstance(rt, int) or isinstance(rt, bool) or not 0 < rt <= 86400:
                self.err(fn, line_of('"relay_timeout"'), "relay_timeout must be seconds, "
                                                         "1..86400")
        if "channels" in g:
            self.check_contacts(fn, line_of('"channels"'), "channels", g["channels"])
        extra = set(g) - {"id", "name", "kind", "label", "parent", "leader", "relay",
                          "relay_timeout", "channels", "members"}
        if extra:
            self.err(fn, 1, f"unknown keys {sorted(extra)}")
        ms = g.get("members")
        mine = set()
        self.members_of[gid] = mine
        if not isinstance(ms, list):
            self.err(fn, line_of('"members"'), "members must be a list")
            return
        cursor = line_of('"members"')
        for m in ms:
            if isinstance(m, str):
                cursor = line_of(json.dumps(m), cursor)
                mid = m
                self.refs.append((m, fn, cursor))
            elif isinstance(m, dict):
                cursor = line_of(json.dumps(m.get("id"), ensure_ascii=False), cursor)
                mid = self.check_member(fn, cursor, m, gid)
            else:
                self.err(fn, cursor, "a member is an object (definition) or a string (id)")
                continue
            if mid is None:
                continue
            if mid in mine:
                self.err(fn, cursor, f"member {mid} listed twice in {gid}")
            mine.add(mid)

    def finish(self):
        for mid, fn, line in self.refs:
            if mid not in self.defined:
                self.err(fn, line, f"member {mid} is referenced but defined in no file")
        for gid, g in self.groups.items():
            fn, kl = self.where[gid], self.keyline[gid]
            leader = g.get("leader")
            if leader is not None and leader not in self.members_of.get(gid, ()):
                self.err(fn, kl["leader"], f"leader {leader!r} is not a member of {gid}")
            if g.get("relay") == "leader" and leader is None:
                self.err(fn, kl["relay"], "relay leader needs a leader")
            if "parent" in g:
                p = g["parent"]
                if p not in self.groups:
                    self.err(fn, kl["parent"], f"parent {p!r} is no group")
                elif self.groups[p].get("kind") != "residential":
                    self.err(fn, kl["parent"], f"parent {p} is {self.groups[p].get('kind')}, "
                                               "not residential")
            elif g.get("kind") == "inter_household":
                self.err(fn, 1, "an inter_household group needs a residential parent")
        reported = set()
        for gid in self.groups:
            seen, cur = [], gid
            while cur in self.groups and "parent" in self.groups[cur]:
                seen.append(cur)
                cur = self.groups[cur]["parent"]
                if cur in seen:
                    cycle = seen[seen.index(cur):]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        self.err(self.where[cur], self.keyline[cur]["parent"],
                                 "parent cycle: " + " -> ".join(cycle + [cur]))
                    break


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", nargs="?", default=os.path.join(here, "..", "..", "groups"))
    ap.add_argument("--min-households", type=int, default=300)
    ap.add_argument("--bbox", default="16.04,16.05,108.21,108.22",
                    help="LAT0,LAT1,LON0,LON1, or 'off'")
    ap.add_argument("--any-contacts", action="store_true",
                    help="allow contact and channel types other than file")
    ap.add_argument("--bench", action="store_true",
                    help="a members.py ward: no box, no household minimum, not every kind")
    args = ap.parse_args()
    if args.bench:
        args.bbox, args.min_households = "off", 0
    args.bbox = None if args.bbox == "off" else [float(x) for x in args.bbox.split(",")]

    c = Checker(args)
    files = sorted(f for f in os.listdir(args.dir) if f.endswith(".json"))
    if not files:
        print(f"{args.dir}: no .json group files", file=sys.stderr)
        return 1
    for fn in files:
        c.load(os.path.join(args.dir, fn), fn)
    c.finish()

    hh = [m for m in c.defined if m.startswith("hh-")]
    if len(hh) < args.min_households:
        c.errors.append(f"{args.dir}: {len(hh)} households, fewer than {args.min_households}")
    kinds = {}
    for g in c.groups.values():
        kinds[g.get("kind")] = kinds.get(g.get("kind"), 0) + 1
    missing = set() if args.bench else KINDS - set(kinds)
    for k in sorted(missing):
        c.errors.append(f"{args.dir}: no group of kind {k}")
    count = {}
    for mine in c.members_of.values():
        for mid in mine:
            count[mid] = count.get(mid, 0) + 1
    multi = sum(1 for v in count.values() if v > 1)
    n = len(c.member_objs) or 1
    cams = sum(1 for m in c.member_objs.values() if m.get("camera") is True)
    en = sum(1 for m in c.member_objs.values() if m.get("lang") == "en")

    for e in c.errors:
        print(e)
    print(f"{len(c.groups)} groups {dict(sorted(kinds.items()))}; {len(c.defined)} members "
          f"({len(hh)} households, {len(c.defined) - len(hh)} others); {len(c.refs)} references; "
          f"{multi} members in 2+ groups; camera {100 * cams / n:.0f} %; lang en {en}; "
          f"{len(c.errors)} problems")
    return 1 if c.errors else 0


if __name__ == "__main__":
    sys.exit(main())
