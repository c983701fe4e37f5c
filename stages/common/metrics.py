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

The code lives in `answer_values` (normalisation, value matching), `text_scores` (overlap,
abstention, support, format), `scoring` (per-example scores, failure labels), `metric_registry`
(the `Metric` registry) and `metric_summary` (aggregates, paired bootstrap); this module
re-exports their public names so `from stages.common import metrics as M` keeps working.
"""

from __future__ import annotations

from .answer_values import (  # noqa: F401
    ANSWER_KINDS,
    SLOT_KINDS,
    TEXT_KINDS,
    compact,
    infer_answer_kind,
    key_fact_found,
    key_fact_recall,
    normalize_answer,
    number_atoms,
    value_atoms,
    value_found,
    value_in,
)
from .metric_registry import (  # noqa: F401
    BY_KEY,
    METRICS,
    Metric,
    Parts,
    card_metrics,
    metric_parts,
    metric_values,
    register_metric,
    unregister_metric,
)
from .metric_summary import (  # noqa: F401
    aggregate,
    bootstrap_weights,
    compare,
    failure_counts,
    get_path,
    judge_agreement,
    paired_bootstrap,
)
from .scoring import (  # noqa: F401
    FAILURES,
    GoldReference,
    ScoreConfig,
    _gold_parts,
    answer_matches,
    citation_scores,
    classify_failure,
    extra_values,
    gold_reference,
    score_example,
    slot_match,
)
from .text_scores import (  # noqa: F401
    ROUGE_MODULE,
    abstained,
    contains_match,
    exact_match,
    f1_char,
    f1_morph,
    is_looping,
    is_supported,
    lcs_length,
    load_rouge_module,
    prompt_echo,
    rouge_l,
    rouge_l_char,
    support,
)
