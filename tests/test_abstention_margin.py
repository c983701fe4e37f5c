"""scripts/abstention_margin.py: the A/R/U prompts it builds, the margin's sign, and its summary."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import abstention_margin as AM  # noqa: E402


class FakeRetriever:
    def __init__(self, ranking: dict[str, list[str]]):
        self.ranking = ranking
        self.by_id = {c: {"chunk_id": c} for ids in ranking.values() for c in ids}

    def rank(self, queries, k, method):
        return [self.ranking[q][:k] for q in queries]


def test_gold_removed_prompt_takes_the_next_ranked_chunks_and_a_missed_gold_gives_no_A():
    questions = [
        {"id": "q1", "question": "a?", "answerable": True, "chunk_id": "c2"},
        {"id": "q2", "question": "b?", "answerable": True, "chunk_ids": ["c9", "c1"]},  # c9 ranked 5th: missed
        {"id": "q3", "question": "c?", "answerable": False, "chunk_id": None},
    ]
    ranking = {
        "a?": ["c1", "c2", "c3", "c4", "c5"],
        "b?": ["c1", "c2", "c3", "c4", "c9"],
        "c?": ["c7", "c8", "c1", "c2", "c3"],
    }
    rows = AM.prompts_by_kind(questions, FakeRetriever(ranking), 2, "hybrid", 3)
    got = [(q["id"], [c["chunk_id"] for c in ctx], kind) for q, ctx, kind in rows]
    assert got == [
        ("q1", ["c1", "c2"], "A"),
        ("q1", ["c1", "c3"], "R"),
        ("q2", ["c1", "c2"], "A"),  # c1 is one of its golds: retrieved
        ("q2", ["c2", "c3"], "R"),  # every gold removed, c9 too
        ("q3", ["c7", "c8"], "U"),
    ]


def test_summary_rates_and_auc():
    rows = [{"kind": "A", "margin": m} for m in (-3.0, -2.0, 0.5)]
    rows += [{"kind": "R", "margin": m} for m in (-2.5, -1.0)]
    rows += [{"kind": "U", "margin": m} for m in (1.0, 2.0)]
    got = AM.summary(rows)
    assert got["A"] == {"n": 3, "abstain_rate": pytest.approx(1 / 3, abs=1e-4)}
    assert got["R"]["abstain_rate"] == 0.0 and got["U"]["abstain_rate"] == 1.0
    assert got["auc_A_vs_U"] == 1.0  # every U margin above every A margin
    assert got["auc_A_vs_R"] == pytest.approx(3 / 6, abs=1e-4)  # R above A in (-2.5>-3), (-1>-3), (-1>-2)


def test_margin_is_positive_exactly_when_greedy_starts_the_abstention(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = ["hello there", "abc", "the brochure says"]
    abstain = "xyz"
    first = tokenizer(abstain, add_special_tokens=False)["input_ids"][0]
    # make the abstention's first token the greedy choice after some prompts only: bias its logit
    with torch.no_grad():
        base = AM.margins(model, tokenizer, prompts, abstain)
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
        low, mid = sorted(base)[:2]
        model.lm_head.bias[first] = -(low + mid) / 2  # the margins move by the bias: two end above 0
        shifted = AM.margins(model, tokenizer, prompts, abstain)
    for prompt, m in zip(prompts, shifted, strict=True):
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        greedy = model(input_ids=ids).logits[0, -1].argmax().item()
        assert (m > 0) == (greedy == first)
    assert sum(m > 0 for m in shifted) == 2


def test_a_missing_split_is_a_one_line_error_before_any_model_loads(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        AM.run_cli(AM.main, ["--qa", str(tmp_path), "--split", "validation", "--out", str(tmp_path / "m.json")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1]
        == f"error: {tmp_path / 'validation.jsonl'}: not found (run the synthesize stage, or pick a split of {tmp_path})"
    )
    assert not (tmp_path / "m.json").exists()
