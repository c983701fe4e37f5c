"""Overlap scores (EM, F1, ROUGE-L on Korean characters/morphemes) and the abstention, support and format checks.

`rouge_score`'s default tokenizer drops every non-ASCII character, so a Hangul-only
answer scores 0 whatever it says; here overlap is measured on characters (spaces
removed) and on Kiwi content morphemes. No score treats an empty gold as a perfect
match (it is None: undefined, left out of the means).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import korean
from .answer_values import compact, normalize_answer, number_atoms, value_found
from .prompting import strip_citations

ROUGE_MODULE = Path(__file__).with_name("evaluate_modules") / "korean_rouge.py"


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
