"""Tiny local stand-ins for the runpod profile's hub models (used by tests/test_rehearsal.py; tests/conftest.py
imports its byte-level BPE and character-BERT builders).

    python scripts/make_tiny_models.py --chunks data/chunks/chunks.jsonl --hub-cache /tmp/hf-cache

Writes three models into a Hugging Face hub *cache* (``$HF_HUB_CACHE`` layout: refs/main -> a
snapshot folder), so the pipeline loads them by hub id exactly as it loads Qwen / bge-m3 /
bge-reranker on a pod with ``HF_HUB_OFFLINE=1`` after a pre-download:

* ``rehearsal/tiny-chat-lm`` — a 2-layer Llama causal LM (hidden 64) with a ChatML template
  (``<|im_start|>`` / ``<|im_end|>`` = EOS, as Qwen2.5-Instruct) and a byte-level BPE trained on the
  chunk texts, so prompts stay short. Llama, not Qwen2: Qwen2's q/k/v biases hit bitsandbytes' CPU-only
  4-bit matmul (`result += bias` on a tensor that requires grad: "a view of a leaf Variable ... in-place"),
  a path CUDA never takes. Its weights are set so that greedy decoding is a bigram chain:
  attention and MLP outputs are zero (the residual stream is the token embedding) and the LM head
  maps the last token of the generation prompt to one added token holding a fixed reply, then EOS.
  The reply is the same for every prompt: a ```json fenced list with one question per chunk whose
  answer occurs only in that chunk, plus items the synthesize filters must drop (an answer found
  nowhere, an answer that leaks into its question). For each chunk all but its own item are
  ungrounded, so the llm generator's parsing and grounding filters really decide what survives.
  Everything it says about other prompts (evaluation questions) is junk, as intended.
* ``rehearsal/tiny-embedder`` — a 1-layer character BERT + mean pooling + normalise (sentence-transformers).
* ``rehearsal/tiny-reranker`` — a 1-layer character BERT cross-encoder (one logit).

The weights are random (seed 0): they test code paths, not quality.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

LM_ID = "rehearsal/tiny-chat-lm"
EMBEDDER_ID = "rehearsal/tiny-embedder"
RERANKER_ID = "rehearsal/tiny-reranker"

CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Values that make a good single-chunk answer, most specific first.
ANSWER_PATTERNS = [
    ("전화번호", re.compile(r"\d{2,4}-\d{3,4}-\d{4}")),
    ("요금", re.compile(r"\d[\d,]*원")),
    ("주소", re.compile(r"[가-힣]+(?:로|길)\s?\d+(?:-\d+)?")),
    ("시간", re.compile(r"\d{1,2}:\d{2}\s?~\s?\d{1,2}:\d{2}")),
    ("이름", re.compile(r"[가-힣]{3,8}")),
]
HALLUCINATED = {
    "question": "이 문서에서 안내하는 우주정거장의 전화번호는?",
    "answer": "070-9999-0000",
    "type": "factual",
}


def _squash(s: str) -> str:
    return re.sub(r"[\s,·.:;\-/~()\[\]'\"“”‘’]", "", s).lower()


def canned_items(chunks: list[dict[str, Any]], max_items: int = 24) -> list[dict[str, str]]:
    """One grounded question per chunk (answer unique to that chunk and absent from its question)."""
    texts = {c["chunk_id"]: _squash(c["text"]) for c in chunks}
    items: list[dict[str, str]] = []
    for c in sorted(chunks, key=lambda c: c["chunk_id"]):
        name = (c.get("title") or c.get("section_path") or "이 장소").split("/")[-1].strip()[:20]
        for label, pattern in ANSWER_PATTERNS:
            found = None
            for m in pattern.finditer(c["text"]):
                value = m.group(0).strip()
                sq = _squash(value)
                owners = [cid for cid, t in texts.items() if sq in t]
                question = f"{name}에 대한 안내에 나오는 {label}은 무엇인가요? ({len(items) + 1}번 질문)"
                if owners == [c["chunk_id"]] and sq not in _squash(question) and len(sq) >= 3:
                    found = {"question": question, "answer": value, "type": "factual"}
                    break
            if found:
                items.append(found)
                break
        if len(items) >= max_items:
            break
    return items


def canned_reply(items: list[dict[str, str]]) -> str:
    """The whole reply: a ```json fenced list of the items + one hallucinated and one leaking item."""
    leaky = {"question": f"{items[0]['answer']}은 어디의 {items[0]['answer']}인가요?", "answer": items[0]["answer"]}
    body = json.dumps([*items, HALLUCINATED, leaky], ensure_ascii=False, indent=1)
    return f"```json\n{body}\n```"


def byte_bpe(corpus: list[str], vocab_size: int, specials: list[str], unk_token: str | None = None, nfc: bool = False):
    """A byte-level BPE (tokenizers.Tokenizer) trained on `corpus`, `specials` first in its vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=unk_token))
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def build_tokenizer(corpus: list[str], pieces: list[str]):
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    tok = byte_bpe(corpus, 3000, SPECIALS, nfc=True)
    # Reply pieces: whole tokens, decoded as text (not special: skip_special_tokens keeps them).
    tok.add_tokens([AddedToken(p, normalized=False, special=False) for p in pieces])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None
    )
    hf.chat_template = CHATML
    return hf


def build_chat_lm(folder: Path, chunks: list[dict[str, Any]], extra_text: list[str]) -> dict[str, Any]:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    items = canned_items(chunks)
    if len(items) < 3:
        raise SystemExit(f"only {len(items)} chunks have a value unique to them: need >= 3 for a split")
    # One added token for the whole reply: greedy decoding is 2 steps (reply, EOS), whatever the
    # prompt; a chain of many tokens cost ~0.1 s per step here on 2 shared cores.
    pieces = [canned_reply(items)]
    corpus = [c["text"] for c in chunks] + [c.get("title", "") for c in chunks] + extra_text
    tokenizer = build_tokenizer(corpus, pieces)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "질문"}], add_generation_prompt=True)
    prompt_ids = prompt["input_ids"] if isinstance(prompt, dict) or hasattr(prompt, "keys") else prompt
    start = prompt_ids[-1]  # the token every generation prompt ends with ('\n' after 'assistant')
    chain = [start, *tokenizer.convert_tokens_to_ids(pieces), tokenizer.eos_token_id]

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:  # residual stream = token embedding: a bigram model
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        normed = emb / emb.pow(2).mean(-1, keepdim=True).add(config.rms_norm_eps).sqrt()
        normed = normed * model.model.norm.weight
        head = torch.zeros_like(model.lm_head.weight)
        for prev, nxt in zip(chain, chain[1:], strict=False):
            head[nxt] += 0.25 * normed[prev]  # logit ~ 0.25 * 64 = 16 for the successor, ~0 elsewhere
        model.lm_head.weight.copy_(head)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # Self-check: greedy decoding of any prompt is the canned reply.
    ids = torch.tensor(
        [
            tokenizer.apply_chat_template([{"role": "user", "content": corpus[0][:200]}], add_generation_prompt=True)[
                "input_ids"
            ]
        ]
    )
    out = model.generate(ids, max_new_tokens=len(pieces) + 2, do_sample=False)
    reply = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert reply == "".join(pieces), reply[:200]
    return {"items": items, "reply": reply}


def save_tiny_char_bert(folder: Path, text: str, make_model, max_positions: int, **config) -> Path:
    """A randomly initialised 1-layer BERT (seed 0) whose vocabulary is the characters of `text`,
    saved with its tokenizer ([CLS] a [SEP] and [CLS] a [SEP] b [SEP]) into `folder`: no hub needed.
    `make_model(config)` builds the model: e.g. BertForSequenceClassification (a cross-encoder)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, PreTrainedTokenizerFast

    chars = sorted({ch for ch in text if not ch.isspace()})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=max_positions,
        **config,
    )
    make_model(cfg).save_pretrained(folder)
    hf.save_pretrained(folder)
    return folder


def build_embedder(folder: Path, text: str) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import BertModel

    with tempfile.TemporaryDirectory() as tmp:
        save_tiny_char_bert(Path(tmp), text, lambda cfg: BertModel(cfg, add_pooling_layer=False), 512)
        st = SentenceTransformer(modules=[Transformer(tmp, max_seq_length=512), Pooling(16, "mean"), Normalize()])
        st.save(str(folder))


def build_reranker(folder: Path, text: str) -> None:
    from transformers import BertForSequenceClassification

    save_tiny_char_bert(folder, text, BertForSequenceClassification, 512, num_labels=1)


def install_in_hub_cache(cache: Path, repo_id: str, folder: Path) -> str:
    """Lay `folder` out as the hub cache does after a download of `repo_id` at revision main."""
    digest = hashlib.sha1()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    sha = digest.hexdigest()
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / sha
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(folder, snapshot)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(sha)
    return sha


def build_all(chunks: list[dict[str, Any]], cache: Path, extra_text: list[str]) -> dict[str, Any]:
    text = "".join(c.get("title", "") + c.get("section_path", "") + c["text"] for c in chunks) + "".join(extra_text)
    with tempfile.TemporaryDirectory(prefix="tiny-models-") as tmp:
        tmp = Path(tmp)
        lm = build_chat_lm(tmp / "lm", chunks, extra_text)
        build_embedder(tmp / "emb", text)
        build_reranker(tmp / "rr", text)
        shas = {
            repo_id: install_in_hub_cache(cache, repo_id, tmp / sub)
            for repo_id, sub in ((LM_ID, "lm"), (EMBEDDER_ID, "emb"), (RERANKER_ID, "rr"))
        }
    return {"shas": shas, **lm}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=Path, required=True, help="chunks.jsonl (the canned LLM reply asks about them)")
    ap.add_argument("--hub-cache", type=Path, required=True, help="folder to use as HF_HUB_CACHE")
    ap.add_argument("--info", type=Path, help="write the canned items and snapshot shas here (json)")
    args = ap.parse_args(argv)
    chunks = [json.loads(line) for line in args.chunks.read_text(encoding="utf-8").splitlines() if line.strip()]
    info = build_all(chunks, args.hub_cache, [])
    if args.info:
        args.info.write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"{len(info['items'])} canned questions; models in {args.hub_cache}: {', '.join(info['shas'])}")


if __name__ == "__main__":
    main()
