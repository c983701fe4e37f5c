"""evaluate stage on the tiny random Gemma (tests/conftest.py), a 3-chunk index, and a local judge server."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import ABSTAIN, EVALUATE_PARAMS, EVALUATE_PROFILE, retrieval_options

from stages import evaluate as E
from stages.common import generation as G
from stages.common import params as P
from stages.common.errors import UserError
from stages.common.io import read_json, read_jsonl
from stages.common.prompting import PromptLayout
from stages.common.retrieval import Retriever

SYSTEM = "브로셔 문서로만 답하세요. 답의 근거를 [c001]처럼 표시하세요."
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
# TRAIN questions for the few-shot examples: two answered (phone, price) and one abstention.
TRAIN = [
    {
        "id": "t0001",
        "question": "케이블카 전화번호는?",
        "answer": "케이블카 전화번호는 043-641-5532입니다.",
        "answer_short": "043-641-5532",
        "answer_kind": "phone",
        "answerable": True,
        "type": "factual",
        "chunk_id": "c001",
    },
    {
        "id": "t0002",
        "question": "약채락 비빔밥은 얼마인가요?",
        "answer": "약채락의 약초 비빔밥은 12,000원입니다.",
        "answer_short": "12,000원",
        "answer_kind": "price",
        "answerable": True,
        "type": "factual",
        "chunk_id": "c003",
    },
    {
        "id": "t0003",
        "question": "약채락 주차장은 몇 대인가요?",
        "answer": "브로셔에 해당 정보가 없습니다.",
        "answer_short": "",
        "answer_kind": "abstain",
        "answerable": False,
        "type": "unanswerable",
        "chunk_id": "c003",
    },
    {
        "id": "t0004",
        "question": "의림지 입장료는?",  # its answer is not in the chunk's first characters: never an example
        "answer": "의림지 입장료는 무료입니다.",
        "answer_short": "무료",
        "answer_kind": "price",
        "answerable": True,
        "type": "factual",
        "chunk_id": "c002",
    },
]
FEWSHOT = {"fewshot_k": 3, "fewshot_chunk_chars": 80, "fewshot_seed": 13}
MAX_NEW = 5


def params_yaml(method: str = "bm25", limit: int = 0, batch_size: int = 2, **evaluate) -> str:
    params = {
        "profile": "cpu",
        "retrieval": {"method": method, "top_k": 2, "rrf_k": 60},
        "prompt": {
            "system": SYSTEM,
            "abstain": ABSTAIN,
            "max_context_chars": 60,
            "question_first": False,
            "id_after_text": False,
        },
        "evaluate": {**EVALUATE_PARAMS, **FEWSHOT, "max_new_tokens": MAX_NEW, "batch_size": batch_size, **evaluate},
        "profiles": {"cpu": {"machine": {"offline": True}, "evaluate": {**EVALUATE_PROFILE, "limit": limit}}},
    }
    return yaml.safe_dump(params, allow_unicode=True)


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


def build_eos_model(tiny_model_dir: Path, path: Path) -> Path:
    """The tiny Gemma with every logit 0: greedy emits id 0, which its generation_config lists as an extra EOS
    (as real Gemma lists <end_of_turn> besides <eos>), so generation must stop at once."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.get_input_embeddings().weight.zero_()  # tied with the LM head
    model.generation_config.eos_token_id = [model.config.eos_token_id, 0]
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    (root / "base").symlink_to(tiny_model_dir)
    build_eos_model(tiny_model_dir, root / "eos_model")
    # a LoRA adapter with non-zero B so that merging changes the outputs
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(root / "adapter")
    Retriever.build(CHUNKS, FakeEmbedder(), rrf_k=60, fusion_depth=20, options=retrieval_options()).save(
        root / "index", {"embedder": "fake"}
    )
    (root / "qa").mkdir()
    (root / "qa" / "test.jsonl").write_text(
        "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), encoding="utf-8"
    )
    (root / "qa" / "train.jsonl").write_text(
        "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in TRAIN), encoding="utf-8"
    )
    (root / "params.yaml").write_text(params_yaml(), encoding="utf-8")
    return {"root": root}


def _cli(
    world,
    name: str,
    base: str = "base",
    adapter: str | None = None,
    params: str = "params.yaml",
    model: str | None = None,
    extra: list[str] | None = None,
) -> tuple:
    """Run the CLI into eval/<name>; the model is finetuned with an adapter, else baseline unless given."""
    root = world["root"]
    argv = [
        "--model",
        model or ("finetuned" if adapter else "baseline"),
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
    E.main(argv + (extra or []))
    return read_jsonl(root / "eval" / name / "predictions.jsonl"), read_json(root / "metrics" / f"{name}.json")


FIELDS = {
    "id",
    "testset",
    "model",
    "gold_answer_short",
    "gold_key_facts",
    "answer_kind",
    "style",
    "gold_chunk_ids",
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
    assert set(metrics["answer"]) == {
        "em",
        "contains",
        "f1_morph",
        "f1_char",
        "rouge_l_char",
        "slot_exact",
        "key_fact_recall",
    }
    assert {"precision", "recall", "f1", "rate", "wrong_rate"} == set(metrics["abstention"])
    assert metrics["tokens_per_s"] > 0 and metrics["latency_s_mean"] > 0
    assert {p["model"] for p in preds} == {"baseline"} and {p["testset"] for p in preds} == {"template"}
    assert metrics["model"] == "baseline" and metrics["testset"] == "template" and metrics["skipped"] is False
    assert metrics["fewshot_k"] == 0
    # wall_seconds covers the whole run, so at least the generation; it is rounded to 0.1 s, and a fast machine
    # runs this tiny model in under 0.05 s (a CI failure once), so compare with that rounding allowed for.
    assert metrics["wall_seconds"] == round(metrics["wall_seconds"], 1)
    assert metrics["wall_seconds"] + 0.05 >= sum(p["latency_s"] for p in preds)
    assert metrics["prompt_tokens_mean"] == pytest.approx(sum(p["prompt_tokens"] for p in preds) / 3, abs=0.05)
    assert metrics["new_tokens_mean"] == pytest.approx(sum(p["new_tokens"] for p in preds) / 3, abs=0.05)
    # the precision `auto` resolved to, and why: the test params force float32
    assert metrics["dtype"] == "float32" and "float32" in metrics["dtype_reason"]


def test_cli_finetuned_merges_adapter(world):
    base, _ = _cli(world, "baseline")
    tuned, metrics = _cli(world, "finetuned", adapter="adapter")
    assert [p["retrieved_ids"] for p in tuned] == [p["retrieved_ids"] for p in base]  # same retrieval
    assert [p["answer"] for p in tuned] != [p["answer"] for p in base]  # the merged LoRA changes the model
    assert metrics["n"] == 3


def test_merged_model_keeps_the_baselines_dtypes_and_merges_in_fp32(tiny_model_dir, tmp_path):
    """The fine-tuned model is the baseline's model with merged weights: every buffer keeps the dtype the baseline
    loads it in (Gemma-3's RoPE frequencies stay fp32 in a bf16 model), and the weights are the fp32 merge cast."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    lora.save_pretrained(tmp_path / "adapter")
    baseline, _ = G.load_model(tiny_model_dir, None, "cpu", "bfloat16")
    tuned, _ = G.load_model(tiny_model_dir, tmp_path / "adapter", "cpu", "bfloat16")
    assert {n: b.dtype for n, b in tuned.named_buffers()} == {n: b.dtype for n, b in baseline.named_buffers()}
    assert any("inv_freq" in n and b.dtype == torch.float32 for n, b in tuned.named_buffers())
    merged = G.merged_weights(tiny_model_dir, tmp_path / "adapter")
    weights = dict(tuned.named_parameters())
    assert all(weights[n].dtype == torch.bfloat16 for n in weights)
    assert all(torch.equal(weights[n], merged[n].to(torch.bfloat16)) for n in weights)
    changed = [n for n, w in baseline.named_parameters() if not torch.equal(w, weights[n])]
    assert changed and all("q_proj" in n or "v_proj" in n for n in changed)


def test_eos_stops_generation_and_empty_answer_is_a_format_failure(world):
    preds, metrics = _cli(world, "eos", base="eos_model")
    for p in preds:
        assert p["hit_eos"] and p["new_tokens"] == 1 and p["answer"] == ""  # the extra EOS id counts
        assert p["scores"]["empty"] and p["scores"]["failure"] == "format"
    assert metrics["format"]["empty"] == 1.0 and metrics["format"]["over_length"] == 0.0


def test_run_in_memory_dense_retriever_and_identical_prompts(world):
    """The pure path with an in-memory retriever (dense needs the embedder Retriever.load cannot rebuild)."""
    root = world["root"]
    (root / "dense.yaml").write_text(params_yaml(method="dense", batch_size=3), encoding="utf-8")
    params = P.load(root / "dense.yaml", "evaluate", "retrieval", "prompt", "machine")
    retriever = Retriever.build(CHUNKS, FakeEmbedder(), rrf_k=60, fusion_depth=20, options=retrieval_options())
    model, tok = G.load_model(root / "base", None, "cpu", "float32", backend="transformers")
    preds, metrics = E.run(QUESTIONS, retriever, model, tok, params)
    assert len(preds) == 3 and metrics["n"] == 3
    # the prompt is the shared prompting code, chunks in retrieval order, rendered by the chat template
    contexts = E.retrieve(retriever, QUESTIONS[:1], 2, "dense")
    prompt = G.render_prompts(tok, E.prompt_messages(QUESTIONS[:1], contexts, PromptLayout(SYSTEM, 60), [], 60))[0]
    assert prompt == G.build_prompts(tok, QUESTIONS[:1], contexts, PromptLayout(SYSTEM, 60))[0]  # the demo's prompt too
    # What the model sees, checked on the text itself: system, every chunk in retrieval order, the question last.
    assert prompt.endswith("<start_of_turn>model\n") and SYSTEM in prompt
    positions = [prompt.index(f"[{c['chunk_id']}]") for c in contexts[0]]
    assert positions == sorted(positions)
    assert prompt.index(QUESTIONS[0]["question"]) > positions[-1]
    assert [c["chunk_id"] for c in contexts[0]] == preds[0]["retrieved_ids"]


# ---------------------------------------------------------------- few-shot baseline
def _chunks_by_id() -> dict:
    return {c["chunk_id"]: c for c in CHUNKS}


def test_fewshot_examples_pick_answered_kinds_and_one_abstention():
    from stages.common.prompting import fewshot_examples

    ex = fewshot_examples(TRAIN, _chunks_by_id(), 3, 80, ABSTAIN, seed=13)
    assert sorted(e["id"] for e in ex) == ["t0001", "t0002", "t0003"]  # t0004's "무료" is not in its chunk
    by_id = {e["id"]: e for e in ex}
    assert by_id["t0001"]["answer"] == "케이블카 전화번호는 043-641-5532입니다. [c001]"  # sentence + citation
    assert by_id["t0002"]["answer"] == "약채락의 약초 비빔밥은 12,000원입니다. [c003]"
    assert by_id["t0003"]["answer"] == ABSTAIN and not by_id["t0003"]["answerable"]
    assert ex == fewshot_examples(TRAIN, _chunks_by_id(), 3, 80, ABSTAIN, seed=13)  # seeded
    # k=2: one answered + the abstention; a cut that hides the phone number drops that example
    two = fewshot_examples(TRAIN, _chunks_by_id(), 2, 80, ABSTAIN, seed=13)
    assert len(two) == 2 and sum(not e["answerable"] for e in two) == 1
    short = fewshot_examples(TRAIN, _chunks_by_id(), 3, 20, ABSTAIN, seed=13)
    assert "t0001" not in {e["id"] for e in short}
    assert fewshot_examples(TRAIN, _chunks_by_id(), 0, 80, ABSTAIN, seed=13) == []


def test_fewshot_prompt_puts_examples_before_the_question(tiny_tokenizer):
    from stages.common.prompting import fewshot_examples

    ex = fewshot_examples(TRAIN, _chunks_by_id(), 3, 40, ABSTAIN, seed=13)
    ctx = [[CHUNKS[1], CHUNKS[0]]]
    zero = G.render_prompts(tiny_tokenizer, E.prompt_messages(QUESTIONS[:1], ctx, PromptLayout(SYSTEM, 60), [], 40))[0]
    few = G.render_prompts(tiny_tokenizer, E.prompt_messages(QUESTIONS[:1], ctx, PromptLayout(SYSTEM, 60), ex, 40))[0]
    assert few.count(SYSTEM) == 1 and few.endswith(zero[zero.index("<start_of_turn>user\n", 1) :][-80:])
    q_pos = few.rindex(QUESTIONS[0]["question"])
    for e in ex:  # every example question and its answer (ended by EOS, as a finished turn) precede the question
        assert few.index(e["question"]) < q_pos
        assert few.index(e["answer"] + "<eos>") < q_pos
    # the example chunks are cut to fewshot_chunk_chars; the real context keeps max_context_chars
    assert "…" in few.split(QUESTIONS[0]["question"])[0]
    assert len(tiny_tokenizer(few)["input_ids"]) > len(tiny_tokenizer(zero)["input_ids"])


def test_cli_fewshot_model(world):
    root = world["root"]
    base, _ = _cli(world, "baseline")
    preds, metrics = _cli(world, "fewshot", model="baseline_fewshot")
    assert [p["id"] for p in preds] == [p["id"] for p in base]
    assert [p["retrieved_ids"] for p in preds] == [p["retrieved_ids"] for p in base]  # same retrieval
    assert all(f["prompt_tokens"] > b["prompt_tokens"] for f, b in zip(preds, base, strict=True))
    assert {p["model"] for p in preds} == {"baseline_fewshot"}
    assert metrics["fewshot_k"] == 3 and metrics["model"] == "baseline_fewshot"
    shots = read_json(root / "eval" / "fewshot" / "fewshot.json")
    assert sorted(s["id"] for s in shots) == ["t0001", "t0002", "t0003"]
    assert not (root / "eval" / "baseline" / "fewshot.json").exists()
    with pytest.raises(UserError, match="--adapter is required for --model finetuned"):
        _cli(world, "noadapter", model="finetuned")
    (root / "k9.yaml").write_text(params_yaml(fewshot_k=9), encoding="utf-8")
    with pytest.raises(UserError, match="only 3 usable few-shot examples"):
        _cli(world, "k9", model="baseline_fewshot", params="k9.yaml")


# ---------------------------------------------------------------- natural test set
NATURAL = [
    {
        "id": "n001",
        "question": "케이블카에 전화하려면 어디로 하나요?",
        "answer": "청풍호반 케이블카 전화번호는 043-641-5532입니다.",
        "answer_short": "043-641-5532",
        "key_facts": ["043-641-5532"],
        "answerable": True,
        "type": "factual",
        "style": "how_to",
        "answer_kind": "phone",
        "gold_pages": [1],
    },
    {
        "id": "n002",
        "question": "의림지에 반려견 데려가도 되나요?",
        "answer": ABSTAIN,
        "answer_short": "",
        "key_facts": [],
        "answerable": False,
        "type": "unanswerable",
        "style": "policy",
        "answer_kind": "abstain",
        "gold_pages": [2],  # the page the question is about
    },
]


def test_cli_natural_testset(world):
    root = world["root"]
    path = root / "natural.jsonl"
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in NATURAL), encoding="utf-8")
    preds, metrics = _cli(world, "nat", extra=["--testset", "natural", "--natural", str(path)])
    assert [p["id"] for p in preds] == ["n001", "n002"]
    n1, n2 = preds
    assert n1["gold_chunk_id"] == "c001" and n1["gold_chunk_ids"] == ["c001"]  # resolved from page + key facts
    assert n1["gold_key_facts"] == ["043-641-5532"] and n1["gold_answer_short"] == "043-641-5532"
    assert (n1["style"], n1["answer_kind"], n1["testset"], n1["gold_pages"]) == ("how_to", "phone", "natural", [1])
    assert n2["gold_chunk_ids"] == [] and n2["gold_chunk_id"] is None and n2["style"] == "policy"
    assert metrics["testset"] == "natural" and metrics["n"] == 2 and metrics["n_unanswerable"] == 1


def test_natural_testset_of_another_brochure_is_skipped(world):
    """A set whose answerable questions find none of their key facts on their gold pages was written for another
    brochure: skipped with the count in the reason, not scored against whatever chunks sit on those pages."""
    root = world["root"]

    def record(qid: str, fact: str, page: int) -> dict:
        return dict(NATURAL[0], id=qid, key_facts=[fact], answer_short=fact, answer=f"{fact}입니다.", gold_pages=[page])

    other = [record("n001", "033-570-2230", 1), record("n003", "5,000원", 2)]
    path = root / "other.jsonl"
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in [*other, NATURAL[1]]), encoding="utf-8")
    preds, metrics = _cli(world, "natother", extra=["--testset", "natural", "--natural", str(path)])
    assert preds == [] and metrics["skipped"] is True and metrics["n"] == 0
    assert "only 0 of 2 answerable questions find a key fact on their gold pages" in metrics["reason"]
    # one of two found = 0.5, the share the params ask for: the set runs
    other[1] = record("n003", "의림지로 33", 2)
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in [*other, NATURAL[1]]), encoding="utf-8")
    preds, metrics = _cli(world, "natother", extra=["--testset", "natural", "--natural", str(path)])
    assert metrics["skipped"] is False and [p["id"] for p in preds] == ["n001", "n003", "n002"]


def test_natural_testset_missing_is_skipped(world):
    root = world["root"]
    for extra in (["--natural", str(root / "nope.jsonl")], []):
        preds, metrics = _cli(world, "natskip", extra=["--testset", "natural", *extra])
        assert preds == []
        assert metrics["skipped"] is True and metrics["testset"] == "natural" and metrics["n"] == 0
    assert "empty" in metrics["reason"]
    assert E.natural_skip_reason(root / "nope.jsonl").endswith(
        "(hand-written questions exist for the sample brochure only)"
    )


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


# ---------------------------------------------------------------- vLLM backend (vllm is not installed here)
def test_backend_dispatch_and_errors_without_vllm(world, monkeypatch):
    import sys

    import torch

    base = world["root"] / "base"
    with pytest.raises(UserError, match="evaluate.backend must be one of transformers, vllm"):
        G.load_model(base, None, "cpu", "float32", backend="onnx")
    with pytest.raises(UserError, match="backend=vllm needs a CUDA GPU"):
        G.load_model(base, None, "cpu", "float32", backend="vllm")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(UserError, match="vllm package is not installed.*evaluate.backend: transformers"):
        G.load_model(base, None, "cuda", "bfloat16", backend="vllm")


def test_vllm_path_with_a_fake_engine(world, monkeypatch):
    """The small vLLM path end to end against a stand-in module: LoRA request, greedy, ids without a 2nd BOS."""
    import sys
    import types

    import torch

    calls: dict = {}

    class FakeLLM:
        def __init__(self, **kwargs):
            calls["init"] = kwargs

        def generate(self, prompts, sampling, lora_request=None, use_tqdm=True):
            calls["generate"] = (prompts, sampling, lora_request)
            out = []
            for n in range(len(prompts)):
                ids = [7, 8, 1] if n == 0 else [7, 8, 9]  # first stops at <eos> (id 1), second hits the budget
                reason = "stop" if n == 0 else "length"
                out.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, finish_reason=reason)]))
            return out

    class FakeLoRARequest:
        def __init__(self, name, int_id, path):
            self.args = (name, int_id, path)

    vllm = types.ModuleType("vllm")
    vllm.LLM = FakeLLM
    vllm.SamplingParams = lambda **kw: kw
    lora_mod = types.ModuleType("vllm.lora.request")
    lora_mod.LoRARequest = FakeLoRARequest
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora_mod)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    root = world["root"]
    model, tok = G.load_model(root / "base", root / "adapter", "cuda", "bfloat16", backend="vllm")
    assert isinstance(model, G.VllmModel)
    assert calls["init"]["enable_lora"] and calls["init"]["max_lora_rank"] == 4  # r of the test adapter
    assert model.lora_request.args[2] == str((root / "adapter").resolve())
    prompts = ["<bos>질문 하나", "<bos>질문 둘"]
    recs = G.generate(model, tok, prompts, max_new_tokens=3, batch_size=8, prefill_tokens=4096)
    sent, sampling, lora = calls["generate"]
    assert (
        sampling["temperature"] == 0.0
        and sampling["max_tokens"] == 3
        and tok.eos_token_id in sampling["stop_token_ids"]
    )
    assert lora is model.lora_request
    assert sent[0]["prompt_token_ids"].count(tok.bos_token_id) == 1  # the template's BOS only
    assert [r["hit_eos"] for r in recs] == [True, False]
    assert [r["new_tokens"] for r in recs] == [3, 3]  # 2 tokens + EOS; 3 tokens, no EOS
    assert recs[0]["answer"] == tok.decode([7, 8]) and set(recs[0]) == {
        "answer",
        "new_tokens",
        "hit_eos",
        "prompt_tokens",
        "latency_s",
    }


# ---------------------------------------------------------------- LLM judge against a local HTTP server
class ChatServer:
    """An OpenAI-compatible /chat/completions stand-in on 127.0.0.1 with scripted replies."""

    def __init__(self, replies):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.replies = replies  # callable(request_json, n) -> (status, content | None, delay_s)
        self.requests: list[tuple[dict, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((dict(self.headers), body))
                status, content, delay = server.replies(body, len(server.requests))
                import time

                time.sleep(delay)
                payload = {"choices": [{"message": {"role": "assistant", "content": content}}]}
                data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                self.send_error(404)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def judge_params(url: str, **over) -> dict:
    return {
        "enabled": True,
        "base_url": url,
        "model": "judge-test",
        "api_key_env": "TEST_JUDGE_KEY",
        "timeout_s": 2,
        "max_retries": 2,
        "retry_backoff_s": 0.01,
        "max_tokens": 50,
        "concurrency": 2,
        **over,
    }


def by_gold(body: dict, n: int):
    """Verdict 1 when the model answer contains the gold answer (or abstains on an unanswerable question)."""
    user = body["messages"][1]["content"]
    gold = user.split("정답: ")[1].split("\n")[0]
    answer = user.split("모델 답변: ")[1].split("\n")[0]
    ok = gold in answer
    return 200, f'```json\n{{"correct": {int(ok)}, "reason": "정답 {"포함" if ok else "불일치"}"}}\n```', 0


def test_parse_verdict_variants():
    from stages.common import judge as J

    assert J.parse_verdict('{"correct": 1, "reason": "맞음"}') == (1, "맞음")
    assert J.parse_verdict('채점 결과:\n```json\n{"correct": 0, "reason": "주소가 다름"}\n```') == (0, "주소가 다름")
    assert J.parse_verdict('판단: {"correct": "예", "reason": "a {b}"} 끝') == (1, "a {b}")
    assert J.parse_verdict('{"correct": true}') == (1, "")
    assert J.parse_verdict("{'correct': 0, 'reason': '틀림',}") == (0, "틀림")  # almost-JSON
    assert J.parse_verdict("정답입니다") is None
    assert J.parse_verdict('{"correct": 0.5}') is None


def test_judge_client_auth_retries_and_verdicts(monkeypatch, caplog):
    from stages.common import judge as J

    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-secret-123")

    def flaky(body, n):
        if n == 1:
            return 503, None, 0  # retried
        if n == 2:
            return 200, "잘 모르겠습니다", 0  # unparseable: asked again
        return by_gold(body, n)

    with ChatServer(flaky) as srv, caplog.at_level("INFO"):
        client = J.JudgeClient(J.JudgeConfig.from_params(judge_params(srv.url)))
        v = client.judge("케이블카 주소는?", "문화재길 166", "주소는 문화재길 166입니다 [c001]", True)
    assert v == {"correct": 1, "reason": "정답 포함"}
    assert len(srv.requests) == 3
    headers, body = srv.requests[-1]
    assert headers["Authorization"] == "Bearer sk-secret-123"
    assert body["model"] == "judge-test" and body["temperature"] == 0 and body["max_tokens"] == 50
    assert "답이 없는 질문" not in body["messages"][1]["content"]  # answerable rubric
    assert "sk-secret-123" not in caplog.text
    assert "답이 없는 질문" in J.build_messages("q", "없음", "a", answerable=False)[1]["content"]


def test_judge_errors_are_one_clear_line(monkeypatch):
    from stages.common import judge as J

    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-secret-123")
    with ChatServer(lambda b, n: (401, None, 0)) as srv:
        client = J.JudgeClient(J.JudgeConfig.from_params(judge_params(srv.url)))
        with pytest.raises(UserError, match="failed after 1 attempt.*HTTP 401") as err:
            client.judge("q", "g", "a", True)
        assert len(srv.requests) == 1  # 401 is not retried
    assert "sk-secret" not in str(err.value)
    with ChatServer(lambda b, n: (200, '{"correct": 1}', 1.0)) as srv:
        cfg = J.JudgeConfig.from_params(judge_params(srv.url, timeout_s=0.2, max_retries=1))
        with pytest.raises(UserError, match="failed after 2 attempt.*timed out after 0.2 s"):
            J.JudgeClient(cfg).judge("q", "g", "a", True)
    with ChatServer(lambda b, n: (200, "no verdict here", 0)) as srv:
        cfg = J.JudgeConfig.from_params(judge_params(srv.url, max_retries=1))
        v = J.JudgeClient(cfg).judge("q", "g", "a", True)
        assert v["correct"] is None and "unparseable" in v["reason"]
    monkeypatch.delenv("TEST_JUDGE_KEY")
    with pytest.raises(UserError, match="TEST_JUDGE_KEY .* is not set"):
        J.JudgeClient(J.JudgeConfig.from_params(judge_params("http://127.0.0.1:9/v1")))
    with pytest.raises(UserError, match="evaluate.judge.base_url must start with http"):
        J.JudgeConfig.from_params(judge_params("127.0.0.1:8000"))
    with pytest.raises(UserError, match="missing evaluate.judge.model"):
        J.JudgeConfig.from_params({k: v for k, v in judge_params("http://x").items() if k != "model"})


def test_cli_with_judge_stores_verdicts_and_agreement(world, monkeypatch):
    """Judge on: every prediction gets a verdict, metrics get judge correct + agreement with `correct`."""
    root = world["root"]
    monkeypatch.setenv("TEST_JUDGE_KEY", "k")
    with ChatServer(by_gold) as srv:
        (root / "judge.yaml").write_text(params_yaml(judge=judge_params(srv.url)), encoding="utf-8")
        preds, metrics = _cli(world, "judged", params="judge.yaml")
        assert len(srv.requests) == 3
    for p in preds:
        assert p["judge"]["correct"] in (0, 1) and p["judge"]["reason"]
        assert p["scores"]["judge_correct"] == bool(p["judge"]["correct"])
    j = metrics["judge"]
    assert j["n_judged"] == 3 and j["n_unparsed"] == 0
    assert j["correct"] == pytest.approx(sum(p["judge"]["correct"] for p in preds) / 3, abs=1e-4)
    agree = sum(p["scores"]["correct"] == p["scores"]["judge_correct"] for p in preds) / 3
    assert j["agreement"] == pytest.approx(agree, abs=1e-4)
    # judge off (the default): no judge block at all
    _, off = _cli(world, "baseline")
    assert "judge" not in off


def test_dvc_matrix_runs_every_model_on_both_sets_and_baselines_ignore_training():
    """dvc.yaml: evaluate@<model>-<testset> for 3 x 2; a training change (adapter, train params) never reruns a baseline."""
    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text(encoding="utf-8"))
    stage = spec["stages"]["evaluate"]
    items = stage["foreach"]
    assert {(v["model"], v["testset"]) for v in items.values()} == {(m, t) for m in E.MODELS for t in E.TESTSETS}
    assert all(key == f"{v['model']}-{v['testset']}" for key, v in items.items())
    assert not any(str(p).startswith("train") for p in stage["do"]["params"])
    for v in items.values():
        deps = [
            d.replace("${item.weights}", v["weights"]).replace("${item.questions}", v["questions"])
            for d in stage["do"]["deps"]
        ]
        uses_adapter = any(d.startswith("models/adapter") for d in deps) or "adapter" in v["adapter_arg"]
        assert uses_adapter == (v["model"] == "finetuned"), v
    assert "${item.model}/${item.testset}" in stage["do"]["cmd"] and "--testset ${item.testset}" in stage["do"]["cmd"]


def test_answers_end_at_the_first_line_break_after_content(tiny_tokenizer):
    """Every model's answer ends at its first line break after content (evaluate.stop_at_line_end): the check
    ends exactly those rows during generation, and the kept text is the first line."""
    from stages.common.generation import cut_at_line_end, line_end_check

    assert cut_at_line_end("주소는 제천시 의림대로 33입니다. [c001]\n질문: 다음") == (
        "주소는 제천시 의림대로 33입니다. [c001]",
        True,
    )
    assert cut_at_line_end("\n\n답입니다.\n더") == ("\n\n답입니다.", True)  # leading blank lines are not an ending
    assert cut_at_line_end("끝나지 않은 답") == ("끝나지 않은 답", False)
    ends_answer = line_end_check(tiny_tokenizer)
    rows = ["answer\n", "\n\n", "answer", "\nanswer\n"]
    ids = [tiny_tokenizer(t, add_special_tokens=False)["input_ids"] for t in rows]
    assert [ends_answer(x) for x in ids] == [True, False, False, True]


def _encoder(tok, prompts):
    def encode(rows):
        enc = tok([prompts[i] for i in rows], add_special_tokens=False, padding=True, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    return encode


def test_greedy_decode_gives_generates_tokens_and_drops_ended_rows(tiny_model_dir):
    """greedy_decode = model.generate(do_sample=False) token for token on left-padded prompts of mixed lengths,
    some longer than the sliding window (64 in the tiny model), while a row that ended leaves the batch."""
    import torch
    from transformers import GenerationConfig

    model, tok = G.load_model(tiny_model_dir, None, "cpu", "float32")
    prompts = ["user model\n" * n for n in (1, 9, 30, 4)]  # 3 to ~90 tokens
    enc = tok(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
    eos = set(G.eos_ids(model, tok))
    cfg = GenerationConfig(max_new_tokens=12, do_sample=False, eos_token_id=sorted(eos), pad_token_id=tok.pad_token_id)
    rows, encode = [0, 1, 2, 3], _encoder(tok, prompts)
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    with torch.inference_mode():
        reference = model.generate(**enc, generation_config=cfg)[:, enc["input_ids"].shape[1] :].tolist()
        decoded = G.greedy_decode(model, encode, rows, ids, 12, eos, batch_size=4, prefill_tokens=4 * 100)
    assert [G.split_generation(r, sorted(eos)) for r in reference] == [decoded[i] for i in rows]
    assert all(len(ids) == 12 for ids, hit in decoded.values() if not hit)  # the budget binds rows that never end

    # A row ended by ends_answer stops there; the others go on unchanged.
    row, heads = next(
        (i, heads)
        for n in range(1, 12)
        for heads in [[tuple(decoded[r][0][:n]) for r in rows]]
        for i, h in enumerate(heads)
        if len(h) == n and heads.count(h) == 1 and len(decoded[i][0]) > n
    )
    with torch.inference_mode():
        cut = G.greedy_decode(model, encode, rows, ids, 12, eos, 4, 400, lambda new: tuple(new) == heads[row])
    assert cut[row] == (list(heads[row]), False)
    assert {r: v for r, v in cut.items() if r != row} == {r: v for r, v in decoded.items() if r != row}


def _generated_alone(model, tok, prompts, max_new_tokens):
    """Each prompt through model.generate() on its own (no padding): (new ids without EOS, whether an EOS came)."""
    import torch
    from transformers import GenerationConfig

    eos = sorted(G.eos_ids(model, tok))
    cfg = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=tok.pad_token_id
    )
    out = []
    with torch.inference_mode():
        for prompt in prompts:
            enc = tok([prompt], add_special_tokens=False, return_tensors="pt")
            new = model.generate(**enc, generation_config=cfg)[0, enc["input_ids"].shape[1] :].tolist()
            out.append(G.split_generation(new, eos))
    return out


@pytest.mark.parametrize("room", [64, 1])
def test_continuous_batching_gives_each_prompt_its_own_tokens(tiny_model_dir, monkeypatch, room):
    """Rows that join a running batch (cache and mask left-padded to a common width) and rows that leave it (cache
    trimmed to the columns still used) get the tokens each prompt gets when generated alone, across the sliding
    window (64 in the tiny model); with one column of room the decode cache is moved at every step."""
    import torch

    monkeypatch.setattr(G, "ROOM_COLUMNS", room)

    model, tok = G.load_model(tiny_model_dir, None, "cpu", "float32")
    prompts = [*("user model\n" * n for n in (1, 2, 8, 13)), ("model user " * 7 + "\n") * 2, "hello world "]
    prompts += ["user model\n" * 30, "hello world " * 20]  # 11 to 330 tokens
    eos = set(G.eos_ids(model, tok))
    budget = 10
    alone = _generated_alone(model, tok, prompts, budget)

    # A row's answer ends where its token changes: rows end after 2 to 10 tokens, so places free up at different
    # steps and later prompts join mid-way.
    def ends_answer(ids):
        return len(ids) > 1 and ids[-1] != ids[-2]

    def cut(ids, hit):
        n = next((n for n in range(1, len(ids) + 1) if ends_answer(ids[:n])), None)
        return (ids[:n], False) if n is not None else (ids, hit)

    expected = [cut(ids, hit) for ids, hit in alone]
    assert len({len(ids) for ids, _ in expected}) > 2
    ended = []
    seconds = {}
    joins = []
    real_merge = G.merge_states

    def spy_merge(running, joining):
        if running is not None and joining is not None:
            joins.append(
                (
                    list(running.rows),
                    list(joining.rows),
                    running.attention_mask.shape[1],
                    joining.attention_mask.shape[1],
                )
            )
        return real_merge(running, joining)

    monkeypatch.setattr(G, "merge_states", spy_merge)
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
    with torch.inference_mode():
        decoded = G.greedy_decode(
            model, _encoder(tok, prompts), order, ids, budget, eos, 3, 100, ends_answer, ended.append, seconds
        )
    assert [decoded[i] for i in range(len(prompts))] == expected
    assert sorted(ended) == list(range(len(prompts)))
    assert sorted(seconds) == list(range(len(prompts))) and all(t > 0 for t in seconds.values())  # latency shares
    assert joins and any(a != b for *_, a, b in joins)  # prompts joined rows of another cache width


def test_shared_prompt_prefix_is_computed_once_with_the_same_tokens(tiny_model_dir):
    """Prompts starting with the same tokens (system prompt, few-shot turns) reuse one computed prefix: each row's
    padding and prefix are laid into its cache, across the sliding window (64), and the tokens are those each
    prompt gets alone."""
    import os

    import torch

    model, tok = G.load_model(tiny_model_dir, None, "cpu", "float32")
    start = "user model\n" * 9  # ~100 tokens, longer than the window
    prompts = [start + "hello world " * n + "model" for n in (1, 4, 9, 70)]
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    lengths = [len(x) for x in ids]
    eos = set(G.eos_ids(model, tok))
    alone = _generated_alone(model, tok, prompts, 8)
    with torch.inference_mode():
        prefix = G.shared_prefix(model, ids)
        assert prefix.length == len(os.path.commonprefix(ids)) > 64
        assert G.shared_prefix(model, ids[:1]) is None and G.shared_prefix(model, [ids[0], [7] + ids[1]]) is None
        # One prefill of all four (the shorter rows padded past the whole prefix), then three and one.
        for prefill_tokens in (10_000, 2 * max(lengths)):
            decoded = G.greedy_decode(
                model, _encoder(tok, prompts), [0, 1, 2, 3], ids, 8, eos, 4, prefill_tokens, prefix=prefix
            )
            assert [decoded[i] for i in range(4)] == alone


def test_prefill_order_puts_prompts_sharing_a_prefix_together_after_the_others():
    root = [1, 2]
    ids = [
        root + [5, 5, 5, 9],  # shares [5, 5, 5] with 3: clustered
        root + [7],  # loose
        root + [6, 6, 6, 6, 6, 1],  # shares [6, 6] only with 4: below min_shared, loose
        root + [5, 5, 5, 8, 8],
        root + [6, 6, 0],
    ]
    assert G.prefill_order(ids, len(root), 3) == [1, 4, 2, 3, 0]  # loose shortest first, then in token order
    assert G.prefill_order(ids, len(root), 0) == [1, 4, 0, 3, 2]  # sharing off: shortest first


def test_group_prefixes_are_computed_once_and_chained_with_the_same_tokens(tiny_model_dir, monkeypatch):
    """Prompts sharing retrieved chunks past the common start (a radix-style prefix cache): each prefill group's
    shared prefix goes through the model once, starting from what it shares of the previous group's prefix,
    across the sliding window (64), and every prompt gets the tokens it gets alone."""
    import torch

    model, tok = G.load_model(tiny_model_dir, None, "cpu", "float32")
    root = "user model\n" * 9  # ~100 tokens, longer than the window
    chunk = "hello world " * 30  # what both clusters share past the root
    prompts = [root + chunk + "model user " * 10 + q for q in ("hello", "world world", "user")]
    prompts += [root + chunk + "user user " * 10 + q for q in ("hello", "model model")]
    prompts += [root + "world " * n for n in (3, 7)]  # share only the root
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    eos = set(G.eos_ids(model, tok))
    alone = _generated_alone(model, tok, prompts, 8)
    extensions = []
    real_extend = G.extend_prefix

    def spy_extend(model, base, prefix_ids):
        extensions.append((base.length if base is not None else 0, len(prefix_ids)))
        return real_extend(model, base, prefix_ids)

    with torch.inference_mode():
        prefix = G.shared_prefix(model, ids)
        root_length = prefix.length
        monkeypatch.setattr(G, "extend_prefix", spy_extend)
        order = G.prefill_order(ids, root_length, 20)
        assert sorted(order[:2]) == [5, 6]  # the two loose prompts first
        decoded = G.greedy_decode(
            model, _encoder(tok, prompts), order, ids, 8, eos, 8, 10_000, prefix=prefix, min_shared=20
        )
        assert [decoded[i] for i in range(len(prompts))] == alone
        # Two groups (the clusters), each prefix computed once; the second starts from the chunk both share.
        chunk_end = G.common_length(ids[0], ids[3])
        assert len(extensions) == 2 and extensions[0][0] == root_length
        assert extensions[1][0] == chunk_end > root_length + 20
        assert {n for _, n in extensions} == {G.common_length(ids[0], ids[2]), G.common_length(ids[3], ids[4])}
        # Sharing off: the same tokens, no group prefix.
        extensions.clear()
        plain = G.greedy_decode(model, _encoder(tok, prompts), order, ids, 8, eos, 8, 10_000, prefix=prefix)
        assert plain == decoded and extensions == []


def test_extend_prefix_equals_the_prefix_computed_in_one_pass(tiny_model_dir):
    import torch

    model, tok = G.load_model(tiny_model_dir, None, "cpu", "float32")
    ids = tok("user model\n" * 9 + "hello world " * 40, add_special_tokens=False)["input_ids"]
    assert len(ids) > 2 * 64
    with torch.inference_mode():
        whole = G.extend_prefix(model, None, ids)
        stepped = G.extend_prefix(model, G.extend_prefix(model, None, ids[:70]).cut(50), ids)
    assert stepped.ids == whole.ids and whole.length == len(ids)
    for a, b in zip(whole.keys + whole.values, stepped.keys + stepped.values, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def test_decode_cache_appends_in_place_and_keeps_the_sliding_window(tiny_model_dir):
    """The decode cache's layers hold what DynamicCache's would (a sliding layer its last window - 1 columns), and
    a step writes into the room after them instead of copying the cache."""
    import torch

    model, _ = G.load_model(tiny_model_dir, None, "cpu", "float32")
    cache = G.decode_cache(model)
    full = next(layer for layer in cache.layers if not layer.is_sliding)
    sliding = next(layer for layer in cache.layers if layer.is_sliding)
    window = sliding.sliding_window
    steps = [torch.randn(2, 1, n, 4) for n in (window + 5, 1, 1, G.ROOM_COLUMNS + 3)]
    seen = torch.cat(steps, dim=-2)
    for layer in (full, sliding):
        storages = set()
        for step in steps:
            keys, values = layer.update(step, -step)
            storages.add(layer.keys.untyped_storage().data_ptr())
        assert len(storages) == 2  # allocated once, grown once when the room ran out: no copy per step
        assert torch.equal(keys, seen[:, :, -keys.shape[-2] :]) and torch.equal(values, -keys)
    assert torch.equal(full.keys, seen)
    assert torch.equal(sliding.keys, seen[:, :, -(window - 1) :]) and sliding.cumulative_length == seen.shape[-2]


@pytest.mark.parametrize("id_after_text", [False, True])
def test_answers_are_scored_against_the_context_as_the_prompt_showed_it(monkeypatch, id_after_text):
    from stages.common import metrics as M

    seen = []
    monkeypatch.setattr(M, "score_example", lambda pred, context, cfg: seen.append(context) or {})
    chunk = {"chunk_id": "c007", "section_path": "PART 1 > 시티투어", "text": "요금 30,000원"}
    question = {"id": "q1", "question": "요금은?", "type": "factual", "answerable": True, "answer": "30,000원입니다."}
    generation = {
        "answer": "30,000원입니다. [c007]",
        "latency_s": 0.1,
        "new_tokens": 5,
        "prompt_tokens": 9,
        "hit_eos": True,
    }
    layout = PromptLayout("system", 1200, id_after_text=id_after_text)
    E.make_predictions([question], [[chunk]], [generation], None, layout)
    assert seen == ["[c007] PART 1 > 시티투어\n요금 30,000원" + (" [c007]" if id_after_text else "")]
