"""Parse knobs: params.yaml ``parse:`` merged with ``profiles.<profile>.parse``, checked and typed."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..common import params
from ..common.errors import UserError
from .ocr import ENGINES  # the engine registry: names and their engine-specific keys


@dataclass(frozen=True)
class ParseConfig:
    """params.yaml ``parse:`` merged with ``profiles.<profile>.parse`` (see params.yaml for meanings)."""

    dpi: int
    image_dpi: int
    max_render_pixels: int
    textlayer_min_chars: int
    garbage_max_share: float
    min_image_area: float
    background_image_area: float
    ocr_engine: str
    ocr_lang: str
    ocr_min_confidence: float
    ocr_min_block_confidence: float
    ocr_min_content_share: float
    ocr_min_block_chars: int
    ocr_timeout_s: float
    ocr_split_gap: float
    ocr_line_gap: float
    ocr_size_ratio: float
    ocr_table_min_cols: int
    ocr_sparse_line_chars: float
    ocr_photo_max_flat_share: float
    photo_check_dpi: int
    dedupe_overlap: float
    header_band: float
    header_max_chars: int
    title_size_ratio: float
    title_max_chars: int
    title_bold_max_chars: int
    ocr_title_max_lines: int
    caption_max_chars: int
    caption_max_gap: float
    max_heading_levels: int
    block_split_size_ratio: float
    paragraph_gap: float
    wrap_margin: float
    table_strategy: str
    table_use_layout: bool
    table_min_rows: int
    table_min_cols: int
    column_min_gap: float
    column_min_chars_share: float
    line_tolerance: float
    truth_overlap: float
    workers: int
    # engine-specific: required only for the selected engine
    tesseract_psm: int | None = None
    tesseract_threads: int | None = None
    tesseract_sparse_psm: int | None = None
    paddle_model_dir: str | None = None
    paddle_det_model: str | None = None
    paddle_rec_model: str | None = None
    paddle_device: str | None = None

    @classmethod
    def from_params(cls, section: dict[str, Any]) -> ParseConfig:
        engine_keys = {name: spec.keys for name, spec in ENGINES.items()}
        values: dict[str, Any] = {}
        engine = params.require(section, "ocr_engine", str, "parse")
        if engine not in engine_keys:
            raise UserError(f"params: parse.ocr_engine must be one of {', '.join(engine_keys)}, got {engine!r}")
        for f in fields(cls):
            optional = f.default is None
            if optional and f.name not in engine_keys[engine] and f.name not in section:
                continue
            kind = _KINDS[f.name]
            values[f.name] = params.require(section, f.name, kind, "parse")
        unknown = sorted(set(section) - {f.name for f in fields(cls)})
        if unknown:
            raise UserError(f"params: unknown key parse.{unknown[0]}")
        return cls(**values)


_NUM = (int, float)
_KINDS: dict[str, Any] = {
    f.name: {"int": int, "float": _NUM, "str": str, "bool": bool}[f.type.split(" |")[0]] for f in fields(ParseConfig)
}
