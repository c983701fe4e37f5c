"""The demo's RAG path and citation view, as plain functions (no Gradio here).

Answers are produced exactly like the evaluate stage produces them: the same
retriever (`data/index`), the same prompt (stages.common.prompting through
generation.build_prompts), the same greedy decoding budget and device/dtype
(params `evaluate`), and the same abstention test (metrics.abstained). Only
presentation is added: which chunks to show, page crops of their regions, HTML.
"""

from __future__ import annotations

import base64
import html
import io
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stages.common import metrics as M
from stages.common import params as P
from stages.common.errors import UserError
from stages.common.generation import build_prompts, generate, load_model
from stages.common.io import read_jsonl
from stages.common.prompting import PromptLayout, cited_ids, strip_citations
from stages.common.retrieval import Retriever

BASELINE, FINETUNED = "baseline", "finetuned"
CHOICES = {BASELINE: "baseline (base model)", FINETUNED: "fine-tuned (base + LoRA adapter)"}


# ---------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """Everything the demo reads from params.yaml (the evaluate stage's sections + `demo`)."""

    method: str
    top_k: int
    layout: PromptLayout  # params prompt: system prompt, chunk cap, question placement (as sft and evaluate)
    abstain: str
    max_new_tokens: int
    stop_at_line_end: bool
    device: str
    dtype: str
    backend: str  # evaluate.backend: transformers | vllm (runpod)
    attention: str  # evaluate.attention: the transformers backend's attention kernel
    abstain_markers: tuple[str, ...]
    abstain_window: int
    offline: bool
    host: str
    port: int
    crop_margin: float
    crop_width: int
    page_thumb_width: int
    examples: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_params(cls, path: str | Path = P.DEFAULT_PARAMS) -> Settings:
        p = P.load(path, "retrieval", "prompt", "evaluate", "machine", "demo")
        r, pr, e, d = p["retrieval"], p["prompt"], p["evaluate"], p["demo"]
        return cls(
            method=r.method,
            top_k=r.top_k,
            layout=PromptLayout.from_params(pr),
            abstain=pr.abstain,
            max_new_tokens=e.max_new_tokens,
            stop_at_line_end=e.stop_at_line_end,
            device=e.device,
            dtype=e.dtype,
            backend=e.backend,
            attention=e.attention,
            abstain_markers=tuple(e.abstain_markers),
            abstain_window=e.abstain_window,
            offline=p["machine"].offline,
            host=d.host,
            port=d.port,
            crop_margin=float(d.crop_margin),
            crop_width=d.crop_width,
            page_thumb_width=d.page_thumb_width,
            examples=tuple(d.examples),
        )


# ---------------------------------------------------------------- input checks
def check_paths(index: Path, parsed: Path, base: Path, adapter: Path | None) -> tuple[Path | None, list[str]]:
    """Fail with one line naming the `dvc repro` stage to run.

    Returns the adapter to offer (None when absent: the demo still serves the baseline) and warnings.
    """
    if not (index / "meta.json").is_file():
        raise UserError(f"{index}: no index found (run `dvc repro index`)")
    if not (base / "config.json").is_file():
        raise UserError(f"{base}: no base model found (run `dvc repro prepare_model`)")
    if not (parsed / "pages.jsonl").is_file():
        raise UserError(f"{parsed}: no parsed pages found (run `dvc repro parse`)")
    warnings = []
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        warnings.append(f"{adapter}: no adapter found (run `dvc repro train`); only the baseline is offered")
        adapter = None
    if not (parsed / "images").is_dir():
        warnings.append(f"{parsed}/images: no page images (run `dvc repro parse`); citations are shown without crops")
    return adapter, warnings


# ---------------------------------------------------------------- answers
@dataclass
class Answer:
    question: str
    choice: str
    raw: str  # the model's output as generated
    text: str  # the output without [cNNN] tags
    abstained: bool
    retrieved_ids: list[str]
    cited_ids: list[str]  # cited ids that exist in the index, in citation order
    unknown_ids: list[str]  # cited ids the index does not have (hallucinated)
    shown_ids: list[str]  # the chunks the citation panel shows
    shown_as: str  # "cited" | "retrieved" (the model cited nothing usable: the context is shown)
    latency_s: float = 0.0
    new_tokens: int = 0
    hit_eos: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def interpret(
    question: str, choice: str, raw: str, retrieved_ids: list[str], known_ids: set[str], settings: Settings
) -> Answer:
    """Turn a raw generation into what the demo shows: answer text, abstention, the chunks to cite."""
    cites = cited_ids(raw)
    known = [c for c in cites if c in known_ids]
    abst = M.abstained(raw, settings.abstain, settings.abstain_markers, settings.abstain_window)
    show_cited = bool(known) and not abst
    return Answer(
        question=question,
        choice=choice,
        raw=raw,
        text=strip_citations(raw),
        abstained=abst,
        retrieved_ids=list(retrieved_ids),
        cited_ids=known,
        unknown_ids=[c for c in cites if c not in known_ids],
        shown_ids=known if show_cited else list(retrieved_ids),
        shown_as="cited" if show_cited else "retrieved",
    )


class Engine:
    """Retriever + one cached model per choice; answers one question at a time."""

    def __init__(self, retriever: Retriever, settings: Settings, base: Path, adapter: Path | None):
        self.retriever = retriever
        self.settings = settings
        self.base = base
        self.adapter = adapter
        self._models: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()  # one generate() at a time: 2 requests would just fight for the cores

    @property
    def choices(self) -> list[str]:
        return [BASELINE, FINETUNED] if self.adapter is not None else [BASELINE]

    def model(self, choice: str) -> tuple[Any, Any]:
        if choice not in self.choices:
            raise UserError(f"unknown model choice {choice!r} (available: {', '.join(self.choices)})")
        if choice not in self._models:
            adapter = self.adapter if choice == FINETUNED else None
            s = self.settings
            self._models[choice] = load_model(
                self.base, adapter, s.device, s.dtype, backend=s.backend, attention=s.attention
            )
        return self._models[choice]

    def ask(self, question: str, choice: str) -> Answer:
        question = question.strip()
        if not question:
            raise UserError("empty question")
        s = self.settings
        with self._lock:
            model, tokenizer = self.model(choice)
            ids = self.retriever.rank([question], s.top_k, s.method)[0]
            chunks = [self.retriever.by_id[c] for c in ids]
            prompts = build_prompts(tokenizer, [{"question": question}], [chunks], s.layout)
            t0 = time.perf_counter()
            # One question: one row, prefilled alone (a prefill always takes at least one prompt).
            gen = generate(model, tokenizer, prompts, s.max_new_tokens, 1, 1, s.stop_at_line_end)[0]
            elapsed = time.perf_counter() - t0
        answer = interpret(question, choice, gen["answer"], ids, set(self.retriever.by_id), s)
        answer.latency_s = round(elapsed, 2)
        answer.new_tokens = gen["new_tokens"]
        answer.hit_eos = gen["hit_eos"]
        return answer


# ---------------------------------------------------------------- citation view
@dataclass
class Pages:
    """Page sizes (PDF points) and page images from the parse stage."""

    sizes: dict[int, tuple[float, float]]
    images_dir: Path

    @classmethod
    def load(cls, parsed: Path) -> Pages:
        rows = read_jsonl(parsed / "pages.jsonl")
        return cls({int(r["page"]): (float(r["width"]), float(r["height"])) for r in rows}, parsed / "images")

    def image_path(self, page: int) -> Path:
        return self.images_dir / f"page_{page:03d}.png"


def _highlight(image, boxes_px: list[tuple[float, float, float, float]], width: int):
    from PIL import Image, ImageDraw

    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for rect in boxes_px:
        draw.rectangle(rect, fill=(255, 214, 0, 60), outline=(230, 90, 0, 255), width=width)
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")


def crop_region(image, page_size: tuple[float, float], boxes: list[list[float]], margin: float, max_width: int):
    """The page area around `boxes` (PDF points, top-left origin) with each box highlighted.

    The image may have any resolution: points are scaled by image width / page width.
    """
    from PIL import Image

    scale = image.width / page_size[0]
    x0 = int(max(0.0, min(b[0] for b in boxes) - margin) * scale)
    y0 = int(max(0.0, min(b[1] for b in boxes) - margin) * scale)
    x1 = max(x0 + 1, round(min(page_size[0], max(b[2] for b in boxes) + margin) * scale))
    y1 = max(y0 + 1, round(min(page_size[1], max(b[3] for b in boxes) + margin) * scale))
    crop = image.convert("RGB").crop((x0, y0, x1, y1))
    rects = [(b[0] * scale - x0, b[1] * scale - y0, b[2] * scale - x0, b[3] * scale - y0) for b in boxes]
    crop = _highlight(crop, rects, 2)
    if crop.width > max_width:
        crop = crop.resize((max_width, max(1, round(crop.height * max_width / crop.width))), Image.LANCZOS)
    return crop


def page_thumbnail(image, page_size: tuple[float, float], boxes: list[list[float]], width: int):
    """The whole page at `width` pixels with the boxes marked: where on the page the crop sits."""
    from PIL import Image

    height = max(1, round(image.height * width / image.width))
    thumb = image.convert("RGB").resize((width, height), Image.LANCZOS)
    scale = width / page_size[0]
    return _highlight(thumb, [(b[0] * scale, b[1] * scale, b[2] * scale, b[3] * scale) for b in boxes], 2)


def citation_cards(chunk_ids: list[str], by_id: dict[str, dict[str, Any]], pages: Pages, settings: Settings) -> list:
    """One card per chunk: id, section path, pages, text excerpt and a crop per page it spans."""
    from PIL import Image

    cards = []
    for cid in chunk_ids:
        chunk = by_id[cid]
        crops = []
        for page in sorted({int(b[0]) for b in chunk.get("bboxes", [])}):
            path = pages.image_path(page)
            if page not in pages.sizes or not path.is_file():
                continue  # a missing image only costs the thumbnail, not the citation
            boxes = [b[1:] for b in chunk["bboxes"] if int(b[0]) == page]
            size = pages.sizes[page]
            with Image.open(path) as img:
                crop = crop_region(img, size, boxes, settings.crop_margin, settings.crop_width)
                thumb = page_thumbnail(img, size, boxes, settings.page_thumb_width)
            # Small crops (72-dpi page images) are shown up to 2x: readable without a bigger payload.
            crops.append(
                {"page": page, "image": crop, "thumb": thumb, "width": min(settings.crop_width, 2 * crop.width)}
            )
        cards.append(
            {
                "chunk_id": cid,
                "section_path": chunk["section_path"],
                "pages": [int(p) for p in chunk.get("pages", [])],
                "text": chunk["text"],
                "crops": crops,
            }
        )
    return cards


def _data_uri(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


CSS = """
.rag-banner{padding:10px 14px;border-radius:8px;margin:0 0 10px;font-weight:600}
.rag-abstain{background:#fff4e5;border:2px solid #f08c00;color:#7a4100}
.rag-note{background:#eef3ff;border:1px solid #91a7ff;color:#1c3d8f;font-weight:500}
.rag-card{border:1px solid #d0d4db;border-radius:8px;padding:10px;margin:0 0 10px;background:#fff}
.rag-card h4{margin:0 0 4px;font-size:15px}
.rag-meta{color:#555;font-size:13px;margin:0 0 6px}
.rag-text{font-size:13px;white-space:pre-wrap;max-height:6em;overflow:hidden;color:#222}
.rag-crops{display:flex;flex-direction:column;gap:8px;margin-top:6px}
.rag-crops figure{margin:0;display:flex;gap:8px;align-items:flex-start}
.rag-crops img{max-width:100%;border:1px solid #bbb;border-radius:4px}
.rag-crops img.rag-page{flex:none}
.rag-crops figcaption{font-size:12px;color:#555}
"""


def render_citations_html(answer: Answer, cards: list[dict[str, Any]], abstain_phrase: str) -> str:
    """The citation panel: abstention banner, then one card per shown chunk."""
    e = html.escape
    parts = []
    if answer.abstained:
        parts.append(
            f'<div class="rag-banner rag-abstain" data-abstained="true">⚠ Abstained — {e(abstain_phrase)} '
            "(the retrieved chunks below did not answer the question)</div>"
        )
    elif answer.shown_as == "retrieved":
        parts.append('<div class="rag-banner rag-note">The model cited no chunk: showing the retrieved context.</div>')
    if answer.unknown_ids:
        parts.append(
            f'<div class="rag-banner rag-note">Cited ids not in the index: {e(", ".join(answer.unknown_ids))}</div>'
        )
    label = "cited" if answer.shown_as == "cited" else "retrieved"
    for rank, card in enumerate(cards, start=1):
        pages = ", ".join(str(p) for p in card["pages"])
        figures = "".join(
            f'<figure data-page="{c["page"]}"><img class="rag-page" alt="page {c["page"]}" src="{_data_uri(c["thumb"])}">'
            f'<div><img class="rag-crop" style="width:{c["width"]}px" alt="page {c["page"]} region of '
            f'{e(card["chunk_id"])}" src="{_data_uri(c["image"])}"><figcaption>page {c["page"]}, cited region'
            "</figcaption></div></figure>"
            for c in card["crops"]
        )
        text = card["text"] if len(card["text"]) <= 300 else card["text"][:300] + "…"
        parts.append(
            f'<div class="rag-card" data-chunk-id="{e(card["chunk_id"])}" data-pages="{e(pages)}">'
            f"<h4>[{e(card['chunk_id'])}] {e(card['section_path'])}</h4>"
            f'<div class="rag-meta">{label} #{rank} · page {e(pages)}</div>'
            f'<div class="rag-text">{e(text)}</div><div class="rag-crops">{figures}</div></div>'
        )
    return f"<style>{CSS}</style><div class='rag-citations'>{''.join(parts)}</div>"


def render_answer_markdown(answer: Answer, by_id: dict[str, dict[str, Any]]) -> str:
    """The chat bubble: the answer without tags, then its sources (or the abstention)."""
    if answer.abstained:
        return f"⚠️ **{answer.text or answer.raw}**"
    body = answer.text or "*(empty answer)*"
    if answer.cited_ids:
        sources = "; ".join(
            f"[{c}] {by_id[c]['section_path']} (p.{', '.join(str(p) for p in by_id[c].get('pages', []))})"
            for c in answer.cited_ids
        )
        body += f"\n\nSources: {sources}"
    else:
        body += "\n\n*(no citation)*"
    return body


def payload(answer: Answer, cards: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSON view for API clients: the answer plus the shown chunks (no images)."""
    out = answer.to_dict()
    out["citations"] = [
        {
            "chunk_id": c["chunk_id"],
            "section_path": c["section_path"],
            "pages": c["pages"],
            "crop_pages": [x["page"] for x in c["crops"]],
        }
        for c in cards
    ]
    return json.loads(json.dumps(out, ensure_ascii=False))
