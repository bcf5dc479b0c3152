#!/usr/bin/env python3
"""Generates the example ward shipped in groups/: Phường Hòa Cường Bắc, quận Hải Châu, Đà Nẵng.

Invented data (names, house numbers, phones, coordinates) on real street names. Deterministic:
a fixed seed, so rerunning rewrites identical files. Python 3 standard library only.

    python3 bench/gen/example_ward.py [OUTDIR]        (default: groups/ of this repository)

Shape (DESIGN.md §5): 4 residential groups (khu phố), 16 inter-household groups (tổ liên gia)
under them holding ~350 households; pawnshops, guesthouses/hotels, landlords, and two `other`
groups (schools, cafés). Households are defined in their tổ liên gia file; everyone who also
belongs elsewhere (the tổ leaders in their khu phố, landlords, café owners) is referenced there
by id. Every contact is {"type": "file"}, so the example reaches nothing outside the machine.
"""

import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wardlib as W  # noqa: E402

SEED = 20241123

# khu phố → (streets, lat range, lon range, number of tổ liên gia)
KHU_PHO = [
    (["Núi Thành", "Trưng Nữ Vương", "Lê Đình Thám"], (16.0465, 16.0495), (108.2145, 108.2195), 4),
    (["Núi Thành", "Tiểu La", "Phan Đăng Lưu"], (16.0435, 16.0465), (108.2135, 108.2185), 4),
    (["Lê Thanh Nghị", "2 Tháng 9", "Duy Tân", "Phan Đăng Lưu"], (16.0405, 16.0440),
     (108.2160, 108.2195), 5),
    (["Nguyễn Hữu Thọ", "Tiểu La", "Lê Thanh Nghị"], (16.0405, 16.0435), (108.2105, 108.2145), 3),
]
HH_BLOCK = 35          # households of the t-th tổ of a khu phố are numbered from (t-1)*35 + 1
FOREIGN = [            # foreign tenants (lang "en"), placed in chosen tổ liên gia
    ("ông", "James Walker"), ("bà", "Emma Johansson"), ("ông", "Kim Min-jun"),
    ("bà", "Sarah O'Connor"), ("ông", "Lukas Becker"), ("bà", "Park Ji-yeon"),
    ("ông", "Daniel Nguyen"),
]
TLG_AUTO = {4, 11}     # tổ liên gia that deliver straight to households (no relay by the leader)
TLG_TIMEOUT = {3: 900, 9: 300}  # relay_timeout other than 600 s; tổ 14 and 16 use the default


def on(street):
    """'2 Tháng 9' reads as a house number after a number, so addresses say 'đường 2 Tháng 9'."""
    return "đường " + street if street[0].isdigit() else street


def jitter(rng, centre, spread):
    return centre + rng.uniform(-spread, spread)


def build():
    rng = random.Random(SEED)
    phones = W.PhoneBook(rng)
    used_names = {"Trần Văn Bình"}   # reserved for hh-2-071 below

    def new_person():
        while True:
            hon, name = W.person_name(rng)
            if name not in used_names:
                used_names.add(name)
                return hon, name

    groups = []
    households = {}          # id -> member object
    landlord_hh, cafe_hh = [], []
    foreign = list(FOREIGN)
    tlg_no = 0
    for k, (streets, (la0, la1), (lo0, lo1), n_tlg) in enumerate(KHU_PHO, start=1):
        kp_id = f"khu-pho-{k}"
        tlgs = []
        for t in range(1, n_tlg + 1):
            tlg_no += 1
            street = streets[(t - 1) % len(streets)]
            front = rng.randrange(20, 400, 2)
            kiet = front + rng.randrange(-12, 14, 2)   # the alley opens among these house numbers
            clat, clon = rng.uniform(la0, la1), rng.uniform(lo0, lo1)
            n_hh = rng.randint(19, 26)
            members = []
            for i in range(1, n_hh + 1):
                hid = f"hh-{k}-{(t - 1) * HH_BLOCK + i:03d}"
                if hid == "hh-2-071":               # the household DESIGN.md §5 shows
                    hon, name = "ông", "Trần Văn Bình"
                    lang = "vi"
                elif foreign and i == n_hh and tlg_no % 2 == 1:
                    hon, name = foreign.pop(0)
                    lang = "en"
                else:
                    hon, name = new_person()
                    lang = "vi"
                if rng.random() < 0.4:
                    address = f"{front} {on(street)}"
                    front += rng.choice((2, 2, 4, 6))
                else:
                    address = f"K{kiet}/{rng.randint(1, 60)} {on(street)}"
                m = W.member(hid, f"Hộ {hon} {name}", address, phones.take(), lang,
                             rng.random() < 0.27, jitter(rng, clat, 0.0005),
                             jitter(rng, clon, 0.0005))
                households[hid] = m
                members.append(m)
            # one landlord in most tổ; café owners in a few
            if tlg_no % 3 != 0:
                landlord_hh.append(members[rng.randint(2, n_hh - 2)]["id"])
            if tlg_no in (2, 7, 13):
                cafe_hh.append(members[rng.randint(2, n_hh - 2)]["id"])
            g = {
                "id": f"to-lien-gia-{tlg_no:02d}",
                "name": f"Tổ liên gia số {tlg_no} – Khu phố {k}",
                "kind": "inter_household", "parent": kp_id,
                "leader": members[0]["id"],
                "relay": "auto" if tlg_no in TLG_AUTO else "leader",
            }
            if g["relay"] == "leader" and tlg_no not in (14, 16):
                g["relay_timeout"] = TLG_TIMEOUT.get(tlg_no, 600)
            g["members"] = members
            tlgs.append(g)
        # the head of the khu phố is a household of its first tổ, not that tổ's leader
        head = tlgs[0]["members"][1]["id"]
        groups.append({
            "id": kp_id, "name": f"Khu phố {k} – {W.WARD}", "kind": "residential",
            "leader": head, "relay": "auto",
            "members": [head] + [g["leader"] for g in tlgs],
        })
        groups.extend(tlgs)

    def business(prefix, n, name, street, lang="vi", camera_p=0.6):
        return W.member(f"biz-{prefix}-{n:02d}", name, f"{rng.randrange(2, 420, 2)} {on(street)}",
                        phones.take(), lang, rng.random() < camera_p,
                        rng.uniform(16.0405, 16.0495), rng.uniform(108.2105, 108.2195))

    pawn = [business("cd", i + 1, n, s, camera_p=0.85) for i, (n, s) in enumerate([
        ("Tiệm cầm đồ Phát Đạt", "Núi Thành"), ("Cầm đồ Kim Long", "2 Tháng 9"),
        ("Cầm đồ Thành Công", "Nguyễn Hữu Thọ"), ("Dịch vụ cầm đồ Tín Nghĩa", "Tiểu La"),
        ("Tiệm cầm đồ Hưng Thịnh", "Trưng Nữ Vương"), ("Cầm đồ Vạn Phúc", "Lê Thanh Nghị"),
    ])]
    groups.append({
        "id": "cam-do", "name": f"Cơ sở kinh doanh cầm đồ – {W.WARD}", "kind": "pawnshop",
        "leader": pawn[0]["id"], "relay": "auto", "channels": [{"type": "file"}],
        "members": pawn,
    })
    guest = [business("nn", i + 1, n, s, camera_p=0.7) for i, (n, s) in enumerate([
        ("Nhà nghỉ Hoa Mai", "Núi Thành"), ("Nhà nghỉ Bình An", "Phan Đăng Lưu"),
        ("Khách sạn Lam Giang", "2 Tháng 9"), ("Nhà nghỉ Thiên Phú", "Lê Đình Thám"),
        ("Khách sạn Minh Anh", "Duy Tân"), ("Nhà nghỉ Ngọc Lan", "Tiểu La"),
        ("Nhà nghỉ Hồng Ngọc", "Nguyễn Hữu Thọ"), ("Khách sạn Sao Biển", "2 Tháng 9"),
    ])]
    groups.append({
        "id": "nha-nghi-khach-san", "name": f"Nhà nghỉ, khách sạn – {W.WARD}",
        "kind": "guesthouse", "leader": guest[0]["id"], "relay": "auto",
        "channels": [{"type": "file"}], "members": guest,
    })
    lodg = [business("nt", i + 1, n, s, camera_p=0.4) for i, (n, s) in enumerate([
        ("Nhà trọ Thanh Bình (bà Ngô Thị Liên)", "Lê Thanh Nghị"),
        ("Nhà trọ sinh viên Hồng Phúc (ông Đặng Văn Phúc)", "Phan Đăng Lưu"),
        ("Căn hộ dịch vụ An Nhiên (bà Lương Mỹ Duyên)", "Lê Đình Thám"),
        ("Nhà trọ Minh Châu (ông Hồ Minh Châu)", "Tiểu La"),
        ("Khu trọ Bảy Liên (bà Trương Thị Bảy)", "Nguyễn Hữu Thọ"),
    ])]
    groups.append({
        "id": "chu-nha-tro", "name": f"Chủ nhà trọ, cho thuê nhà – {W.WARD}",
        "kind": "landlord", "leader": lodg[0]["id"], "relay": "auto",
        "members": lodg + landlord_hh,
    })
    school = [business("th", i + 1, n, s, camera_p=1.0) for i, (n, s) in enumerate([
        ("Trường Mầm non Sơn Ca", "Trưng Nữ Vương"), ("Trường Tiểu học Bình Minh", "Tiểu La"),
        ("Trường THCS Ánh Dương", "Lê Thanh Nghị"),
    ])]
    groups.append({
        "id": "truong-hoc", "name": f"Các trường học – {W.WARD}", "kind": "other",
        "label": "trường học", "leader": school[1]["id"], "relay": "auto", "members": school,
    })
    cafe = [business("cf", i + 1, n, s, camera_p=0.8) for i, (n, s) in enumerate([
        ("Cà phê Góc Phố", "Núi Thành"), ("Cà phê Mộc Miên", "2 Tháng 9"),
        ("Cà phê sân vườn Thu Hà", "Nguyễn Hữu Thọ"), ("Cà phê Hạt Rang", "Duy Tân"),
    ])]
    groups.append({
        "id": "quan-ca-phe", "name": f"Quán cà phê – {W.WARD}",
        "kind": "other", "label": "quán cà phê", "leader": cafe[0]["id"], "relay": "auto",
        "members": cafe + cafe_hh,
    })
    return groups


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.normpath(os.path.join(here, "..", "..", "groups"))
    outdir = sys.argv[1] if len(sys.argv) > 1 else default
    groups = build()
    written = W.write_groups(groups, outdir)
    # a group dropped from this generator must not linger in groups/; elsewhere, touch only
    # the files written
    if os.path.normpath(os.path.abspath(outdir)) == default:
        for fn in os.listdir(outdir):
            if fn.endswith(".json") and fn not in written:
                os.remove(os.path.join(outdir, fn))
    n_hh = sum(1 for g in groups for m in g["members"]
               if isinstance(m, dict) and m["id"].startswith("hh-"))
    n_biz = sum(1 for g in groups for m in g["members"]
                if isinstance(m, dict) and m["id"].startswith("biz-"))
    print(f"{len(groups)} groups, {n_hh} households, {n_biz} businesses -> {outdir}")


if __name__ == "__main__":
    main()
