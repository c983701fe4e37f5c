"""Table and course facts: table cells by column, label tables, price differences, procedures and
course stops. Entry prose and lists are ``facts.py``."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from stages.common.korean import normalize
from stages.synthesize.facts import (
    CLOSED,
    MONEY,
    PHONE,
    PRICE,
    SUITS,
    URL,
    Fact,
    _one,
    _suits,
    course_owner,
    entity_name,
    subject_of_section,
)
from stages.synthesize.limits import DEFAULTS, Limits

# Table columns that hold a known fact type get that fact's natural templates.
COLUMN_FACTS = {
    "객실": "rooms",
    "주소": "address",
    "위치": "address",
    "전화": "phone",
    "연락처": "phone",
    "요금": "price",
    "가격": "price",
    "소요시간": "duration",
    "운영시간": "hours",
    "포인트": "points",
}


def _rows(chunk: dict[str, Any]) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")] for line in chunk["text"].splitlines() if "|" in line]


def _is_label_table(rows: list[list[str]]) -> bool:
    """'상품소개 | ...' / '요금안내 | 30,000원 ...': two columns of short labels and longer values."""
    return bool(rows) and all(
        len(r) == 2 and len(r[0]) <= 6 and len(r[1]) > len(r[0]) and "→" not in r[1] for r in rows
    )


NOTE_COLUMN = re.compile(r"^(비고|참고|기타|내용|설명|메모)$")


CATEGORY_COLUMNS = ("이용권", "코스", "구분", "시기", "회차")


def row_subject(chunk: dict[str, Any], key: str) -> str:
    """A table row's subject: '5시간권' alone names nothing, '제천 관광택시 5시간권' does.

    Only rows of category tables (first column 이용권/코스/...) with short keys get their owner
    prefixed; a lodging table's rows are names already."""
    e = entity_name(key)
    rows = _rows(chunk)
    category = bool(rows) and rows[0][0] in CATEGORY_COLUMNS
    owner = course_owner(chunk)
    short_or_dated = len(e) <= 7 or re.search(r"\d", e) is not None  # '5시간권', '11월 ~ 1월'
    return f"{owner} {e}" if category and short_or_dated and owner not in e else e


def table_facts(chunk: dict[str, Any], lim: Limits = DEFAULTS) -> list[tuple[str, str, str, str, str]]:
    """(fact, key, column, value, title) for table chunks with a header row 'a | b | c'."""
    rows = _rows(chunk)
    if len(rows) < 3 or _is_label_table(rows):  # one body row: a transposed table (STEP 01 | STEP 02 ...)
        return []
    header, body = rows[0], rows[1:]
    keys = Counter(r[0] for r in body if r)
    out = []
    for row in body:
        if len(row) != len(header) or not row[0] or keys[row[0]] > 1:
            continue
        for col, value in zip(header[1:], row[1:], strict=True):
            if value and value != "-" and col and len(value) <= lim.value_max_chars and "→" not in value:
                fact = next((f for word, f in COLUMN_FACTS.items() if col.startswith(word)), "table")
                out.append((fact, row[0], col, value, chunk["title"]))
    return out


def _money(value: str) -> float | None:
    """'60,000원 / 1대' -> 60000; '35만원' -> 350000; None when the cell holds no single amount."""
    found = MONEY.findall(value)
    if len(found) != 1:
        return None
    m = re.match(r"(\d[\d,.]*)(만|천)?원", found[0])
    n = float(m.group(1).replace(",", "").replace(".", ""))
    return n * {"만": 10000, "천": 1000}.get(m.group(2) or "", 1)


# Amounts that are given, not paid: never compared as 'more expensive'.
NOT_PRICE = re.compile(r"지원|인센티브|할인|혜택|적립")


# '60만원 / 1대', '1인당 1만원', '1박 5만원': the unit an amount is per ('' = none stated).
PER_UNIT = re.compile(r"(?<![\d.,])1\s*(인|대|박|일|회|개)(?![0-9가-힣]*일)")


def _per_unit(value: str) -> str:
    m = PER_UNIT.search(value)
    return m.group(1) if m else ""


def _table_facts(chunk: dict[str, Any], lim: Limits) -> list[Fact]:
    rows = _rows(chunk)
    owner = course_owner(chunk)
    facts: list[Fact] = []
    if _is_label_table(rows):
        for label, value in rows:
            if len(value) <= lim.value_max_chars:
                facts.append(("label", owner, value, "label", label))
            if "요금" in label and len(PRICE.findall(value)) == 1:
                facts.append(("price", owner, PRICE.search(value).group(0), "price", ""))
            if ("예약" in label or "문의" in label) and len(PHONE.findall(value)) == 1:
                facts.append(("phone", owner, PHONE.search(value).group(0), "booking_phone", ""))
            if ("예약" in label or "문의" in label) and (url := _one([m.group(0) for m in URL.finditer(value)])):
                facts.append(("booking_url", owner, url, "booking_url", ""))
            if (m := SUITS.search(value)) and len(m.group(1).strip()) >= 2:
                facts.append(("suits", owner, _suits(m.group(1)), "suits", m.group(2)))
            if label.endswith("소개") and len(value) > lim.value_max_chars:
                facts.append(("sentence", owner, value, "product", ""))
        return facts
    facts += steps_facts(chunk)
    if closed := _one([normalize(m.group(1)) for m in CLOSED.finditer(chunk["text"])]):
        facts.append(("closed", owner, closed, "closed", ""))
    prices: dict[str, list[tuple[str, str, float]]] = {}
    for fact, key, col, value, _title in table_facts(chunk, lim):
        if CLOSED.search(value):
            continue  # asked once for the owner above
        if fact == "points":
            facts.append(("points", f"{owner} 중 {entity_name(key)}", value, "points", ""))
        elif fact == "table":
            if NOTE_COLUMN.match(col):
                continue  # '비고 | 주말 및 공휴일만 운영': a remark is not an attribute one asks for by name
            facts.append(("table", row_subject(chunk, key), value, "table", col))
            if (n := _money(value)) is not None:
                prices.setdefault(col, []).append((entity_name(key), value, n))
        else:
            if fact == "price" and (n := _money(value)) is not None:
                prices.setdefault(col, []).append((entity_name(key), value, n))
            value = re.sub(r"\s*/\s*1대$", "", value) if fact == "price" else value
            facts.append((fact, row_subject(chunk, key), value, fact, ""))
    # '5시간권과 8시간권의 요금 차이는?': two rows of one price column, at most two pairs per column.
    # Only prices: a subsidy/discount table is not 'more expensive', and '60만원 / 1대' vs '1인당 1만원'
    # are amounts of different units, so only cells with the same per-unit are compared.
    where = f"{chunk.get('title', '')} {chunk.get('section_path', '')}"
    for col, cells in sorted(prices.items()):
        if NOT_PRICE.search(where) or NOT_PRICE.search(col):
            continue
        pairs = [
            (a, b)
            for a, b in zip(cells, cells[1:], strict=False)
            if a[2] != b[2] and _per_unit(a[1]) == _per_unit(b[1])
        ][:2]
        for a, b in pairs:
            lo, hi = sorted((a, b), key=lambda c: c[2])
            diff = f"{int(hi[2] - lo[2]):,}원"
            extra = "\t".join([lo[0], lo[1], hi[0], hi[1], col])
            facts.append(("difference", owner, diff, "difference", extra))
    return facts


# ------------------------------------------------------------------ courses
ARROW = re.compile(r"\s*→\s*")


def courses(chunk: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(course name, stops) from arrow rows in tables, arrow lines and numbered lists in entries."""
    out: list[tuple[str, list[str]]] = []
    if chunk["kind"] == "table":
        owner = course_owner(chunk)
        for row in _rows(chunk)[1:]:
            stops_cell = next((c for c in row if "→" in c), "")
            if stops_cell and row[0] and "→" not in row[0]:
                out.append((f"{owner} {row[0]}", [s.strip() for s in ARROW.split(stops_cell) if s.strip()]))
        return out
    m = re.match(r"#?\s*(.+?코스)", chunk["title"])
    if not m or chunk["kind"] != "entry":
        return out
    name = m.group(1)
    if " " not in name:  # '기본코스' alone names nothing: prefix its product
        parts = chunk["section_path"].split(" > ")
        name = f"{parts[-2]} {name}" if len(parts) >= 2 else name
    text = chunk["text"].split("*")[0]
    numbered = re.findall(r"(?m)^\s*\d+\.\s*\n?\s*([^\n]+)", text)
    if len(numbered) >= 3:
        out.append((name, [normalize(s) for s in numbered]))
    elif "→" in text:
        line = next(line for line in text.splitlines() if "→" in line)
        stops = [s.strip() for s in ARROW.split(line) if s.strip()]
        # the line may open with a lead-in ('제천 주요 관광지를 당일 여행으로 의림지')
        stops[0] = stops[0].split("으로 ")[-1]
        out.append((name, stops))
    # prose with arrows ('시대 순서(구·신석기 → 삼한 ...)를 따라') is no course
    return [(n, st) for n, st in out if all(len(x) <= 25 and x.count("(") == x.count(")") for x in st)]


def _is_meal(stop: str) -> bool:
    return bool(re.search(r"중식|석식|식사|이동", stop))


def course_facts(chunk: dict[str, Any]) -> list[Fact]:
    facts: list[Fact] = []
    for name, stops in courses(chunk):
        if len(stops) < 3 or len(set(stops)) != len(stops):
            continue
        facts.append(("course", name, " → ".join(stops), "course_stops", ""))
        if not _is_meal(stops[0]):
            facts.append(("course", name, stops[0], "course_first", ""))
        if not _is_meal(stops[-1]):  # '마지막 방문지는 중식(...)' reads wrong: the itinerary just ends with lunch
            facts.append(("course", name, stops[-1], "course_last", ""))
        for prev, nxt in zip(stops, stops[1:], strict=False):
            if not _is_meal(prev) and not _is_meal(nxt):
                facts.append(("course", f"{name}/{prev}", nxt, "course_next", prev))
    return facts


def steps_facts(chunk: dict[str, Any]) -> list[Fact]:
    """A procedure ('발급방법': STEP 01 | STEP 02 ... over one row of steps) -> an ordered list."""
    rows = _rows(chunk)
    if chunk["kind"] != "table" or len(rows) != 2 or not re.search(r"방법|절차|순서|이용방법", chunk["title"]):
        return []
    if not all(re.match(r"(?i)step|\d", c) for c in rows[0]) or len(rows[1]) < 2:
        return []
    owner = subject_of_section(chunk)
    verb = re.sub(r"방법$", "", chunk["title"]).strip() or "이용"
    return [("steps", owner, " → ".join(rows[1]), "steps", verb)]
