"""Shared pieces of the ward generators (example_ward.py, members.py) and the checker.

Python 3 standard library only. Everything here is deterministic given a random.Random, so
the generated groups/ files only change when this code or a seed changes.
"""

import json
import os
import unicodedata

WARD = "Phường Hòa Cường Bắc"
WARD_FULL = "Phường Hòa Cường Bắc, quận Hải Châu, Đà Nẵng"

# Mobile prefixes (national form without the leading 0 once in E.164).
PHONE_PREFIXES = ("905", "935", "914", "983", "372", "777")

SURNAMES = (
    # weighted roughly like central Viet Nam: Nguyễn first, Huỳnh and Võ common
    ["Nguyễn"] * 12 + ["Trần"] * 6 + ["Lê"] * 6 + ["Phạm"] * 4 + ["Huỳnh"] * 4 + ["Võ"] * 4
    + ["Phan"] * 3 + ["Hoàng"] * 2 + ["Đặng"] * 2 + ["Bùi"] * 2 + ["Đỗ"] * 2 + ["Hồ"] * 2
    + ["Ngô", "Dương", "Lý", "Trương", "Đinh", "Lương", "Mai", "Đoàn", "Tô", "Hà"]
)
MALE_MIDDLE = ["Văn"] * 5 + ["Hữu", "Đức", "Công", "Minh", "Quang", "Thanh", "Ngọc", "Xuân",
                             "Đình", "Tấn", "Bá"]
FEMALE_MIDDLE = ["Thị"] * 6 + ["Thu", "Ngọc", "Kim", "Thanh", "Mỹ", "Bích", "Hồng"]
MALE_GIVEN = ["Bình", "Hùng", "Dũng", "Tuấn", "Sơn", "Hải", "Long", "Phúc", "Tài", "Quý",
              "Hòa", "Thắng", "Lợi", "Nam", "Cường", "Khánh", "Trung", "Thành", "Vinh", "Tâm",
              "Hiếu", "Lộc", "Phước", "Nhân", "Toàn", "Quang", "Đạt", "Hoàng", "Kiên", "Tùng",
              "Thịnh", "Việt", "Hưng", "Định", "Sang", "Tín", "Châu", "An", "Đông", "Huy"]
FEMALE_GIVEN = ["Hoa", "Lan", "Hương", "Mai", "Thủy", "Hạnh", "Nga", "Hồng", "Liên", "Phượng",
                "Trang", "Yến", "Loan", "Hằng", "Nhung", "Cúc", "Thảo", "Vân", "Dung", "Oanh",
                "Tuyết", "Diệu", "Hiền", "Ngân", "Xuân", "Thanh", "Tâm", "Sương", "Quyên", "Lệ"]


def nfc(s):
    return unicodedata.normalize("NFC", s)


def person_name(rng):
    """(honorific, full name): 'ông' or 'bà' and a plausible Vietnamese full name."""
    if rng.random() < 0.65:
        return "ông", f"{rng.choice(SURNAMES)} {rng.choice(MALE_MIDDLE)} {rng.choice(MALE_GIVEN)}"
    return "bà", f"{rng.choice(SURNAMES)} {rng.choice(FEMALE_MIDDLE)} {rng.choice(FEMALE_GIVEN)}"


class PhoneBook:
    """Hands out unique invented 10-digit mobiles, written in E.164 (+84 + 9 digits)."""

    def __init__(self, rng):
        self.rng = rng
        self.used = set()

    def take(self):
        while True:
            p = "+84" + self.rng.choice(PHONE_PREFIXES) + f"{self.rng.randrange(1000000):06d}"
            if p not in self.used:
                self.used.add(p)
                return p


def member(mid, name, address, phone, lang, camera, lat, lon):
    """A member object with the keys in the order DESIGN.md §5 shows them."""
    return {
        "id": mid, "name": nfc(name), "address": nfc(address), "phone": phone, "lang": lang,
        "camera": camera, "lat": round(lat, 6), "lon": round(lon, 6),
        "contacts": [{"type": "file"}],
    }


GROUP_KEYS = ("id", "name", "kind", "label", "parent", "leader", "relay", "relay_timeout",
              "channels", "members")


def dump_group(g):
    """Pretty JSON with one member per line: a household is one reviewable, greppable line."""
    lines = ["{"]
    keys = [k for k in GROUP_KEYS if k in g] + [k for k in g if k not in GROUP_KEYS]
    for i, k in enumerate(keys):
        comma = "," if i + 1 < len(keys) else ""
        if k == "members":
            lines.append('  "members": [')
            ms = g[k]
            for j, m in enumerate(ms):
                mc = "," if j + 1 < len(ms) else ""
                lines.append("    " + json.dumps(m, ensure_ascii=False, separators=(", ", ": "))
                             + mc)
            lines.append("  ]" + comma)
        else:
            v = json.dumps(nfc(g[k]) if isinstance(g[k], str) else g[k], ensure_ascii=False,
                           separators=(", ", ": "))
            lines.append(f"  {json.dumps(k)}: {v}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_groups(groups, outdir):
    """Writes GROUP_ID.json for each group; returns the set of file names written."""
    os.makedirs(outdir, exist_ok=True)
    names = set()
    for g in groups:
        fn = g["id"] + ".json"
        tmp = os.path.join(outdir, "." + fn + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(dump_group(g))
        os.replace(tmp, os.path.join(outdir, fn))
        names.add(fn)
    return names
