"""Answer values: normalisation, value atoms and the slot/key-fact matching rules (used by `metrics`).

Slot facts (phone, time, price, address, count, date, url) need the gold value exactly,
after normalisation (``value_atoms``); name/list/text answers need their key facts
(``key_fact_recall``). Pure functions of strings, deterministic, offline.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from . import korean
from .prompting import CITATION, strip_citations


# ---------------------------------------------------------------- normalisation
def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"  # punctuation and symbols (→, ~, ₩, ·)


def normalize_answer(text: str) -> str:
    """NFC, citations removed, lower-cased, punctuation/symbols removed, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text or "")
    text = CITATION.sub(" ", text).lower()
    text = "".join(" " if _is_punct(ch) else ch for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def compact(text: str) -> str:
    """Normalised text without spaces (Korean spacing varies and carries no meaning here)."""
    return normalize_answer(text).replace(" ", "")


# ---------------------------------------------------------------- value atoms (slot facts, key facts)
# Slot answers (phone, time, price, ...) are compared as sequences of "atoms": whole
# canonical numbers and values (a phone number, a clock time, an amount) and single
# letters, with spaces and punctuation dropped. A gold is found in an answer when its
# atoms form a contiguous run of the answer's atoms. Whole-number atoms give digit
# boundaries for free ("5,000원" is not inside "15,000원", "255개" never equals
# "451개"); letters one by one make Korean spacing and trailing particles irrelevant
# ("3,000원을" contains "3,000원", "ES 리조트" equals "ES리조트").
SLOT_KINDS = frozenset({"phone", "time", "price", "address", "count", "date", "url"})
TEXT_KINDS = frozenset({"name", "list", "text"})
ANSWER_KINDS = SLOT_KINDS | TEXT_KINDS | {"abstain"}

_PH_OPEN, _PH_CLOSE = "\ue000", "\ue001"  # private-use marks around a placeholder index
_DASHES = "~\\-–—―‐‑−〜∼"
_URL = re.compile(
    r"(?:https?://)?(?:www\.)?((?:[a-z0-9-]+\.)+(?:com|net|org|kr|io|co|me|info)(?:/[a-z0-9._~%/?=&#-]*)?)"
)
_DATE = re.compile(r"(?<![\d.])(\d{4})\s*[./-]\s*(\d{1,2})\s*[./-]\s*(\d{1,2})(?![\d])\.?")
_PHONE = (
    # 043-652-9222, (043) 652 9222, 043.652.9222, 02-123-4567, 010-1234-5678
    re.compile(r"(?<![\d])\(?(0\d{1,2})\)?[\s.)–-]*(\d{3,4})\s*[\s.–-]\s*(\d{4})(?![\d])"),
    re.compile(r"(?<![\d])(1[5-9]\d{2})\s*[\s.–-]\s*(\d{4})(?![\d])"),  # 1588-1234 (nationwide numbers)
    re.compile(r"(?<![\d])(0\d{8,10})(?![\d])"),  # 0436529222
)
# 오후 6시 30분 / 9시 / 10시 반 → HH:MM; '시간' (hours of duration) is not a clock time.
_KO_CLOCK = re.compile(r"(오전|오후)?\s*(?<![\d.])(\d{1,2})\s*시(?!간)(?:\s*(\d{1,2})\s*분|\s*(반))?")
_CLOCK = re.compile(r"(?<![\d:])(\d{1,2})\s*:\s*(\d{2})(?![\d:])")
_WON_PREFIX = re.compile(r"[₩￦]\s*(\d[\d,]*)")
_MAN = re.compile(r"(?<![\d,.])(\d+(?:\.\d+)?)\s*만\s*(?:(\d+)\s*천\s*)?(?=원)")  # 60만원, 1만 5천원
_CHEON = re.compile(r"(?<![\d,.])(\d+)\s*천\s*(?=원)")  # 3천원
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# 7월~8월 → 7~8월 (the unit said twice in a range)
_UNIT_RANGE = re.compile(rf"(\d+)\s*(월|일|원|명|개|년|분|시간|km|m)\s*(?:[{_DASHES}]|부터|에서)\s*(\d+)\s*\2")
# '09:00부터 18:00까지' reads as the range 09:00~18:00: 부터/에서 between two values is a dash.
_FROM = re.compile(rf"(?<=[\d{_PH_CLOSE}])\s*(?:부터|에서)\s*(?=[\d{_PH_OPEN}])")
_ATOM = re.compile(rf"{_PH_OPEN}(\d+){_PH_CLOSE}|\d+(?:\.\d+)?|[^\W\d_]")
# '9월 초까지' is the value '9월 초': a closing 까지 ends a range, it is not part of the value
# (only at the end of a word: '까지는', '까지만' stay, and the gold's run still matches there).
_UNTIL = re.compile(r"(?<=\S)까지(?![가-힣])")


def _canonical_number(tok: str) -> str:
    whole, dot, frac = tok.partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    return f"{whole}.{frac}" if dot and frac else whole


def value_atoms(text: str) -> list[str]:
    """Canonical atoms of ``text``: 'tel:0436529222', 'time:09:00', 'url:host/path', numbers, single letters.

    Normalised: NFKC (fullwidth digits/letters, '～'), lower case, citations,
    phone separators (. - space parentheses), clock times (9:00 = 09:00 = 오전 9시),
    dotted dates (2025.10.1 = 2025년 10월 1일), thousands commas, Korean amounts
    (60만원 = 600,000원, ₩3,000 = 3,000원), range dashes (~ - – —) and spacing.
    """
    t = unicodedata.normalize("NFKC", text or "")
    t = CITATION.sub(" ", t).lower()
    held: list[str] = []

    def hold(atom: str) -> str:
        held.append(atom)
        return f" {_PH_OPEN}{len(held) - 1}{_PH_CLOSE} "

    t = _URL.sub(lambda m: hold("url:" + m.group(1).rstrip("/.")), t)
    t = _DATE.sub(lambda m: f" {m.group(1)}년 {int(m.group(2))}월 {int(m.group(3))}일 ", t)
    for pat in _PHONE:
        t = pat.sub(lambda m: hold("tel:" + "".join(m.groups())), t)

    def ko_clock(m: re.Match) -> str:
        h = int(m.group(2))
        if m.group(1) == "오후" and h < 12:
            h += 12
        minutes = 30 if m.group(4) else int(m.group(3) or 0)
        return hold(f"time:{h:02d}:{minutes:02d}")

    t = _CLOCK.sub(lambda m: hold(f"time:{int(m.group(1)):02d}:{m.group(2)}"), t)
    t = _KO_CLOCK.sub(ko_clock, t)
    t = _WON_PREFIX.sub(r"\1원", t)
    t = _THOUSANDS.sub("", t)
    t = _MAN.sub(lambda m: str(round(float(m.group(1)) * 10000 + int(m.group(2) or 0) * 1000)), t)
    t = _CHEON.sub(lambda m: str(int(m.group(1)) * 1000), t)
    t = _UNIT_RANGE.sub(r"\1~\3\2", t)
    t = _FROM.sub(" ", t)
    t = _UNTIL.sub(" ", t)
    atoms = []
    for m in _ATOM.finditer(t):
        if m.group(1) is not None:
            atoms.append(held[int(m.group(1))])
        elif m.group(0)[0].isdigit():
            atoms.append(_canonical_number(m.group(0)))
        else:
            atoms.append(m.group(0))
    return atoms


# A duration continues with a smaller unit: '1시간 50분' is not '1시간', '5분 30초' is not '5분'.
_FINER_UNIT = {"시간": ("분", "초"), "분": ("초",)}


def _continues(hay: Sequence[str], end: int, needle: Sequence[str]) -> bool:
    """The answer goes on, after a match of ``needle`` ending at ``end``, into a finer unit of the
    same duration (number + 분/초 right after '…시간')."""
    letters = []
    for atom in reversed(needle):
        if not atom.isalpha():
            break
        letters.append(atom)
    finer = _FINER_UNIT.get("".join(reversed(letters)))
    if not finer or end >= len(hay) or not hay[end][0].isdigit():
        return False
    return any("".join(hay[end + 1 : end + 1 + len(u)]) == u for u in finer)


def _contains_run(hay: Sequence[str], needle: Sequence[str]) -> bool:
    if not needle or len(needle) > len(hay):
        return False
    first, n = needle[0], len(needle)
    return any(
        hay[i] == first and list(hay[i : i + n]) == list(needle) and not _continues(hay, i + n, needle)
        for i in range(len(hay) - n + 1)
    )


def value_in(text: str, value: str) -> bool:
    """Exact normalised match: every atom of ``value`` appears, in order and contiguous, in ``text``
    (and a duration is not cut short: '1시간' is not in '1시간 50분').

    An empty value is never found (nothing to match is not a match).
    """
    return _contains_run(value_atoms(text), value_atoms(value))


def _is_number_atom(atom: str) -> bool:
    return atom[0].isdigit() or atom.startswith(("tel:", "time:"))


# Negation right at a word value: a prefix before it ('불가능', '비공개', '미운영'; '무료' is a
# word of its own, so the prefix only counts when the gold does not start with it, and only
# where Kiwi tags it as a negating prefix: '나무데크' has none), or a
# negating predicate after it, particles allowed ('가능하지 않습니다', '무료가 아닙니다',
# '주차 가능이 없습니다', '이용 안 됩니다'; 아닙/아닌/안됩 are the fused syllables).
# Matched on the answer's letter atoms (spacing free).
_NEG_PREFIXES = frozenset("불비미무")
_NEG_AFTER = re.compile(r"^(?:이|가|은|는|도)?(?:아니|아닙|아닌|아님|아냐|아녜|하?지않|지못|없|안되|안돼|안됩|못)")
_NEG_AFTER_SPAN = 6  # letters after the value that the pattern above can need ('는하지않' is 4 + slack)


def _negated_at(hay: Sequence[str], start: int, end: int, needle: Sequence[str], prefixes: set[str]) -> bool:
    if start > 0 and hay[start - 1] in prefixes and needle[0] not in _NEG_PREFIXES:
        return True
    after = []
    for atom in hay[end : end + _NEG_AFTER_SPAN]:
        if not (len(atom) == 1 and atom.isalpha()):
            break
        after.append(atom)
    return bool(_NEG_AFTER.match("".join(after)))


def value_found(text: str, value: str) -> bool:
    """``value_in``, and for a value without numbers or urls ('가능', '무료', an address in
    words) at least one occurrence that is not negated right there: '불가능합니다',
    '가능하지 않습니다' and '무료가 아닙니다' do not give '가능' / '무료', '입장료 없어요,
    무료예요' gives '무료'. Numbers keep the plain route (a digit run has no negation prefix)."""
    needle = value_atoms(value)
    hay = value_atoms(text)
    if not needle or any(_is_number_atom(a) or a.startswith("url:") for a in needle):
        return _contains_run(hay, needle)
    # A prefix letter negates only where Kiwi reads it as a prefix: '불가능' yes, '나무데크' no.
    prefixes = _NEG_PREFIXES & korean.negations(strip_citations(text)) if _NEG_PREFIXES & set(hay) else set()
    n = len(needle)
    return any(
        list(hay[i : i + n]) == list(needle)
        and not _continues(hay, i + n, needle)
        and not _negated_at(hay, i, i + n, needle, prefixes)
        for i in range(len(hay) - n + 1)
    )


def number_atoms(text: str) -> list[str]:
    """The numeric atoms (numbers, phone numbers, clock times) of ``text``, canonical."""
    return [a for a in value_atoms(text) if _is_number_atom(a)]


def key_fact_found(answer: str, fact: str, answer_morphs: set[str] | None = None) -> bool:
    """A key fact is in the answer: exact normalised match, not negated (see ``value_found``), or — for a
    fact without numbers — every content morpheme of the fact is a content morpheme of
    the answer (word order and particles free: '박달도령과 금봉낭자의 설화' is in
    '금봉낭자와 박달도령의 설화'). Morphemes must match whole: '가능' is not in '불가능'.
    Facts with numbers need the exact path: a number next to the wrong unit is wrong;
    and an answer with a negation the fact lacks needs it too.
    """
    if value_found(answer, fact):
        return True
    fact_atoms = value_atoms(fact)
    if not fact_atoms or any(_is_number_atom(a) or a.startswith("url:") for a in fact_atoms):
        return False
    fact_morphs = korean.morphemes(fact)
    if not fact_morphs or not korean.negations(answer) <= korean.negations(fact):
        return False  # '주차 불가능합니다' has every morpheme of '주차 가능' and says the opposite
    if answer_morphs is None:
        answer_morphs = set(korean.morphemes(strip_citations(answer)))
    return all(m in answer_morphs for m in fact_morphs)


def key_fact_recall(answer: str, facts: Sequence[str]) -> float | None:
    """Share of the gold key facts found in the answer (``key_fact_found``); None without key facts."""
    facts = [f for f in facts if value_atoms(f)]
    if not facts:
        return None
    morphs = set(korean.morphemes(strip_citations(answer)))
    return sum(key_fact_found(answer, f, morphs) for f in facts) / len(facts)


# Whole-gold shapes, used only for old records without `answer_kind` (see gold_reference).
_SHAPES = (
    ("phone", lambda a: len(a) == 1 and a[0].startswith("tel:")),
    ("url", lambda a: len(a) == 1 and a[0].startswith("url:")),
    ("time", lambda a: 1 <= len(a) <= 2 and all(x.startswith("time:") for x in a)),
    ("price", lambda a: len(a) == 2 and a[0][0].isdigit() and a[1] == "원"),
    ("count", lambda a: 2 <= len(a) <= 3 and a[0][0].isdigit() and all(x.isalpha() for x in a[1:])),
)


def infer_answer_kind(gold: str) -> str:
    """The slot kind when the whole gold is one phone/url/time/price/count value, else 'text'."""
    atoms = value_atoms(gold)
    for kind, test in _SHAPES:
        if atoms and test(atoms):
            return kind
    return "text"
