"""Question phrasings (templates) and answerable single-chunk question records."""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from typing import Any

from stages.common.korean import has_batchim, josa, normalize
from stages.synthesize.facts import (
    CLOCK_TIME,
    HOURS,
    MONEY,
    PHONE,
    Fact,
    _entity_facts,
    _list_facts,
    entity_name,
)
from stages.synthesize.filters import _squash
from stages.synthesize.limits import Limits
from stages.synthesize.styles import (
    DIFFERENCE,
    MULTI_PART,
    SENTENCE_SPECS,
    SPECS,
    YES_NO,
    YES_NO_UNLESS,
    Spec,
    has_shape,
    ida,
    ro,
)
from stages.synthesize.tables import _is_meal, _table_facts, course_facts

log = logging.getLogger("synthesize")

# ------------------------------------------------------------------ records
STOPWORDS = {
    "있는",
    "있다",
    "있으며",
    "있어",
    "수",
    "곳",
    "곳이다",
    "것",
    "등",
    "및",
    "통해",
    "함께",
    "다양한",
    "대한",
    "위한",
    "하는",
}


def key_phrases(sentence: str, entity: str, n: int = 3) -> list[str]:
    """1-n key names/numbers of a descriptive answer (Kiwi): runs of adjacent noun/number morphemes
    as written ('성산일출봉', '200여종'); numbers first, then proper nouns, then the longest
    common nouns; never the subject itself; in sentence order."""
    from stages.common.korean import _kiwi

    text = normalize(sentence)
    spans: list[list[Any]] = []  # [start, end, has_number, has_proper]
    for tok in _kiwi().tokenize(text):
        nounish = tok.tag.startswith(("NN", "SN", "SL", "XSN", "NR")) and tok.tag != "NNB"
        if not nounish:
            continue
        if spans and spans[-1][1] == tok.start and not (tok.tag == "XSN" and not spans):
            spans[-1][1] = tok.start + tok.len
            spans[-1][2] |= tok.tag in ("SN", "NR")
            spans[-1][3] |= tok.tag == "NNP"
        elif tok.tag != "XSN":
            spans.append([tok.start, tok.start + tok.len, tok.tag in ("SN", "NR"), tok.tag == "NNP"])
    own = _squash(entity)
    found = []
    for start, end, number, proper in spans:
        phrase = text[start:end].strip()
        if len(phrase) >= 2 and _squash(phrase) and _squash(phrase) not in own and phrase not in STOPWORDS:
            found.append((start, phrase, number, proper))
    ranked = sorted(found, key=lambda f: (not f[2], not f[3], -len(f[1]), f[0]))[:n]
    return list(dict.fromkeys(f[1] for f in sorted(ranked)))


def _money_text(value: str) -> str:
    """The bare amount of a price cell: '60,000원 / 1대' -> '60,000원'; OCR '3.000원' -> '3,000원'."""
    m = MONEY.search(value)
    return re.sub(r"(\d)\.(\d{3})", r"\1,\2", m.group(0)) if m else value


def answer_short(value: str, kind: str) -> str:
    if kind == "price":
        return _money_text(value)
    if kind == "count":
        return normalize(re.sub(r"\s*\([^)]*\)", "", value))
    if kind == "time":
        m = HOURS.search(value)
        return normalize(m.group(0)) if m else normalize(re.sub(r"\s*\([^)]*\)", "", value))
    return normalize(value)


def key_facts(short: str, kind: str, entity: str) -> list[str]:
    if kind in ("list",):
        items = [i.strip() for i in re.split(r"\s*(?:→|,|/)\s*", short) if i.strip()]
        return items[:4]
    if kind == "text":
        return key_phrases(short, entity) or [short]
    return [short]


def _josa(word: str, pair: str) -> str:
    """josa() decided by the word before a trailing bracket: '자양영당(제천의병전시관)' takes 으로 like '…전시관'."""
    base = re.sub(r"\s*\([^)]*\)$", "", word) or word
    return word + josa(base, pair)[len(base) :]


def _ro(word: str) -> str:
    base = re.sub(r"\s*\([^)]*\)$", "", word) or word
    return word + ro(base)[len(base) :]


def _particles(name: str, word: str) -> dict[str, str]:
    if not word:
        return dict.fromkeys((name, *(f"{name}_{p}" for p in ("eun", "ga", "eul", "wa", "ro", "eui", "ida", "q"))), "")
    return {
        name: word,
        f"{name}_eun": _josa(word, "은/는"),
        f"{name}_ga": _josa(word, "이/가"),
        f"{name}_eul": _josa(word, "을/를"),
        f"{name}_wa": _josa(word, "과/와"),
        f"{name}_ro": _ro(word),
        f"{name}_eui": f"{word}의",
        f"{name}_ida": ida(word),
        f"{name}_q": "을" if has_batchim(word) else "를",
    }


def fill(template: str, e: str, v: str = "", x: str = "", **more: str) -> str:
    """A template with subject, value and extra, their particles chosen by the last syllable."""
    values = {**_particles("e", e), **_particles("v", v), **_particles("x", x), **more}
    return " ".join(template.format(**values).split())


VERB_STEMS = set("크쓰가오나자타서보주되하이지르쁘프내세켜펴배")


def _polite_end(s: str) -> str:
    """Plain '-다' ending -> polite: 있다 -> 있습니다, 보인다 -> 보입니다, 않는다 -> 않습니다,
    장소다 -> 장소입니다, 크다 -> 큽니다."""
    if not s.endswith("다") or len(s) < 2 or s.endswith("니다"):
        return s
    if s.endswith("는다"):
        return s[:-2] + "습니다"
    prev = s[-2]
    if not "가" <= prev <= "힣":
        return s[:-1] + "입니다"
    base, coda = ord(prev) - (ord(prev) - 0xAC00) % 28, (ord(prev) - 0xAC00) % 28
    if coda == 4:  # ㄴ: 한다 -> 합니다, 보인다 -> 보입니다
        return s[:-2] + chr(base + 17) + "니다"
    if coda:
        return s[:-1] + "습니다"
    if prev in VERB_STEMS:
        return s[:-2] + chr(base + 17) + "니다"
    return s[:-1] + "입니다"


def polite_sentence(sentence: str, entity: str) -> str:
    """A brochure sentence as an answer: polite ending, the subject named when the sentence omits it."""
    s = normalize(sentence).rstrip(".")
    if s.endswith("다"):
        s = _polite_end(s)
    elif re.search(r"(적합|가능)$", s):
        s += "합니다"
    elif not s.endswith("요"):
        s = ida(s).rstrip(".")
    first = s.split(" ")[0]
    own_topic = re.search(r"[은는]$", first) is not None and len(first) >= 3
    if _squash(entity) and _squash(entity) not in _squash(s) and not own_topic:
        s = f"{josa(entity, '은/는')} {s}"
    return s + "."


# ------------------------------------------------------------------ records
def _record(
    chunk,
    question,
    answer,
    qtype,
    fact,
    answerable,
    subject,
    chunk_ids=None,
    generator="rules",
    *,
    short: str | None = None,
    facts: list[str] | None = None,
    kind: str = "text",
    style: str = "direct",
):
    return {
        "question": question,
        "answer": answer,
        "answer_short": answer if short is None else short,
        "key_facts": facts if facts is not None else ([answer] if answerable else []),
        "answer_kind": kind if answerable else "abstain",
        "style": style,
        "answerable": answerable,
        "type": qtype,
        "fact": fact,
        "chunk_id": chunk["chunk_id"],
        "chunk_ids": chunk_ids or [chunk["chunk_id"]],
        "section_path": chunk["section_path"],
        "pages": chunk["pages"],
        "generator": generator,
        "_subject": (fact, subject),
    }


def spec_for(key: str) -> tuple[str, Spec] | None:
    """The style spec of a fact key ('address', 's:activity:<pattern>', 'table' is resolved by value)."""
    if key.startswith("s:"):
        name = key.split(":")[1]
        if name == "activity" and "가능" in key:
            name = "activity2"
        spec = SENTENCE_SPECS.get(name)
        return (name, spec) if spec else None
    spec = SPECS.get(key)
    return (key, spec) if spec else None


def table_key(value: str, col: str) -> str:
    """A table cell is asked by the shape of its value and what its column header means."""
    if HOURS.search(value):
        return "table_hours"
    if CLOCK_TIME.fullmatch(value.strip()):
        return "table_time"
    if PHONE.fullmatch(value.strip()):
        return "phone"
    if _money_text(value) != value or MONEY.search(value):
        return "table_price"
    if re.match(r"\d[\d,.]*\s?[A-Za-z가-힣*]{0,6}", value) and len(value) <= 15:
        return "table_count"
    if re.search(r"(처|곳|장소|위치|기관)$", col):
        return "table_name"
    return "table_text"


def _styled(
    chunk: dict[str, Any],
    fact: str,
    e: str,
    raw: str,
    key: str,
    extra: str,
    lim: Limits,
    pick: Any,
    yes_no: bool = False,
) -> tuple[list[dict[str, Any]], str]:
    """Records for one fact in the styles `pick` chooses; '' or the name of the filter that dropped it.

    `yes_no`: choose among the fact's yes/no phrasings only (``YES_NO`` and the spec's own yes_no styles)."""
    if key == "table":
        col = extra
        key = table_key(raw, col)
        if key == "table_price" and not re.search(r"요금|가격|금액|비|료", col):
            title = chunk["title"] if re.search(r"금액|요금|가격|료", chunk["title"]) else "요금"
            extra = f"{col} {title}"
    if key == "suits" and not yes_no and re.search(r"개별|소규모|혼자|1인", raw):
        extra_records, _ = _styled(chunk, fact, e, raw, "suits_solo", extra, lim, lambda styles: styles)
    else:
        extra_records = []
    found = spec_for(key)
    if found is None:
        return [], "no_spec"
    name, spec = found
    value = re.sub(r"\s*/\s*(1대|1인)$", r"(\1 기준)", normalize(raw))
    if name == "rooms" and re.match(r"\d+(?:\s|$)", value):
        value = re.sub(r"^(\d+)", r"\1개", value)
    if spec.kind == "price":
        value = re.sub(r"(\d)\.(\d{3})(?=\D|$)", r"\1,\2", value)  # OCR '3.000원'
    if " → " in e:  # a walking route as a row key: '교동 민화마을 → 별빛마을 별탑'
        stops = e.split(" → ")
        e = f"{stops[0]}에서 {stops[-1]}까지 가는 코스"
    kind = spec.kind
    if not has_shape(value, kind):
        return [], "shape"
    short = answer_short(value, kind)
    sentence = polite_sentence(value, e) if kind == "text" and "{sentence}" in str(spec.styles) else ""
    steps = ", ".join(s.strip() for s in value.split("→")) if name in ("steps", "course_stops") else ""
    if name == "course_next":
        extra = entity_name(extra)
        e = e.split("/")[0]
    # '{day}에 가도 문을 여나요? -> 아니요' holds only for a weekly closing day: '매월 첫째 월요일 휴관'
    # is open on the other Mondays.
    day = (
        re.search(r"(?<=매주)\s*[월화수목금토일]요일", value) or re.fullmatch(r"[월화수목금토일]요일", value) or [""]
    )[0]
    day = day.strip()
    late = ""
    if (m := HOURS.search(value)) and (end := int(m.group(0).split("~")[1].split(":")[0])) < 23:
        late = f"{end + 1}시"  # an hour after closing: a yes/no question whose answer is no
    items = [i for i in re.split(r"\s*(?:,|→)\s*", value) if i and not _is_meal(i)]
    middle = items[len(items) // 2] if len(items) >= 3 else (items[0] if len(items) == 2 else "")
    needs = {"{day}": day, "{late}": late, "{item}": middle}
    templates = spec.styles
    if yes_no:
        unless = YES_NO_UNLESS.get(name)
        own = () if unless and unless.search(value) else tuple(("yes_no", q, a) for q, a in YES_NO.get(name, ()))
        templates = own + tuple(st for st in spec.styles if st[0] == "yes_no")
    styles = [st for st in templates if all(v or k not in st[1] for k, v in needs.items())]
    qtype = "descriptive" if kind == "text" or name in ("steps", "course_stops") else "factual"
    out = []
    for style, q, a in pick(styles):
        more = {"sentence": sentence, "steps": steps, "day": day, "late": late, "item": middle, "end": late}
        question = fill(q, e, value, extra, **more)
        answer = fill(a, e, value, extra, **more)
        rec = _record(
            chunk,
            question,
            answer,
            qtype,
            fact,
            True,
            e,
            short=short,
            facts=key_facts(short, kind, e),
            kind=kind,
            style=style,
        )
        rec["_parts"] = [(raw, 0)]
        out.append(rec)
    return out + extra_records, ""


def _multi_part(chunk: dict[str, Any], facts: list[Fact], rng: random.Random) -> list[dict[str, Any]]:
    """'주소와 전화번호를 알려주세요': two slot facts of one subject in one chunk; the answer has both."""
    by_subject: dict[str, list[tuple[str, str, Spec, str]]] = {}
    for fact, e, raw, key, _extra in facts:
        found = spec_for(key)
        if found and found[1].attr and has_shape(raw, found[1].kind):
            by_subject.setdefault(e, []).append((fact, raw, found[1], found[0]))
    out = []
    for e, items in sorted(by_subject.items()):
        items = list({it[3]: it for it in items}.values())
        if len(items) < 2:
            continue
        (f1, r1, s1, n1), (f2, r2, s2, n2) = rng.sample(items, 2)
        v1 = answer_short(f"{r1}개" if n1 == "rooms" and r1.isdigit() else r1, s1.kind)
        v2 = answer_short(f"{r2}개" if n2 == "rooms" and r2.isdigit() else r2, s2.kind)
        style, q = rng.choice(MULTI_PART)
        more = {**_particles("a1", s1.attr), **_particles("a2", s2.attr)}
        question = fill(q, e, **more)
        answer = f"{e}의 {josa(s1.attr, '은/는')} {v1}, {josa(s2.attr, '은/는')} {v2}입니다."
        rec = _record(
            chunk,
            " ".join(question.split()),
            answer,
            "factual",
            f"{f1}+{f2}",
            True,
            e,
            short=f"{v1} / {v2}",
            facts=[v1, v2],
            kind="list",
            style=style,
        )
        rec["_parts"] = [(r1, 0), (r2, 0)]
        out.append(rec)
    return out


def _difference(chunk: dict[str, Any], e: str, diff: str, extra: str, rng: random.Random) -> dict[str, Any]:
    k1, v1, k2, v2, col = extra.split("\t")
    style, q = rng.choice(DIFFERENCE)
    more = {**_particles("k1", k1), **_particles("k2", k2), "col": col}
    question = " ".join(q.format(**{**_particles("e", e), **more}).split())
    lo, hi = _money_text(v1), _money_text(v2)
    answer = f"{josa(k1, '은/는')} {lo}, {josa(k2, '은/는')} {ro(hi)} {diff} 차이가 납니다."
    rec = _record(
        chunk,
        question,
        answer,
        "comparison",
        "difference",
        True,
        f"{e}/{k1}/{k2}/{col}",
        short=diff,
        facts=[diff],
        kind="price",
        style=style,
    )
    rec["_parts"] = [(v1, 0), (v2, 0)]
    return rec


def chunk_facts(chunk: dict[str, Any], lim: Limits) -> list[Fact]:
    """Every fact of a chunk, each once (two rules finding the same value keep the first)."""
    facts: list[Fact] = []
    if chunk["kind"] == "entry":
        facts += _entity_facts(chunk, lim)
    elif chunk["kind"] == "table":
        facts += _table_facts(chunk, lim)
    facts += _list_facts(chunk, lim) + course_facts(chunk)
    seen, out = set(), []
    for f in facts:
        found = spec_for(f[3])
        name = found[0] if found else f[3]
        if (name, f[1], f[2]) not in seen:
            seen.add((name, f[1], f[2]))
            out.append(f)
    return out


def yes_no_candidates(chunk: dict[str, Any], lim: Limits, rng: random.Random) -> list[dict[str, Any]]:
    """One answerable yes/no question per fact of a chunk that has a yes/no phrasing (seeded choice)."""
    out = []
    for fact, e, raw, key, extra in chunk_facts(chunk, lim):
        if key != "difference":
            out += _styled(chunk, fact, e, raw, key, extra, lim, lambda st: [rng.choice(st)] if st else [], True)[0]
    return out


def rules_candidates(
    chunk: dict[str, Any],
    lim: Limits,
    rng: random.Random,
    used: Counter | None = None,
    dropped: Counter | None = None,
) -> list[dict[str, Any]]:
    """Single-chunk answerable questions of one chunk, `questions_per_fact` styles per fact.

    Styles are chosen least-used first (over the whole run, counted in `used`), so rare styles
    (how_to, when, where_to_book ...) are asked wherever a fact allows them; ties are seeded."""
    used = Counter() if used is None else used
    dropped = Counter() if dropped is None else dropped

    def pick(styles):
        order = sorted(styles, key=lambda st: (used[st[0]], rng.random()))
        chosen = order[: lim.questions_per_fact]
        for st in chosen:
            used[st[0]] += 1
        return chosen

    facts = chunk_facts(chunk, lim)
    out = []
    for fact, e, raw, key, extra in facts:
        if key == "difference":
            out.append(_difference(chunk, e, raw, extra, rng))
            used["difference"] += 1
            continue
        records, why = _styled(chunk, fact, e, raw, key, extra, lim, pick)
        if why:
            dropped[why] += 1
        out += records
    multi = _multi_part(chunk, facts, rng)
    used["multi_part"] += len(multi)
    return out + multi
