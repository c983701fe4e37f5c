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
  column gutters and table rules and grouped into blocks here (``layout_blocks``).
* ``PaddleOcrEngine`` (runpod profile): PaddleOCR 3.x ``PaddleOCR.predict``;
  imported lazily, so nothing here needs paddle unless it is selected.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import subprocess
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..common.errors import UserError

BBox = tuple[float, float, float, float]


@dataclass
class OcrWord:
    text: str
    bbox: BBox  # pixels in the image given to the engine
    confidence: float  # 0-1
    space_before: bool = True


@dataclass
class OcrLine:
    words: list[OcrWord] = field(default_factory=list)

    @property
    def text(self) -> str:
        out = []
        for i, w in enumerate(self.words):
            if i and w.space_before:
                out.append(" ")
            out.append(w.text)
        return "".join(out)

    @property
    def bbox(self) -> BBox:
        return union_bbox([w.bbox for w in self.words])


@dataclass
class OcrBlock:
    lines: list[OcrLine] = field(default_factory=list)
    rows: list[list[OcrLine]] | None = None  # tables: cells per row (the cells are also in ``lines``)

    @property
    def text(self) -> str:
        if self.rows is not None:
            return "\n".join(" | ".join(c.text for c in row) for row in self.rows if any(c.words for c in row))
        return "\n".join(line.text for line in self.lines if line.words)

    @property
    def bbox(self) -> BBox:
        return union_bbox([line.bbox for line in self.lines if line.words])

    @property
    def confidence(self) -> float:
        """Mean word confidence weighted by characters."""
        words = [w for line in self.lines for w in line.words]
        total = sum(len(w.text) for w in words)
        if not total:
            return 0.0
        return sum(w.confidence * len(w.text) for w in words) / total


class OcrEngine(Protocol):
    name: str

    def ocr(self, image: Any) -> list[OcrBlock]: ...

    def ocr_many(self, images: list[Any]) -> list[list[OcrBlock]]: ...


def union_bbox(boxes: list[BBox]) -> BBox:
    if not boxes:
        return (0.0, 0.0, 0.0, 0.0)
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


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


@dataclass(frozen=True)
class LayoutParams:
    """How OCR lines become blocks (params parse.ocr_split_gap, ocr_line_gap, ocr_size_ratio)."""

    split_gap: float  # a gap between words wider than this x line height splits the line (column gutter)
    line_gap: float  # a line joins the block above when the vertical gap is below this x line height
    size_ratio: float  # ...and the two line heights differ by less than this factor
    table_min_cols: int  # consecutive lines cut into at least this many pieces...
    table_min_rows: int  # ...at least this many times in a row form a table


def _height(line: OcrLine) -> float:
    """Typical glyph height of a line: median height of its words with letters or digits."""
    hs = sorted(w.bbox[3] - w.bbox[1] for w in line.words if any(c.isalnum() for c in w.text))
    if not hs:
        b = line.bbox
        return b[3] - b[1]
    return hs[len(hs) // 2]


_BARS = "|｜¦ㅣ"  # table rules read as glyphs (ㅣ is the jamo Tesseract often reads for a rule)
_ONE = re.compile(r"[|｜ㅣ]([.)])")  # ...but 'ㅣ.' / '|)' at a list item's start is the digit 1


def split_line(line: OcrLine, split_gap: float) -> list[OcrLine]:
    """Cut a line at horizontal gaps wider than ``split_gap`` x line height and at table rules (``|``).

    Tesseract reads a line straight across a column gutter, across the cells
    of a table, or across two labels of a map; the pieces are grouped and
    ordered afterwards.
    """
    out: list[OcrLine] = []
    h = _height(line)
    piece: list[OcrWord] = []

    def cut() -> None:
        nonlocal piece
        if piece:
            piece[0].space_before = False
            out.append(OcrLine(piece))
        piece = []

    for w in sorted(line.words, key=lambda w: w.bbox[0]):
        if piece and w.bbox[0] - piece[-1].bbox[2] > split_gap * h:
            cut()
        if _ONE.fullmatch(w.text):
            w.text = "1" + w.text[1:]
        lead, tail = w.text[:1] in _BARS, w.text[-1:] in _BARS
        w.text = w.text.strip(_BARS)
        if lead:
            cut()
        if w.text:
            piece.append(w)
        if tail:
            cut()
    cut()
    return out


def _aligned(row_a: list[OcrLine], row_b: list[OcrLine]) -> bool:
    """Is ``row_b`` the table row after ``row_a``: below it, a similar number of cells, and at least two
    cell positions shared (left edges or centres within a line height)? Map labels are not."""
    h = max(_height(row_b[0]), 1.0)

    def near(a: OcrLine, b: OcrLine) -> bool:
        (ax0, _, ax1, _), (bx0, _, bx1, _) = a.bbox, b.bbox
        return abs(ax0 - bx0) <= h or abs((ax0 + ax1) / 2 - (bx0 + bx1) / 2) <= h

    top_b = min(c.bbox[1] for c in row_b)
    bottom_a = max(c.bbox[3] for c in row_a)
    if top_b < bottom_a - h / 2 or abs(len(row_a) - len(row_b)) > 1:
        return False  # overlapping "rows" or very different cell counts: scattered labels
    return sum(1 for b in row_b if any(near(a, b) for a in row_a)) >= 2


def layout_blocks(lines: list[OcrLine], p: LayoutParams) -> list[OcrBlock]:
    """Lines -> blocks: runs of lines cut into many pieces are table rows; the rest are grouped into paragraphs."""
    split = [(line, split_line(line, p.split_gap)) for line in sorted(lines, key=lambda ln: ln.bbox[1])]
    blocks: list[OcrBlock] = []
    loose: list[OcrLine] = []
    run: list[list[OcrLine]] = []

    def flush() -> None:
        nonlocal run
        if len(run) >= p.table_min_rows:
            blocks.append(OcrBlock([c for row in run for c in row], rows=run))
        else:
            loose.extend(c for row in run for c in row)
        run = []

    for _, pieces in split:
        if len(pieces) >= p.table_min_cols:
            if run and not _aligned(run[-1], pieces):
                flush()
            run.append(pieces)
        else:
            flush()
            loose.extend(pieces)
    flush()
    return blocks + group_lines(loose, p)


def group_lines(lines: list[OcrLine], p: LayoutParams) -> list[OcrBlock]:
    """Group lines into paragraph blocks, top to bottom.

    A line joins the block whose last line it overlaps horizontally, lies
    below within ``line_gap`` x its height, and has a similar height; the
    closest such block wins.
    """
    blocks: list[OcrBlock] = []
    for line in sorted(lines, key=lambda ln: (ln.bbox[1], ln.bbox[0])):
        box, h = line.bbox, _height(line)
        best, best_gap = None, None
        for block in blocks:
            last = block.lines[-1]
            lb, lh = last.bbox, _height(last)
            overlap = min(lb[2], box[2]) - max(lb[0], box[0])
            gap = box[1] - lb[3]
            similar = max(h, lh) <= p.size_ratio * max(min(h, lh), 1e-6)
            if overlap > 0 and -0.5 * h <= gap <= p.line_gap * max(h, lh) and similar:
                if best_gap is None or gap < best_gap:
                    best, best_gap = block, gap
        if best is None:
            blocks.append(OcrBlock([line]))
        else:
            best.lines.append(line)
    return blocks


# ---------------------------------------------------------------- the engine registry
# An engine is added here and nowhere else (plus its params): register a factory under the name
# `parse.ocr_engine` takes, with the engine-specific parse keys it requires (declared as optional
# fields of ParseConfig and in params.yaml). ParseConfig checks the name and keys against this table.


@dataclass(frozen=True)
class EngineSpec:
    factory: Any  # (ParseConfig, LayoutParams) -> OcrEngine
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
