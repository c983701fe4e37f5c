"""Per-example scoring (``score_example``) and the failure label of each prediction (used by `metrics`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .answer_values import (
    ANSWER_KINDS,
    SLOT_KINDS,
    infer_answer_kind,
    key_fact_recall,
    normalize_answer,
    number_atoms,
    value_atoms,
    value_found,
)
from .metric_registry import METRICS
from .records import Prediction, gold_ids
from .text_scores import (
    abstained,
    contains_match,
    exact_match,
    f1_char,
    f1_morph,
    is_looping,
    is_supported,
    prompt_echo,
    rouge_l_char,
)

if TYPE_CHECKING:
    from .params_schema import Evaluate, Prompt

FAILURES = ("format", "missed_abstention", "retrieval_miss", "wrong_abstention", "hallucination", "wrong_fact")


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
    def from_params(cls, evaluate_cfg: Evaluate, prompt_cfg: Prompt) -> ScoreConfig:
        return cls(
            abstain=prompt_cfg.abstain,
            abstain_markers=tuple(evaluate_cfg.abstain_markers),
            abstain_window=int(evaluate_cfg.abstain_window),
            support_min_share=float(evaluate_cfg.support_min_share),
            loop_word_ngram=int(evaluate_cfg.loop_word_ngram),
            loop_char_ngram=int(evaluate_cfg.loop_char_ngram),
            loop_repeats=int(evaluate_cfg.loop_repeats),
            correct_f1=float(evaluate_cfg.correct_f1),
            correct_key_fact_recall=float(evaluate_cfg.correct_key_fact_recall),
            echo_min_chars=int(evaluate_cfg.echo_min_chars),
            slot_max_extra_values=int(evaluate_cfg.slot_max_extra_values),
            system=prompt_cfg.system,
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
