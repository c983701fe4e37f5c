"""evaluate stage on a tiny random Llama + char-level tokenizer built offline, and a 3-chunk index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stages import evaluate as E
from stages.common import generation as G
from stages.common import params as P
from stages.common.errors import UserError
from stages.common.io import read_json, read_jsonl
from stages.common.retrieval import Retriever

SYSTEM = "브로셔 문서로만 답하세요. 답의 근거를 [c001]처럼 표시하세요."
ABSTAIN = "브로셔에 해당 정보가 없습니다."
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
CHUNKS = [
    {
        "chunk_id": "c001",
        "section_path": "관광지 > 청풍호반 케이블카",
        "title": "청풍호반 케이블카",
        "text": "주소: 제천시 청풍면 문화재길 166. 전화: 043-641-5532. 요금: 15,000원.",
        "pages": [1],
    },
    {
        "chunk_id": "c002",
        "section_path": "관광지 > 의림지",
        "title": "의림지",
        "text": "주소: 제천시 의림지로 33. 삼한시대 저수지로 산책로가 있다.",
        "pages": [2],
    },
    {
        "chunk_id": "c003",
        "section_path": "음식 > 약채락",
        "title": "약채락",
        "text": "약초 비빔밥을 파는 식당. 가격은 12,000원이다.",
        "pages": [3],
    },
]
QUESTIONS = [
    {
        "id": "q0001",
        "question": "청풍호반 케이블카의 주소는?",
        "answer": "제천시 청풍면 문화재길 166",
        "answerable": True,
        "type": "factual",
        "fact": "address",
        "chunk_id": "c001",
    },
    {
        "id": "q0002",
        "question": "의림지는 어떤 곳인가요?",
        "answer": "삼한시대 저수지로 산책로가 있다.",
        "answerable": True,
        "type": "descriptive",
        "fact": "sentence",
        "chunk_id": "c002",
    },
    {
        "id": "q0003",
        "question": "약채락의 주차 요금은?",
        "answer": ABSTAIN,
        "answerable": False,
        "type": "unanswerable",
        "fact": "none",
        "chunk_id": "c003",
    },
]
MAX_NEW = 5


def params_yaml(method: str = "bm25", dtype: str = "float32", limit: int = 0, batch_size: int = 2) -> str:
    return f"""
profile: cpu
retrieval: {{method: {method}, top_k: 2, rrf_k: 60}}
prompt: {{system: "{SYSTEM}", abstain: {ABSTAIN}}}
sft: {{max_context_chars: 60}}
evaluate:
  max_new_tokens: {MAX_NEW}
  batch_size: {batch_size}
  abstain_markers: [정보가 없]
  abstain_window: 60
  support_min_share: 1.0
  correct_f1: 0.5
  loop_word_ngram: 4
  loop_char_ngram: 12
  loop_repeats: 3
profiles:
  cpu:
    machine: {{offline: true}}
    evaluate: {{device: cpu, dtype: {dtype}, limit: {limit}}}
"""


class FakeEmbedder:
    """Deterministic bag-of-characters vectors: no model download."""

    name = "fake"
    dim = 16

    def _vec(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t:
                out[i, ord(ch) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    embed_queries = _vec
    embed_passages = _vec


def build_tokenizer(path: Path):
    """Char-level tokenizer over every character the fixtures use; eos = id 0 (see eos_model)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<eos>", "<pad>", "<bos>", "<unk>"]
    corpus = (
        SYSTEM + ABSTAIN + TEMPLATE + "문서:질문 assistantuser…\n" + json.dumps(CHUNKS + QUESTIONS, ensure_ascii=False)
    )
    chars = sorted(set(corpus) - {"\r"})
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", bos_token="<bos>", unk_token="<unk>"
    )
    fast.chat_template = TEMPLATE
    fast.save_pretrained(path)
    return fast


def build_model(path: Path, tokenizer, zero_head: bool = False) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = LlamaForCausalLM(cfg)
    if zero_head:  # all logits 0 -> greedy picks id 0 = <eos> at once
        with torch.no_grad():
            model.lm_head.weight.zero_()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    tok = build_tokenizer(root / "tok")
    build_model(root / "base", tok)
    build_model(root / "eos_model", tok, zero_head=True)
    # a LoRA adapter with non-zero B so that merging changes the outputs
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(root / "base"),
        LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(root / "adapter")
    Retriever.build(CHUNKS, FakeEmbedder(), rrf_k=60, fusion_depth=20).save(root / "index", {"embedder": "fake"})
    (root / "qa").mkdir()
    (root / "qa" / "test.jsonl").write_text(
        "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), encoding="utf-8"
    )
    (root / "params.yaml").write_text(params_yaml(), encoding="utf-8")
    return {"root": root}


def _cli(world, name: str, base: str = "base", adapter: str | None = None, params: str = "params.yaml") -> tuple:
    root = world["root"]
    argv = [
        "--name",
        name,
        "--base",
        str(root / base),
        "--index",
        str(root / "index"),
        "--qa",
        str(root / "qa"),
        "--out",
        str(root / "eval" / name),
        "--metrics",
        str(root / "metrics" / f"{name}.json"),
        "--params",
        str(root / params),
    ]
    if adapter:
        argv += ["--adapter", str(root / adapter)]
    E.main(argv)
    return read_jsonl(root / "eval" / name / "predictions.jsonl"), read_json(root / "metrics" / f"{name}.json")


FIELDS = {
    "id",
    "question",
    "type",
    "answerable",
    "gold_answer",
    "gold_chunk_id",
    "retrieved_ids",
    "answer",
    "cited_ids",
    "latency_s",
    "new_tokens",
    "hit_eos",
    "scores",
}


def test_cli_baseline_predictions_and_metrics(world):
    preds, metrics = _cli(world, "baseline")
    assert [p["id"] for p in preds] == ["q0001", "q0002", "q0003"]  # question order, not batch order
    for p in preds:
        assert FIELDS <= set(p)
        assert len(p["retrieved_ids"]) == 2 and set(p["retrieved_ids"]) <= {"c001", "c002", "c003"}
        assert 1 <= p["new_tokens"] <= MAX_NEW
        assert p["hit_eos"] or p["new_tokens"] == MAX_NEW  # stopped by EOS or by the budget, never beyond
        assert p["scores"]["over_length"] == (not p["hit_eos"])
        assert "<pad>" not in p["answer"] and "<eos>" not in p["answer"]
    assert preds[0]["retrieved_ids"][0] == "c001"  # bm25 finds the cable-car chunk first
    assert metrics["n"] == 3 and metrics["n_answerable"] == 2
    assert set(metrics["answer"]) == {"em", "contains", "f1_morph", "f1_char", "rouge_l_char"}
    assert {"precision", "recall", "f1", "rate"} == set(metrics["abstention"])
    assert metrics["tokens_per_s"] > 0 and metrics["latency_s_mean"] > 0


def test_cli_finetuned_merges_adapter(world):
    base, _ = _cli(world, "baseline")
    tuned, metrics = _cli(world, "finetuned", adapter="adapter")
    assert [p["retrieved_ids"] for p in tuned] == [p["retrieved_ids"] for p in base]  # same retrieval
    assert [p["answer"] for p in tuned] != [p["answer"] for p in base]  # the merged LoRA changes the model
    assert metrics["n"] == 3


def test_eos_stops_generation_and_empty_answer_is_a_format_failure(world):
    preds, metrics = _cli(world, "eos", base="eos_model")
    for p in preds:
        assert p["hit_eos"] and p["new_tokens"] == 1 and p["answer"] == ""
        assert p["scores"]["empty"] and p["scores"]["failure"] == "format"
    assert metrics["format"]["empty"] == 1.0 and metrics["format"]["over_length"] == 0.0


def test_run_in_memory_dense_retriever_and_identical_prompts(world):
    """The pure path with an in-memory retriever (dense needs the embedder Retriever.load cannot rebuild)."""
    root = world["root"]
    (root / "dense.yaml").write_text(params_yaml(method="dense", batch_size=3), encoding="utf-8")
    params = P.load(root / "dense.yaml", "evaluate", "retrieval", "prompt", "sft", "machine")
    retriever = Retriever.build(CHUNKS, FakeEmbedder(), rrf_k=60, fusion_depth=20)
    model, tok = G.load_model(root / "base", None, "cpu", "float32")
    preds, metrics = E.run(QUESTIONS, retriever, model, tok, params)
    assert len(preds) == 3 and metrics["n"] == 3
    # the prompt is the shared prompting code, chunks in retrieval order, rendered by the chat template
    contexts = E.retrieve(retriever, QUESTIONS[:1], 2, "dense")
    prompt = G.build_prompts(tok, QUESTIONS[:1], contexts, SYSTEM, 60)[0]
    # What the model sees, checked on the text itself: system, every chunk in retrieval order, the question last.
    assert prompt.endswith("assistant: ") and SYSTEM in prompt
    positions = [prompt.index(f"[{c['chunk_id']}]") for c in contexts[0]]
    assert positions == sorted(positions)
    assert prompt.index(QUESTIONS[0]["question"]) > positions[-1]
    assert [c["chunk_id"] for c in contexts[0]] == preds[0]["retrieved_ids"]


def test_limit_and_bad_inputs(world, tmp_path):
    root = world["root"]
    (root / "limit.yaml").write_text(params_yaml(limit=1), encoding="utf-8")
    preds, _ = _cli(world, "limited", params="limit.yaml")
    assert [p["id"] for p in preds] == ["q0001"]
    with pytest.raises(UserError, match="test.jsonl"):
        E.load_questions(tmp_path, 0)
    (tmp_path / "test.jsonl").write_text('{"id": "q1", "question": "?"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="record 1 lacks answer"):
        E.load_questions(tmp_path, 0)
    with pytest.raises(UserError, match="adapter_config"):
        G.load_model(root / "base", tmp_path, "cpu", "float32")
    with pytest.raises(UserError, match="dtype"):
        G.resolve_dtype("int3")
    with pytest.raises(UserError, match="not a model folder"):
        G.load_model(tmp_path, None, "cpu", "float32")


def test_split_generation():
    assert G.split_generation([5, 6, 1, 0, 0], 1) == ([5, 6], True)
    assert G.split_generation([5, 6, 7], 1) == ([5, 6, 7], False)
    assert G.split_generation([9, 5], [1, 9]) == ([], True)


def test_eos_ids_union_of_tokenizer_and_generation_config():
    from types import SimpleNamespace

    tok = SimpleNamespace(eos_token_id=1)
    assert G.eos_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[106, 1])), tok) == [1, 106]
    assert G.eos_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=None)), tok) == [1]
