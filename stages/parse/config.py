"""Parse knobs: the typed ``parse`` section (``params_schema.Parse``), checked for what a declaration cannot say."""

from __future__ import annotations

import dataclasses

from ..common.errors import UserError
from ..common.params_schema import Parse
from .ocr import ENGINES  # the engine registry: names and their engine-specific keys


def check_parse(section: Parse) -> Parse:
    """The loaded ``parse`` section once every key the run reads is there: the shared keys and the selected
    OCR engine's own (another engine's keys may be absent). Types and ranges were checked by ``params.load``."""
    engine = section.ocr_engine  # a missing key: "params: missing parse.<key>"
    if engine not in ENGINES:
        raise UserError(f"params: parse.ocr_engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    engine_only = {key for spec in ENGINES.values() for key in spec.keys}
    keys = [f.name for f in dataclasses.fields(Parse)]
    for key in [k for k in keys if k not in engine_only] + [k for k in keys if k in ENGINES[engine].keys]:
        getattr(section, key)
    return section
