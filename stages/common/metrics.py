"""Answer metrics shared by `evaluate` (per-example scores) and `report` (aggregates, bootstrap CIs).

Everything here is a pure function of strings and numbers, deterministic, offline.
Korean needs care: `rouge_score`'s default tokenizer drops every non-ASCII
character, so a Hangul-only answer scores 0 whatever it says; here overlap is
measured on characters (spaces removed) and on Kiwi content morphemes.

Correctness never rests on overlap alone: slot facts (phone, time, price, address,
count, date, url) need the gold value exactly, after normalisation (``value_atoms``);
name/list/text answers need their key facts (``key_fact_recall``). No score treats
an empty gold as a perfect match (it is None: undefined, left out of the means).

Per-example scores (``score_example``) are stored in predictions.jsonl; every
aggregate is a ratio of two per-example sums (``METRICS``), so the metrics file,
the per-type breakdown and the paired bootstrap all use one definition.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import korean
from .prompting import CITATION, strip_citations
from .records import Prediction, gold_ids

ROUGE_MODULE = Path(__file__).with_name("evaluate_modules") / "korean_rouge.py"

FAILURES = ("format", "missed_abstention", "retrieval_miss", "wrong_abstention", "hallucination", "wrong_fact")


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


# ---------------------------------------------------------------- overlap metrics
def exact_match(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def contains_match(pred: str, gold: str) -> float:
    """Gold appears inside the prediction: exact normalised match of its value atoms (see ``value_in``).

    Spacing, punctuation, separators and trailing particles are ignored, digit
    boundaries are not: '5,000원' is not inside '15,000원'; a word gold negated right
    there ('불가능' for '가능') is not inside either.
    """
    return float(value_found(pred, gold))


def _f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float | None:
    """Bag-of-tokens F1; None when the gold has no tokens (nothing to measure against:
    an empty gold is a data error, and empty-equals-empty must never read as a perfect score)."""
    if not gold_tokens:
        return None
    if not pred_tokens:
        return 0.0
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * p * r / (p + r)


def f1_morph(pred: str, gold: str) -> float | None:
    """Bag-of-tokens F1 over Kiwi content morphemes (particles and endings ignored)."""
    return _f1(korean.morphemes(strip_citations(pred)), korean.morphemes(strip_citations(gold)))


def f1_char(pred: str, gold: str) -> float | None:
    """Bag-of-characters F1 over the normalised text without spaces."""
    return _f1(list(compact(pred)), list(compact(gold)))


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common subsequence (O(len(a)·len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(pred_tokens: Sequence[Any], gold_tokens: Sequence[Any]) -> dict[str, float | None]:
    """ROUGE-L precision/recall/F1 (beta = 1) over any token sequences; all None for an empty gold."""
    if not gold_tokens:
        return {"precision": None, "recall": None, "f": None}
    lcs = lcs_length(pred_tokens, gold_tokens)
    if lcs == 0:
        return {"precision": 0.0, "recall": 0.0, "f": 0.0}
    p, r = lcs / len(pred_tokens), lcs / len(gold_tokens)
    return {"precision": p, "recall": r, "f": 2 * p * r / (p + r)}


def rouge_l_char(pred: str, gold: str) -> float | None:
    """ROUGE-L F over characters of the normalised text without spaces."""
    return rouge_l(list(compact(pred)), list(compact(gold)))["f"]


def load_rouge_module():
    """The character ROUGE-L as a local `evaluate` module (works offline: no Hub lookup)."""
    import sys

    import evaluate

    root = str(ROUGE_MODULE.parents[3])  # the module imports stages.common.metrics
    if root not in sys.path:
        sys.path.insert(0, root)
    return evaluate.load(str(ROUGE_MODULE))


# ---------------------------------------------------------------- abstention, support, format
def abstained(pred: str, abstain_phrase: str, markers: Iterable[str], window: int = 0) -> bool:
    """The prediction contains the abstention phrase or a close variant (spaces/punctuation ignored).

    Only the first ``window`` characters of the normalised answer are searched
    (0 = all): a base model that echoes the system prompt quotes the phrase
    further on without abstaining.
    """
    text = compact(pred)
    if window > 0:
        text = text[:window]
    needles = [compact(abstain_phrase), *(compact(m) for m in markers)]
    return any(n and n in text for n in needles)


def support(pred: str, context: str) -> dict[str, Any]:
    """How much of the answer the context backs: every number found, content morphemes found.

    Numbers (prices, phone numbers, times, counts) are compared as canonical value
    atoms (see ``value_atoms``): '15000원' is backed by '15,000원', '043.641.5532' by
    '043-641-5532', but a single wrong digit is missing. Other content morphemes count
    as found when they are content morphemes of the context or substrings of the
    space-free context (Kiwi splits compounds differently in different sentences);
    ``share`` is over those (1.0 when the answer is numbers only: they are checked above).
    """
    answer = strip_citations(unicodedata.normalize("NFC", pred))
    ctx = unicodedata.normalize("NFC", context)
    ctx_numbers = set(number_atoms(ctx))
    missing_numbers = [n for n in dict.fromkeys(number_atoms(answer)) if n not in ctx_numbers]
    morphs = [m for m in korean.morphemes(answer) if not any(ch.isdigit() for ch in m)]
    ctx_morphs = set(korean.morphemes(ctx))
    ctx_flat = re.sub(r"\s+", "", ctx).lower()
    found = [m for m in morphs if m in ctx_morphs or m in ctx_flat]
    share = len(found) / len(morphs) if morphs else 1.0
    return {
        "n_morphemes": len(morphs),
        "share": share,
        "missing_numbers": missing_numbers,
        "missing": [m for m in morphs if m not in found],
    }


def is_supported(pred: str, context: str, min_share: float) -> bool | None:
    """True/False, or None when the answer has nothing to check (empty after stripping citations)."""
    if not normalize_answer(strip_citations(pred)):
        return None
    s = support(pred, context)
    return not s["missing_numbers"] and s["share"] >= min_share


def is_looping(text: str, word_ngram: int, char_ngram: int, repeats: int) -> bool:
    """Some word n-gram, or some character n-gram of the space-free text, occurs ≥ `repeats` times."""
    words = text.split()
    grams = Counter(tuple(words[i : i + word_ngram]) for i in range(len(words) - word_ngram + 1))
    if grams and max(grams.values()) >= repeats:
        return True
    flat = re.sub(r"\s+", "", text)
    chars = Counter(flat[i : i + char_ngram] for i in range(len(flat) - char_ngram + 1))
    return bool(chars) and max(chars.values()) >= repeats


_HEADER = re.compile(r"^\[(c\d{3,})\][ \t]*(.*)$", re.MULTILINE)


def prompt_echo(pred: str, context: str, system: str = "", min_chars: int = 20) -> bool:
    """The answer repeats the prompt instead of answering: a chunk header of the context
    ('[c004] PART 1 출발 전 준비 > 디지털 관광주민증') or a run of ``min_chars`` characters
    (spaces removed) of the system prompt. A base model that echoes its prompt "cites"
    every chunk it copies and contains whatever value is in the context; neither may
    count. ``min_chars`` ≤ 0 turns the system-prompt check off.
    """
    flat_pred = re.sub(r"\s+", "", unicodedata.normalize("NFC", pred or ""))
    if not flat_pred:
        return False
    for m in _HEADER.finditer(unicodedata.normalize("NFC", context or "")):
        header = re.sub(r"\s+", "", f"[{m.group(1)}]{m.group(2)}")
        if m.group(2).strip() and header in flat_pred:
            return True
    flat_sys = re.sub(r"\s+", "", unicodedata.normalize("NFC", system or ""))
    if min_chars <= 0 or len(flat_sys) < min_chars:
        return False
    return any(flat_sys[i : i + min_chars] in flat_pred for i in range(len(flat_sys) - min_chars + 1))


# ---------------------------------------------------------------- per-example scoring
@dataclass(frozen=True)
class ScoreConfig:
    abstain: str  # params prompt.abstain
    abstain_markers: tuple[str, ...]  # evaluate.abstain_markers
    abstain_window: int  # evaluate.abstain_window
    support_min_share: float  # evaluate.support_min_share
    loop_word_ngram: int
    loop_char_ngram: int
    loop_repeats: int
    correct_f1: float  # evaluate.correct_f1: morpheme F1 for golds without key facts (plus every gold number)
    correct_key_fact_recall: float = 1.0  # evaluate.correct_key_fact_recall: name/list/text answers
    echo_min_chars: int = 20  # evaluate.echo_min_chars: system-prompt run that marks an echo
    slot_max_extra_values: int = 0  # evaluate.slot_max_extra_values: other phones/times/urls a slot answer may list
    system: str = ""  # params prompt.system (for the echo check)

    @classmethod
    def from_params(cls, evaluate_cfg: dict[str, Any], prompt_cfg: dict[str, Any]) -> ScoreConfig:
        return cls(
            abstain=prompt_cfg["abstain"],
            abstain_markers=tuple(evaluate_cfg["abstain_markers"]),
            abstain_window=int(evaluate_cfg["abstain_window"]),
            support_min_share=float(evaluate_cfg["support_min_share"]),
            loop_word_ngram=int(evaluate_cfg["loop_word_ngram"]),
            loop_char_ngram=int(evaluate_cfg["loop_char_ngram"]),
            loop_repeats=int(evaluate_cfg["loop_repeats"]),
            correct_f1=float(evaluate_cfg["correct_f1"]),
            correct_key_fact_recall=float(evaluate_cfg["correct_key_fact_recall"]),
            echo_min_chars=int(evaluate_cfg["echo_min_chars"]),
            slot_max_extra_values=int(evaluate_cfg["slot_max_extra_values"]),
            system=str(prompt_cfg.get("system", "")),
        )


@dataclass(frozen=True)
class GoldReference:
    kind: str  # answer_kind (given, or inferred from the gold's shape for old records)
    short: str  # the bare value ('' when none)
    key_facts: tuple[str, ...]
    refs: tuple[str, ...]  # non-empty gold strings for EM/F1/ROUGE (best over them)


def gold_reference(pred: Prediction) -> GoldReference:
    """What an answer is scored against.

    New records carry gold_answer (a sentence), gold_answer_short, gold_key_facts and
    answer_kind. Old records have gold_answer only (the bare value): its kind is
    inferred from its shape, so an old phone/time/price/count/url gold is scored as a
    slot too (the text path would accept '451개' for '255개' at F1 0.5); anything else
    takes the text path.
    """
    gold = pred.get("gold_answer") or ""
    short = pred.get("gold_answer_short")
    facts = tuple(f for f in (pred.get("gold_key_facts") or []) if value_atoms(f))
    kind = pred.get("answer_kind")
    if kind is None:
        kind = infer_answer_kind(gold) if pred.get("answerable", True) else "abstain"
        short = gold if kind in SLOT_KINDS else (short or "")
    elif kind not in ANSWER_KINDS:
        raise ValueError(f"{pred.get('id')}: unknown answer_kind {kind!r} (one of {', '.join(sorted(ANSWER_KINDS))})")
    short = short or ""
    refs = tuple(dict.fromkeys(r for r in (gold, short) if normalize_answer(r)))
    return GoldReference(kind, short, facts, refs)


def _best(fn, pred: str, refs: Sequence[str]) -> float | None:
    vals = [v for v in (fn(pred, r) for r in refs) if v is not None]
    return max(vals) if vals else None


# A gold short of several values ('월요일과 근로자의 날') may come back in another order or
# joined differently ('매주 월요일 및 근로자의 날'): each part is then matched on its own.
_PARTS = re.compile(r"\s*(?:및|,)\s*|(?<=[가-힣])[과와]\s+")
# '매주 월요일' is the same closing day as '월요일' (a weekday is weekly); other frequencies
# ('매월 첫째 월요일') change the value and stay.
_WEEKLY = re.compile(r"^매주\s*")
_LISTED_FAMILIES = ("tel:", "time:", "url:")


def _part_found(pred: str, part: str) -> bool:
    return value_found(pred, part) or value_found(pred, _WEEKLY.sub("", part))


def _gold_parts(short: str) -> list[str]:
    """The parts of a several-value gold; [] when it is one value (or a part is a single
    letter, e.g. '사과 농장' split at '과': such a split is no list)."""
    parts = [p for p in _PARTS.split(short) if p.strip()]
    if len(parts) < 2 or any(len(value_atoms(p)) < 2 for p in parts):
        return []
    return parts


def extra_values(pred: str, ref: GoldReference) -> int:
    """Distinct phone numbers / clock times / urls in the answer that are not the gold's, counted
    only in the families the gold has (a phone added to a price answer lists no candidates)."""
    gold = {a for text in (ref.short, *ref.key_facts, *ref.refs) for a in value_atoms(text)}
    families = {f for f in _LISTED_FAMILIES if any(a.startswith(f) for a in gold)}
    return len({a for a in value_atoms(pred) if a.startswith(tuple(families)) and a not in gold}) if families else 0


def slot_match(pred: str, ref: GoldReference, max_extra_values: int | None = None) -> bool:
    """Slot facts: the gold value, exactly (normalised, not negated), inside the answer — the
    bare answer_short (or each of its parts when it lists several, see ``_gold_parts``), or
    every key fact when the value is several (multi-part: a time and a phone). No partial
    credit, and no credit for a list of candidates: more than ``max_extra_values`` other
    phone numbers / times / urls in the answer fail it (None: not checked)."""
    if max_extra_values is not None and extra_values(pred, ref) > max_extra_values:
        return False
    if ref.short and value_found(pred, ref.short):
        return True
    parts = _gold_parts(ref.short) if ref.short else []
    if parts and all(_part_found(pred, p) for p in parts):
        return True
    return bool(ref.key_facts) and all(value_found(pred, f) for f in ref.key_facts)


def answer_matches(pred: str, ref: GoldReference, s: dict[str, Any], cfg: ScoreConfig) -> bool:
    """Does the answer's content match the gold (whatever abstention or format say)?

    slot kinds: ``slot_match``; name/list/text with key facts: key-fact recall ≥
    cfg.correct_key_fact_recall; otherwise (no key facts): a gold inside the answer, or
    morpheme F1 ≥ cfg.correct_f1 with every number of the gold in the answer.
    """
    if ref.kind in SLOT_KINDS:
        return bool(s["slot_exact"])
    if s["key_fact_recall"] is not None:
        return s["key_fact_recall"] >= cfg.correct_key_fact_recall
    if s["contains"]:
        return True
    if s["f1_morph"] is None or s["f1_morph"] < cfg.correct_f1:
        return False
    answer_numbers = set(number_atoms(pred))
    return all(n in answer_numbers for r in ref.refs for n in number_atoms(r))


def citation_scores(cited: Sequence[str], golds: Sequence[str]) -> tuple[float, float, bool]:
    """(precision, recall, exact) of the cited chunk ids against the gold ids.

    precision = gold ids cited / ids cited (extra citations cost), 0 when nothing is
    cited (an uncited answer cannot be checked); recall = gold ids cited / gold ids;
    exact (citation accuracy) = every gold cited and nothing else.
    """
    cited_set, gold_set = set(cited), set(golds)
    hit = len(cited_set & gold_set)
    precision = hit / len(cited_set) if cited_set else 0.0
    recall = hit / len(gold_set) if gold_set else 0.0
    return precision, recall, bool(gold_set) and cited_set == gold_set


def score_example(pred: Prediction, context: str, cfg: ScoreConfig) -> dict[str, Any]:
    """Per-example scores for one prediction record (see the data contract for its fields).

    Scores that do not apply are None: overlap scores on unanswerable questions;
    slot_exact outside slot kinds; key_fact_recall without key facts; citation unless
    the question is answerable, every gold chunk was retrieved and the model answered
    (did not abstain); faithfulness when the model abstained or said nothing. An answer
    that is a format failure (empty, looping, over length, prompt echo) gets citation 0:
    its [cNNN] are not citations.
    """
    answer = pred["answer"]
    answerable = bool(pred["answerable"])
    ref = gold_reference(pred)
    abst = abstained(answer, cfg.abstain, cfg.abstain_markers, cfg.abstain_window)
    empty = not normalize_answer(answer)
    looping = is_looping(answer, cfg.loop_word_ngram, cfg.loop_char_ngram, cfg.loop_repeats)
    over_length = not pred["hit_eos"]
    echo = prompt_echo(answer, context, cfg.system, cfg.echo_min_chars)
    format_fail = empty or looping or over_length or echo
    # Comparison / multi-hop questions need every one of their chunks retrieved and cited.
    golds = gold_ids(pred, prefix="gold_")
    retrieved = bool(golds) and all(g in pred["retrieved_ids"] for g in golds)
    overlap = answerable and bool(ref.refs)
    s: dict[str, Any] = {
        "answer_kind": ref.kind,
        "em": _best(exact_match, answer, ref.refs) if overlap else None,
        "contains": _best(contains_match, answer, ref.refs) if overlap else None,
        "f1_morph": _best(f1_morph, answer, ref.refs) if overlap else None,
        "f1_char": _best(f1_char, answer, ref.refs) if overlap else None,
        "rouge_l_char": _best(rouge_l_char, answer, ref.refs) if overlap else None,
        # an abstention does not give the value, even when it quotes the question's name
        "slot_exact": (
            float(not abst and slot_match(answer, ref, cfg.slot_max_extra_values))
            if answerable and ref.kind in SLOT_KINDS
            else None
        ),
        "key_fact_recall": key_fact_recall(answer, ref.key_facts) if answerable else None,
        "abstained": abst,
        "wrong_abstention": (abst and retrieved) if answerable else None,
        "gold_retrieved": retrieved,
        "empty": empty,
        "looping": looping,
        "over_length": over_length,
        "prompt_echo": echo,
        "format_fail": format_fail,
    }
    if abst and s["key_fact_recall"] is not None:
        s["key_fact_recall"] = 0.0
    if answerable and retrieved and not abst:
        p, r, ok = citation_scores(pred.get("cited_ids") or [], golds) if not format_fail else (0.0, 0.0, False)
        s.update(citation_p=p, citation_r=r, citation_ok=ok)
    else:
        s.update(citation_p=None, citation_r=None, citation_ok=None)
    if abst or empty:
        s["supported"] = None
    else:
        s["supported"] = False if echo else is_supported(answer, context, cfg.support_min_share)
    s["answer_match"] = answerable and not abst and answer_matches(answer, ref, s, cfg)
    s["failure"] = classify_failure(pred, s, cfg.correct_f1)
    s["correct"] = s["failure"] == "ok"
    for m in METRICS:  # registered metrics that need a per-example score of their own
        if m.example is not None:
            s[m.key] = m.example(pred, s, context, cfg)
    return s


def classify_failure(pred: Prediction, s: dict[str, Any], correct_f1: float = 0.5) -> str:
    """One failure label per example (first that applies), or 'ok'.

    format (empty, looping or prompt echo) → missed_abstention (unanswerable, answered)
    → retrieval_miss (gold not retrieved, not answered correctly) → wrong_abstention →
    hallucination (answer not supported by the context) → wrong_fact (supported but
    not the gold answer). A right answer that ran past max_new_tokens without EOS is
    a format failure too; a wrong one keeps its content label, so a model that never
    stops still shows what it got wrong. ``correct_f1`` only serves old score dicts
    without ``answer_match``.
    """
    if s["empty"] or s["looping"] or s.get("prompt_echo"):
        return "format"
    label = _content_failure(pred, s, correct_f1)
    return "format" if label == "ok" and s["over_length"] else label


def _content_failure(pred: dict[str, Any], s: dict[str, Any], correct_f1: float) -> str:
    if not pred["answerable"]:
        return "ok" if s["abstained"] else "missed_abstention"
    if "answer_match" in s:
        correct = bool(s["answer_match"])
    else:
        correct = not s["abstained"] and bool(s["contains"] or s["em"] or (s["f1_morph"] or 0.0) >= correct_f1)
    if correct:
        return "ok"
    if not s["gold_retrieved"]:
        return "retrieval_miss"
    if s["abstained"]:
        return "wrong_abstention"
    if s["supported"] is False:
        return "hallucination"
    return "wrong_fact"


# ---------------------------------------------------------------- the metric registry
# A metric is added here and nowhere else: one `Metric` (register_metric from outside) gives its
# aggregate (metrics/eval/<name>.json at `path`), its paired-bootstrap comparison, its report rows
# (label, definition, why) and, with `card`, its row on the model card. Its value is
# sum(numerator) / sum(denominator) over examples, from `parts`; the default is the mean of the
# per-example score `source` (or `key`) over the examples where it is not None, and `example`
# computes such a score in score_example for a metric that needs a new one.
Parts = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Metric:
    key: str  # short id used in comparison.json and the report
    path: tuple[str, ...]  # where it sits in metrics/eval/<name>.json
    higher_is_better: bool | None  # None: no better direction (e.g. how often a model abstains)
    label: str = ""  # short Korean name for tables (the report and the model card read it)
    definition: str = ""  # what is counted, over which questions (Korean, for the report)
    why: str = ""  # why the report shows it (Korean)
    detail: bool = False  # behaviour or cost rather than answer quality: the report's detail table
    card: int = 0  # row position on the model card (0: not on the card)
    optional: bool = False  # left out of the metrics file when it has no value (the optional LLM judge)
    source: str = ""  # per-example score key averaged by the default parts ('' = key)
    parts: Callable[[list[dict[str, Any]], list[dict[str, Any]], str], Parts] | None = None  # (scores, preds, key)
    example: Callable[[dict[str, Any], dict[str, Any], str, Any], Any] | None = None  # (pred, scores, context, cfg)


def _v(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _mean_of(scores: list[dict[str, Any]], key: str) -> Parts:
    vals = np.array([_v(s.get(key)) for s in scores], dtype=float)  # .get: judge_correct only when judged
    mask = ~np.isnan(vals)
    return np.where(mask, vals, 0.0), mask.astype(float)


def _rate(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    """Share of all examples whose boolean score `key` is true."""
    return np.array([float(s.get(key, False)) for s in scores]), np.ones(len(scores))


def _abstention(scores: list[dict[str, Any]], preds: list[dict[str, Any]]) -> tuple[np.ndarray, ...]:
    """(true, false, missed) abstentions per example; positive = unanswerable."""
    unans = np.array([not p["answerable"] for p in preds], dtype=float)
    abst = np.array([bool(s["abstained"]) for s in scores], dtype=float)
    return unans * abst, (1 - unans) * abst, unans * (1 - abst)


def _abstain_p(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    tp, fp, _ = _abstention(scores, preds)
    return tp, tp + fp


def _abstain_r(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    tp, _, fn = _abstention(scores, preds)
    return tp, tp + fn


def _abstain_f1(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    tp, fp, fn = _abstention(scores, preds)
    return 2 * tp, 2 * tp + fp + fn


def _abstain_rate(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    abst = np.array([bool(s["abstained"]) for s in scores], dtype=float)
    return abst, np.ones(len(scores))


def _latency(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    return np.array([float(p.get("latency_s", 0.0)) for p in preds]), np.ones(len(preds))


def _tokens_per_s(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    tokens = np.array([float(p.get("new_tokens", 0)) for p in preds])
    return tokens, np.array([float(p.get("latency_s", 0.0)) for p in preds])


def metric_parts(m: Metric, scores: list[dict[str, Any]], preds: list[Prediction]) -> Parts:
    """Per-example (numerator, denominator) of one metric; its value = sum(num) / sum(den)."""
    if m.parts is None:
        return _mean_of(scores, m.source or m.key)
    return m.parts(scores, preds, m.key)


def _ratio_parts(scores: list[dict[str, Any]], preds: list[Prediction]) -> dict[str, Parts]:
    return {m.key: metric_parts(m, scores, preds) for m in METRICS}


METRICS: list[Metric] = [
    Metric(
        "correct",
        ("correct",),
        True,
        "정답률",
        "실패 유형이 'ok'인 비율 — 답변 가능: 슬롯 사실(전화·시간·요금·주소·개수·날짜·URL)은 정답 값의 정규화 완전 "
        "일치, 이름·목록·서술은 핵심 사실 재현율 ≥ 임계값, 형식 실패(빈 답·반복·길이 초과·프롬프트 복창)는 오답; "
        "답변 불가: 기권",
        why="질문 유형이 섞인 테스트셋 전체를 한 숫자로 요약",
        card=1,
        parts=_rate,
    ),
    Metric(
        "em",
        ("answer", "em"),
        True,
        "EM",
        "정규화(NFC·인용·문장부호·공백) 후 정답 문장 또는 정답 값과 완전 일치",
        why="값 하나가 답인 사실 질문의 엄격한 기준",
        card=5,
    ),
    Metric(
        "contains",
        ("answer", "contains"),
        True,
        "포함 일치",
        "정답 문장 또는 정답 값이 답변 안에 그대로 있음 (띄어쓰기·구분자·뒤 조사 무시, 숫자 경계는 지킴; 숫자 없는 값은 "
        "바로 앞뒤에서 부정된 것만 있으면 불인정: '불가능'·'가능하지 않'·'무료가 아닙')",
        why="정답을 말하고 덧붙인 답을 0점 처리하지 않음",
        card=6,
    ),
    Metric(
        "key_fact_recall",
        ("answer", "key_fact_recall"),
        True,
        "핵심 사실 재현율",
        "정답의 핵심 사실(숫자·이름·값) 중 답변에 든 비율 — 정규화 완전 일치, 숫자 없는 사실은 내용 형태소가 모두 "
        "들어 있어도 인정; 바로 앞뒤에서 부정된 값('불가능', '무료가 아닙니다')은 불인정; 기권은 0",
        why="문장으로 답한 정답을 오답으로 치지 않는 문장형 답의 지표",
    ),
    Metric(
        "slot_exact",
        ("answer", "slot_exact"),
        True,
        "슬롯 정확도",
        "슬롯 사실 질문에서 정답 값(전화·시간·요금 등)이 정규화 후 그대로 답변에 있는 비율 (부분 점수 없음); 정답에 "
        "없는 전화번호·시각·URL을 evaluate.slot_max_extra_values개보다 많이 나열한 답은 불인정",
        why="전화·시간·요금처럼 한 글자만 틀려도 쓸모없는 값은 부분 점수 없이 채점",
    ),
    Metric(
        "f1_morph",
        ("answer", "f1_morph"),
        True,
        "형태소 F1",
        "Kiwi 내용 형태소(조사·어미 제외, 시간·전화번호 포함) 집합 F1, 정답 문장·값 중 높은 쪽",
        why="조사가 붙는 한국어에서 공백 토큰 F1은 부정확",
        card=3,
    ),
    Metric(
        "f1_char",
        ("answer", "f1_char"),
        True,
        "문자 F1",
        "공백 제외 문자 집합 F1, 정답 문장·값 중 높은 쪽",
        why="띄어쓰기 차이와 형태소 분석 오류에 강함",
        card=2,
    ),
    Metric(
        "rouge_l_char",
        ("answer", "rouge_l_char"),
        True,
        "ROUGE-L(문자)",
        "공백 제외 문자열의 LCS 기반 F1",
        why="rouge_score 기본 토크나이저는 한글을 버림 — 문자 단위로 순서까지 반영",
        card=4,
    ),
    Metric(
        "abstain_p",
        ("abstention", "precision"),
        True,
        "기권 정밀도",
        "기권한 답 중 실제로 답이 없는 질문의 비율",
        why="불필요한 기권(정보 누락) 측정",
        card=8,
        parts=_abstain_p,
    ),
    Metric(
        "abstain_r",
        ("abstention", "recall"),
        True,
        "기권 재현율",
        "답이 없는 질문 중 기권한 비율",
        why="환각 대신 모른다고 말하는 능력",
        card=9,
        parts=_abstain_r,
    ),
    Metric(
        "abstain_f1",
        ("abstention", "f1"),
        True,
        "기권 F1",
        "기권 정밀도·재현율의 조화평균 (양성 = 답변 불가)",
        why="기권의 두 오류를 한 숫자로",
        card=7,
        parts=_abstain_f1,
    ),
    Metric(
        "abstain_rate",
        ("abstention", "rate"),
        None,
        "기권 비율",
        "전체 질문 중 기권한 비율",
        why="과도한 기권 여부 확인용 (높낮이에 좋고 나쁨 없음)",
        detail=True,
        parts=_abstain_rate,
    ),
    Metric(
        "wrong_abstain",
        ("abstention", "wrong_rate"),
        False,
        "잘못된 기권",
        "답변 가능 질문 중 정답 청크가 모두 문맥에 있었는데 기권한 비율",
        why="답이 문맥에 있는데도 모른다고 하는 과잉 기권을 따로 드러냄",
        source="wrong_abstention",
    ),
    Metric(
        "citation_ok",
        ("citation_acc",),
        True,
        "인용 정확도",
        "정답 청크가 모두 검색되고 모델이 답한(기권 아님) 답변 가능 질문에서, 인용 [cNNN] 집합이 정답 청크 집합과 "
        "정확히 같은 비율; 형식 실패·프롬프트 복창의 인용은 0",
        why="출처 표시가 RAG 답변의 검증 가능성을 만든다",
        card=10,
    ),
    Metric(
        "citation_p",
        ("citation", "precision"),
        True,
        "인용 정밀도",
        "같은 질문들에서 인용한 청크 중 정답 청크의 비율 (불필요한 인용 감점, 인용 없으면 0)",
        why="아무 청크나 잔뜩 인용해 맞히는 답을 감점",
    ),
    Metric(
        "citation_r",
        ("citation", "recall"),
        True,
        "인용 재현율",
        "같은 질문들에서 정답 청크 중 인용된 비율",
        why="필요한 출처를 빠뜨린 답을 드러냄",
    ),
    Metric(
        "supported",
        ("faithfulness",),
        True,
        "충실도",
        "기권하지 않은 모든 답(답변 불가 질문 포함) 중 숫자는 그대로, 내용 형태소는 모두 문맥에 있는 비율; "
        "프롬프트 복창은 불충실",
        why="문맥에 없는 내용(환각)을 결정적으로 검출",
        card=11,
    ),
    Metric(
        "format_fail",
        ("format", "fail_rate"),
        False,
        "형식 실패율",
        "빈 답·반복·EOS 없이 길이 한도 도달·프롬프트 복창 중 하나",
        why="멈추지 못하는 모델을 드러냄",
        card=12,
        parts=_rate,
    ),
    Metric(
        "empty",
        ("format", "empty"),
        False,
        "빈 답",
        "인용·문장부호를 빼면 빈 답",
        why="형식 실패 세부",
        detail=True,
        parts=_rate,
    ),
    Metric(
        "looping",
        ("format", "looping"),
        False,
        "반복",
        "단어 n-gram 또는 문자 n-gram이 여러 번 반복",
        why="형식 실패 세부",
        detail=True,
        card=13,
        parts=_rate,
    ),
    Metric(
        "over_length",
        ("format", "over_length"),
        False,
        "길이 초과",
        "EOS 없이 max_new_tokens 도달",
        why="형식 실패 세부",
        detail=True,
        card=14,
        parts=_rate,
    ),
    Metric(
        "prompt_echo",
        ("format", "prompt_echo"),
        False,
        "프롬프트 복창",
        "답변에 문맥의 청크 머리글([cNNN] 섹션 경로)이나 시스템 프롬프트의 긴 구절이 그대로 나옴",
        why="프롬프트를 복창해 값과 인용을 '맞히는' 베이스 모델을 드러냄 (형식 실패 세부)",
        parts=_rate,
    ),
    Metric(
        "latency_s",
        ("latency_s_mean",),
        False,
        "지연(초)",
        "질문당 생성 시간 (배치 시간의 균등 분배)",
        why="서비스 비용",
        detail=True,
        card=15,
        parts=_latency,
    ),
    Metric(
        "tokens_per_s",
        ("tokens_per_s",),
        True,
        "토큰/초",
        "생성 토큰 수 / 생성 시간",
        why="하드웨어 처리량",
        detail=True,
        card=16,
        parts=_tokens_per_s,
    ),
    Metric(
        "judge_correct",
        ("judge", "correct"),
        True,
        "LLM 판정 정답률",
        "OpenAI 호환 LLM 채점자가 정답과 비교해 1로 판정한 비율 (선택, evaluate.judge)",
        why="어휘 지표가 놓치는 바꿔 말한 정답을 잡고, 결정적 지표를 교차 검증",
        optional=True,
    ),
]
BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}


def register_metric(metric: Metric) -> Metric:
    """Add a metric to the registry (after the built-in ones, in registration order)."""
    if metric.key in BY_KEY:
        raise ValueError(f"metric {metric.key!r} is already registered")
    METRICS.append(metric)
    BY_KEY[metric.key] = metric
    return metric


def unregister_metric(key: str) -> None:
    metric = BY_KEY.pop(key, None)
    if metric is not None:
        METRICS.remove(metric)


def card_metrics() -> list[Metric]:
    """The model card's rows, in card order."""
    return sorted((m for m in METRICS if m.card), key=lambda m: m.card)


def _safe_div(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def metric_values(scores: list[dict[str, Any]], preds: list[Prediction]) -> dict[str, float | None]:
    """Flat {metric key: value}; None where the metric has no examples (e.g. no unanswerable questions)."""
    if not scores:
        return {m.key: None for m in METRICS}
    parts = _ratio_parts(scores, preds)
    return {m.key: _safe_div(parts[m.key][0].sum(), parts[m.key][1].sum()) for m in METRICS}


def aggregate(scores: list[dict[str, Any]], preds: list[Prediction]) -> dict[str, Any]:
    """The metrics/eval/<name>.json dict: grouped, short keys (`dvc metrics show` friendly)."""
    values = metric_values(scores, preds)
    out: dict[str, Any] = {
        "n": len(preds),
        "n_answerable": sum(bool(p["answerable"]) for p in preds),
        "n_unanswerable": sum(not p["answerable"] for p in preds),
    }
    for m in METRICS:
        if m.optional and values[m.key] is None:
            continue
        node = out
        for part in m.path[:-1]:
            node = node.setdefault(part, {})
        node[m.path[-1]] = _round(values[m.key])
    latency = [float(p.get("latency_s", 0.0)) for p in preds]
    out["latency_s_p50"] = _round(float(np.median(latency))) if latency else None
    out["failures"] = failure_counts(scores)
    agreement = judge_agreement(scores)
    if agreement is not None:
        out.setdefault("judge", {}).update(agreement)
    return out


def judge_agreement(scores: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How often the LLM judge agrees with the deterministic `correct`: raw agreement, Cohen's kappa, 2x2 counts.

    Only judged examples count (an unparseable verdict is None). Kappa is None
    when it is undefined (both raters gave one single label to everything).
    """
    judged = [s for s in scores if "judge_correct" in s]
    pairs = [(int(bool(s["correct"])), int(s["judge_correct"])) for s in judged if s["judge_correct"] is not None]
    if not judged:
        return None
    out: dict[str, Any] = {"n_judged": len(pairs), "n_unparsed": len(judged) - len(pairs)}
    if not pairs:
        return {**out, "agreement": None, "kappa": None}
    det, jud = (np.array(x) for x in zip(*pairs, strict=True))
    kappa = None
    if len(set(det) | set(jud)) > 1:
        from sklearn.metrics import cohen_kappa_score

        with np.errstate(invalid="ignore", divide="ignore"):
            k = float(cohen_kappa_score(det, jud))
        kappa = _round(k) if np.isfinite(k) else None
    out.update(
        {
            "agreement": _round(float(np.mean(det == jud))),
            "kappa": kappa,
            # rows: deterministic correct (1) / wrong (0); columns: judge correct / wrong
            "both_correct": int(np.sum((det == 1) & (jud == 1))),
            "only_deterministic": int(np.sum((det == 1) & (jud == 0))),
            "only_judge": int(np.sum((det == 0) & (jud == 1))),
            "both_wrong": int(np.sum((det == 0) & (jud == 0))),
        }
    )
    return out


def failure_counts(scores: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(s["failure"] for s in scores)
    return {k: counts.get(k, 0) for k in ("ok", *FAILURES)}


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def get_path(d: dict[str, Any], path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


# ---------------------------------------------------------------- paired bootstrap
def bootstrap_weights(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) counts: how often each example is drawn in each resample."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    w = np.zeros((n_resamples, n))
    np.add.at(w, (np.arange(n_resamples)[:, None], idx), 1.0)
    return w


def paired_bootstrap(
    base: tuple[np.ndarray, np.ndarray],
    tuned: tuple[np.ndarray, np.ndarray],
    weights: np.ndarray,
    ci: float,
) -> dict[str, float | None]:
    """Delta (tuned − base) of a ratio metric and its percentile CI over paired resamples of examples."""
    (bn, bd), (tn, td) = base, tuned
    b_val, t_val = _safe_div(bn.sum(), bd.sum()), _safe_div(tn.sum(), td.sum())
    if b_val is None or t_val is None:
        return {"baseline": _round(b_val), "finetuned": _round(t_val), "delta": None, "ci_low": None, "ci_high": None}
    with np.errstate(invalid="ignore", divide="ignore"):
        deltas = (weights @ tn) / (weights @ td) - (weights @ bn) / (weights @ bd)
    deltas = deltas[~np.isnan(deltas)]
    alpha = (1.0 - ci) / 2
    lo, hi = np.quantile(deltas, [alpha, 1 - alpha]) if deltas.size else (np.nan, np.nan)
    delta = t_val - b_val
    return {
        "baseline": _round(b_val),
        "finetuned": _round(t_val),
        "delta": _round(delta),
        "ci_low": _round(float(lo)) if np.isfinite(lo) else None,
        "ci_high": _round(float(hi)) if np.isfinite(hi) else None,
    }


def compare(
    base_scores: list[dict[str, Any]],
    tuned_scores: list[dict[str, Any]],
    preds: list[dict[str, Any]],
    tuned_preds: list[dict[str, Any]],
    n_resamples: int,
    seed: int,
    ci: float,
) -> dict[str, dict[str, float | None]]:
    """Paired comparison of every metric; examples must be aligned (same ids, same order)."""
    if [p["id"] for p in preds] != [p["id"] for p in tuned_preds]:
        raise ValueError("baseline and fine-tuned predictions are not aligned by id")
    bparts, tparts = _ratio_parts(base_scores, preds), _ratio_parts(tuned_scores, tuned_preds)
    weights = bootstrap_weights(len(preds), n_resamples, seed)
    return {m.key: paired_bootstrap(bparts[m.key], tparts[m.key], weights, ci) for m in METRICS}
