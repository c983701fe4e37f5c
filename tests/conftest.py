"""Shared pytest fixtures."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The tiny-model builders live with the script that lays out the rehearsal's hub models; tests import
# save_tiny_char_bert from here as before.
sys.path.insert(0, str(REPO / "scripts"))
from make_tiny_models import byte_bpe, save_tiny_char_bert  # noqa: E402, F401

TEMPLATE = REPO / "axolotl" / "templates" / "plain_eos.jinja"
TINY_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]

SYSTEM = "브로셔 문서만 보고 짧게 답하고 [c001]처럼 근거를 표시하세요."
PLACES = ["의림지", "청풍호반 케이블카", "배론성지", "박달재", "옥순봉 출렁다리", "청풍문화재단지"]


def retrieval_options(**changes):
    """params.yaml's retrieval options (what the stages use), with a test's changes: no code defaults to drift."""
    import dataclasses

    from stages.common import params as P
    from stages.common.retrieval import RetrievalOptions

    options = RetrievalOptions.from_params(P.load(REPO / "params.yaml", "retrieval")["retrieval"])
    return dataclasses.replace(options, **changes)


NANUM_FONT = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")


def text_image(lines: list[str], size: int = 44, width: int = 900):
    """A white PNG-able image with Korean lines in Nanum Gothic: raster text for OCR tests."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(NANUM_FONT), size)
    img = Image.new("RGB", (width, int(size * 1.8) * len(lines) + size), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((size // 2, size // 2 + i * int(size * 1.8)), line, font=font, fill="black")
    return img


def insert_image(page, rect, img) -> None:
    """Place a PIL image on a PyMuPDF page (as an embedded PNG)."""
    from io import BytesIO

    buf = BytesIO()
    img.save(buf, format="PNG")
    page.insert_image(rect, stream=buf.getvalue())


@pytest.fixture(autouse=True)
def _restore_environ():
    """Stage mains called in-process set offline defaults (stages.common.env.setup_env) in os.environ;
    restore it after each test so no test depends on which ran before it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def sft_rows(n: int, seed: int = 0) -> list[dict]:
    """Small chat-format RAG examples in the data/sft contract (short, Korean)."""
    rows = []
    for i in range(n):
        k = (i + seed) % len(PLACES)
        cid = f"c{k + 1:03d}"
        ctx = f"[{cid}] {PLACES[k]} 전화: 043-6{k}{i % 10}-12{k}{i % 10}. 요금: 성인 {k + 3},000원."
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"{ctx}\n\n질문: {PLACES[k]} 요금은?"},
                    {"role": "assistant", "content": f"성인 {k + 3},000원입니다 [{cid}]"},
                ],
                "meta": {"id": f"q{i:04d}"},
            }
        )
    return rows


def write_sft(folder: Path, n_train: int = 16, n_val: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", sft_rows(n_train)), ("validation.jsonl", sft_rows(n_val, seed=3))):
        with open(folder / name, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return folder


def build_tiny_tokenizer():
    """A byte-level BPE (a few hundred tokens) with Gemma's special tokens and our template."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    corpus = [m["content"] for row in sft_rows(24) for m in row["messages"]] + ["user model\n"]
    tok = byte_bpe(corpus, 400, TINY_SPECIALS, unk_token="<unk>")
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    hf.chat_template = TEMPLATE.read_text(encoding="utf-8")
    return hf


def build_tiny_model(folder: Path) -> Path:
    """A 2-layer Gemma-3 text model (hidden 64) + tiny tokenizer saved as an HF folder."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = build_tiny_tokenizer()
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture()
def tiny_sft_dir(tmp_path) -> Path:
    return write_sft(tmp_path / "sft")


# The `evaluate:` params section (shared part) for tests of evaluate/report; profile keys
# (device, dtype, limit, backend, attention) go under profiles.cpu.evaluate. Override with {**EVALUATE_PARAMS, ...}.
ABSTAIN = "브로셔에 해당 정보가 없습니다."
EVALUATE_PARAMS = {
    "max_new_tokens": 16,
    "stop_at_line_end": True,
    "batch_size": 2,
    "prefill_tokens": 1,
    "min_shared_prefix": 0,
    "abstain_markers": ["정보가 없"],
    "abstain_window": 60,
    "support_min_share": 1.0,
    "correct_f1": 0.5,
    "correct_key_fact_recall": 1.0,
    "echo_min_chars": 20,
    "slot_max_extra_values": 0,
    "loop_word_ngram": 4,
    "loop_char_ngram": 12,
    "loop_repeats": 3,
    "natural_min_fact_share": 0.5,
    "judge": {"enabled": False},
}
EVALUATE_PROFILE = {"device": "cpu", "dtype": "float32", "limit": 0, "backend": "transformers", "attention": "grouped"}
