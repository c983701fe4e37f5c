"""OCR engines for the parse stage (part of the stages.parse package).

Every engine turns a PIL image into paragraph-like ``OcrBlock``s made of lines
and words with pixel boxes and 0-1 confidences; the parse stage maps them to
PDF points, filters noise and orders them with the text-layer blocks.

* ``TesseractEngine`` (cpu profile): Tesseract ``kor`` through pytesseract.
  One Tesseract run writes both TSV (word boxes, confidences, lines) and plain
  text; the plain text is only used to recover the spaces between words, which
  TSV does not carry (for Hangul, Tesseract often splits one spaced word into
  several TSV "words"). Tesseract's own page layout (psm 3) is not used: with
  ``kor`` it finds no text at all on clean Nanum-font renders ("Empty page!!")
  or reads them as vertical text, so lines come from psm 4/6 and are split at
  column gutters and table rules and grouped into blocks in ``ocr_lines.py``.
* ``PaddleOcrEngine`` (runpod profile): PaddleOCR 3.x ``PaddleOCR.predict``;
  imported lazily, so nothing here needs paddle unless it is selected.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.errors import UserError
from .ocr_lines import LayoutParams, OcrBlock, OcrEngine, OcrLine, OcrWord, group_lines, layout_blocks

# ---------------------------------------------------------------- Tesseract


def _tesseract_package(lang: str) -> str:
    """Debian package of a Tesseract traineddata: 'kor' -> tesseract-ocr-kor, 'Hangul' -> tesseract-ocr-script-hang."""
    scripts = {"Hangul": "hang", "Hangul_vert": "hang"}
    if lang in scripts:
        return f"tesseract-ocr-script-{scripts[lang]}"
    return f"tesseract-ocr-{lang.lower().replace('_', '-')}"


@contextlib.contextmanager
def _env(name: str, value: str):
    """Set one environment variable for the subprocesses started inside the block."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class TesseractEngine:
    """Tesseract through pytesseract; ``psm`` 3 = automatic page segmentation."""

    name = "tesseract"
    parallel_safe = True  # a subprocess per call: fine in forked page workers

    def __init__(
        self, lang: str, psm: int, threads: int, timeout_s: float, layout: LayoutParams, sparse_psm: int = 0
    ) -> None:
        import pytesseract

        self._pt = pytesseract
        self.lang = lang
        self.psm = psm
        self.sparse_psm = sparse_psm  # 0 = no sparse-text pass
        self.timeout_s = timeout_s
        self.layout = layout
        # Tesseract's OpenMP threads fight each other (and our page workers) on
        # few cores: 1 thread per process was ~5x faster than the default on 2 cores.
        # Set only around Tesseract runs: left in os.environ it leaks into every later
        # subprocess of the same Python process (torch training under it gave NaN losses).
        self.threads = threads
        try:
            listed = subprocess.run(
                [pytesseract.pytesseract.tesseract_cmd, "--list-langs"], capture_output=True, text=True, check=True
            ).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise UserError("tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-kor)") from exc
        langs = {ln.strip() for ln in listed.splitlines()[1:] if ln.strip()}
        missing = [part for part in lang.split("+") if part not in langs]
        if missing:
            packages = " ".join(_tesseract_package(part) for part in missing)
            raise UserError(
                f"tesseract has no language data for {'+'.join(missing)} "
                f"(installed: {', '.join(sorted(langs))}; apt-get install {packages})"
            )

    def ocr(self, image: Any) -> list[OcrBlock]:
        return self.ocr_many([image])[0]

    def ocr_sparse(self, image: Any) -> list[OcrBlock] | None:
        """OCR with the sparse-text segmentation (scattered map labels); None when it is switched off."""
        return self.ocr_many([image], psm=self.sparse_psm)[0] if self.sparse_psm else None

    def ocr_many(self, images: list[Any], psm: int | None = None) -> list[list[OcrBlock]]:
        """OCR several images in ONE Tesseract run (loading kor+Hangul costs ~0.25 s per run)."""
        if not images:
            return []
        rows, txt = self._run(images, psm or self.psm)
        pages = txt.split("\f")
        out = []
        for i in range(len(images)):
            page_rows = [r for r in rows if r.get("page_num") == str(i + 1)]
            page_txt = pages[i] if i < len(pages) else ""
            out.append(layout_blocks(tesseract_lines(page_rows, page_txt), self.layout))
        return out

    def _run(self, images: list[Any], psm: int) -> tuple[list[dict[str, str]], str]:
        pt = self._pt.pytesseract
        with tempfile.TemporaryDirectory(prefix="parse-ocr-") as tmp:
            paths = []
            for i, image in enumerate(images):
                path = Path(tmp) / f"region_{i:03d}.ppm"  # uncompressed: PNG encoding would cost more than OCR
                image.convert("RGB").save(path, format="PPM")
                paths.append(str(path))
            if len(paths) == 1:
                source = paths[0]
            else:  # a list file: Tesseract reads the images as pages of one document
                source = str(Path(tmp) / "images.txt")
                Path(source).write_text("\n".join(paths) + "\n", encoding="utf-8")
            base = str(Path(tmp) / "out")
            # One run, two renderers: TSV for structure, txt for the spaces between words.
            with _env("OMP_THREAD_LIMIT", str(self.threads)):
                pt.run_tesseract(
                    source,
                    base,
                    extension="txt",
                    lang=self.lang,
                    config=f"--psm {psm} -c tessedit_create_tsv=1",
                    timeout=self.timeout_s * len(images),
                )
            tsv = Path(f"{base}.tsv").read_text(encoding="utf-8")
            txt = Path(f"{base}.txt").read_text(encoding="utf-8")
        rows = list(csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE))
        return rows, txt


def tesseract_lines(rows: list[dict[str, str]], txt: str) -> list[OcrLine]:
    """Text lines from Tesseract TSV rows of one image (reading order as Tesseract saw it),
    with the spaces between words taken from the txt output."""
    lines: dict[tuple[int, int, int], list[OcrWord]] = {}
    for row in rows:
        if row.get("level") != "5":
            continue
        text = unicodedata.normalize("NFC", (row.get("text") or "").strip())
        if not text:
            continue
        key = (int(row["block_num"]), int(row["par_num"]), int(row["line_num"]))
        x, y, w, h = (float(row[k]) for k in ("left", "top", "width", "height"))
        conf = max(0.0, float(row["conf"])) / 100.0
        lines.setdefault(key, []).append(OcrWord(text, (x, y, x + w, y + h), conf))

    txt_lines = [unicodedata.normalize("NFC", t) for t in txt.splitlines() if t.strip()]
    cursor = 0
    for words in lines.values():
        compact = "".join(w.text for w in words)
        # Tesseract writes the txt lines in the same order as the TSV lines;
        # look a little ahead in case a line was rendered differently.
        for j in range(cursor, min(cursor + 3, len(txt_lines))):
            if "".join(txt_lines[j].split()) == compact:
                flags = _spacing(words, txt_lines[j])
                if flags is not None:
                    for w, flag in zip(words, flags, strict=True):
                        w.space_before = flag
                    cursor = j + 1
                break
    return [OcrLine(words) for words in lines.values()]


def _spacing(words: list[OcrWord], line: str) -> list[bool] | None:
    """Which words are preceded by a space in ``line``; None if the words do not spell the line."""
    flags: list[bool] = []
    pos = 0
    for i, w in enumerate(words):
        space = False
        while pos < len(line) and line[pos].isspace():
            pos += 1
            space = True
        if not line.startswith(w.text, pos):
            return None
        flags.append(space if i else False)
        pos += len(w.text)
    return flags if not line[pos:].strip() else None


# ---------------------------------------------------------------- PaddleOCR


class PaddleOcrEngine:
    """PaddleOCR 3.x text detection + recognition (one ``OcrWord`` per detected text line).

    ``model_dir`` holds one sub-folder per model, named like the model
    (``<model_dir>/<det_model>``, ``<model_dir>/<rec_model>``); empty means
    PaddleOCR downloads the models itself (needs internet).
    """

    name = "paddleocr"
    parallel_safe = False  # one model (often on one GPU): pages run serially in this process

    def __init__(
        self,
        lang: str,
        model_dir: str,
        det_model: str,
        rec_model: str,
        device: str,
        layout: LayoutParams,
    ) -> None:
        try:
            from paddleocr import PaddleOCR
        except ImportError as exc:
            raise UserError(
                "parse.ocr_engine=paddleocr but paddleocr is not installed "
                "(pip install paddleocr paddlepaddle-gpu, or use the cpu profile's tesseract)"
            ) from exc
        kwargs: dict[str, Any] = {
            "use_doc_orientation_classify": False,
            "use_doc_unwarping": False,
            "use_textline_orientation": False,
            "device": device,
        }
        if det_model or rec_model:
            if not (det_model and rec_model):
                raise UserError("params: set both parse.paddle_det_model and parse.paddle_rec_model, or neither")
            kwargs["text_detection_model_name"] = det_model
            kwargs["text_recognition_model_name"] = rec_model
        else:
            kwargs["lang"] = lang
        if model_dir:
            if not (det_model and rec_model):
                raise UserError(
                    "params: parse.paddle_model_dir needs parse.paddle_det_model and parse.paddle_rec_model"
                )
            for name, key in ((det_model, "text_detection_model_dir"), (rec_model, "text_recognition_model_dir")):
                path = Path(model_dir) / name
                if not path.is_dir():
                    raise UserError(
                        f"{path}: PaddleOCR model folder not found (parse.paddle_model_dir={model_dir!r}; "
                        "download the models there, or set it to '' to let PaddleOCR download them)"
                    )
                kwargs[key] = str(path)
        try:
            self._ocr = PaddleOCR(**kwargs)
        except Exception as exc:  # paddlex raises bare Exceptions for missing/unreachable models
            raise UserError(f"PaddleOCR could not load its models ({exc.__class__.__name__}: {exc})") from exc
        self.layout = layout

    def ocr_many(self, images: list[Any]) -> list[list[OcrBlock]]:
        return [self.ocr(image) for image in images]

    def ocr(self, image: Any) -> list[OcrBlock]:
        import numpy as np

        rgb = np.asarray(image.convert("RGB"))
        results = self._ocr.predict(rgb[:, :, ::-1].copy())  # PaddleX reads arrays as BGR (OpenCV order)
        words: list[OcrWord] = []
        for res in results:
            texts = list(res["rec_texts"])
            scores = list(res["rec_scores"])
            boxes = res["rec_boxes"]
            for text, score, box in zip(texts, scores, boxes, strict=False):
                text = unicodedata.normalize("NFC", str(text).strip())
                if text:
                    x0, y0, x1, y1 = (float(v) for v in box[:4])
                    words.append(OcrWord(text, (x0, y0, x1, y1), float(score)))
        return group_lines([OcrLine([w]) for w in words], self.layout)


# ---------------------------------------------------------------- the engine registry
# An engine is added here and nowhere else (plus its params): register a factory under the name
# `parse.ocr_engine` takes, with the engine-specific parse keys it requires (declared in params_schema.Parse
# and set in params.yaml). config.check_parse checks the name and keys against this table.


@dataclass(frozen=True)
class EngineSpec:
    factory: Any  # (params_schema.Parse, LayoutParams) -> OcrEngine
    keys: tuple[str, ...] = ()  # parse.* keys only this engine needs


ENGINES: dict[str, EngineSpec] = {}


def register_engine(name: str, factory: Any, keys: tuple[str, ...] = ()) -> None:
    if name in ENGINES:
        raise ValueError(f"OCR engine {name!r} is already registered")
    ENGINES[name] = EngineSpec(factory, tuple(keys))


register_engine(
    "tesseract",
    lambda cfg, layout: TesseractEngine(
        cfg.ocr_lang,
        cfg.tesseract_psm,
        cfg.tesseract_threads,
        cfg.ocr_timeout_s,
        layout,
        sparse_psm=cfg.tesseract_sparse_psm or 0,
    ),
    ("tesseract_psm", "tesseract_threads", "tesseract_sparse_psm"),
)
register_engine(
    "paddleocr",
    lambda cfg, layout: PaddleOcrEngine(
        cfg.ocr_lang, cfg.paddle_model_dir, cfg.paddle_det_model, cfg.paddle_rec_model, cfg.paddle_device, layout
    ),
    ("paddle_model_dir", "paddle_det_model", "paddle_rec_model", "paddle_device"),
)


def make_engine(cfg: Any) -> OcrEngine:
    """Build the engine named by ``parse.ocr_engine``."""
    layout = LayoutParams(
        cfg.ocr_split_gap, cfg.ocr_line_gap, cfg.ocr_size_ratio, cfg.ocr_table_min_cols, cfg.table_min_rows
    )
    spec = ENGINES.get(cfg.ocr_engine)
    if spec is None:
        raise UserError(f"params: parse.ocr_engine must be one of {', '.join(ENGINES)}, got {cfg.ocr_engine!r}")
    return spec.factory(cfg, layout)
