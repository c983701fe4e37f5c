"""Split names, question types and the small thresholds of the rules generator."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stages.common.params_schema import Synthesize

log = logging.getLogger("synthesize")

SPLITS = ("train", "validation", "test")
TYPES = ("factual", "descriptive", "comparison", "multihop", "unanswerable")


@dataclass(frozen=True)
class Limits:
    """Small thresholds of the rules generator (params synthesize.*; types and ranges: params_schema.Synthesize).

    The stage builds them from params (``from_cfg``); the defaults, equal to params.yaml's values
    (tests/test_common.py checks), only serve ``DEFAULTS`` for helpers called without limits.
    """

    value_max_chars: int = 60  # table cells longer than this are prose, not an answer
    sentence_min_chars: int = 15  # shorter 'key sentences' are fragments
    colon_window: int = 45  # a colon this early in an entry's first line ends its name label
    menu_min_items: int = 3  # a restaurant list is at least this many 'name(menu)' items
    questions_per_fact: int = 3  # phrasings asked per fact (different styles)

    @classmethod
    def from_cfg(cls, cfg: Synthesize) -> Limits:
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__})  # cfg: the checked params section


DEFAULTS = Limits()  # module-level: a call in argument defaults is evaluated once anyway (ruff B008)
