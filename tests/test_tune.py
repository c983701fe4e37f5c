"""scripts/tune_on_validation.py: params overrides and the validation split it evaluates on."""

import sys
from pathlib import Path

import pytest

from stages import evaluate as E
from stages.common.io import dump_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import tune_on_validation as T  # noqa: E402


def test_override_sets_nested_values_parsed_as_yaml():
    params = {"sft": {"abstain_share": 0.2}, "profiles": {"cpu": {"train": {"lora_top_layers": 6}}}}
    T.apply_override(params, "sft.abstain_share=0.1")
    T.apply_override(params, "profiles.cpu.train.lora_top_layers=0")
    assert params["sft"]["abstain_share"] == 0.1
    assert params["profiles"]["cpu"]["train"]["lora_top_layers"] == 0


@pytest.mark.parametrize(
    ("dotted", "message"),
    [("sft.abstain_share", "not key=value"), ("sft.abstain=0.1", "no key"), ("nope.x=1", "no params section")],
)
def test_override_rejects_unknown_keys(dotted, message):
    with pytest.raises(SystemExit, match=message):
        T.apply_override({"sft": {"abstain_share": 0.2}}, dotted)


def test_validation_split_is_read_only_when_asked(tmp_path):
    q = {"id": "q1", "question": "?", "answer": "a", "answerable": True, "type": "factual", "chunk_id": "c001"}
    dump_jsonl(tmp_path / "test.jsonl", [q])
    dump_jsonl(tmp_path / "validation.jsonl", [dict(q, id="v1"), dict(q, id="v2")])
    assert [x["id"] for x in E.load_questions(tmp_path, 0)] == ["q1"]
    assert [x["id"] for x in E.load_questions(tmp_path, 0, "validation")] == ["v1", "v2"]


def test_adoption_needs_a_win_on_every_seed_under_the_wrong_abstention_cap():
    ref = {
        13: {"key_fact_recall": 0.526, "wrong_abstention": 0.101},
        14: {"key_fact_recall": 0.517, "wrong_abstention": 0.025},
    }
    # this round's style-balanced candidate: a win on seed 13, a loss on seed 14
    balanced = {
        13: {"key_fact_recall": 0.547, "wrong_abstention": 0.008},
        14: {"key_fact_recall": 0.456, "wrong_abstention": 0.134},
    }
    adopted, why = T.verdict(balanced, ref, 0.15)
    assert not adopted and "seed 14: key-fact recall 0.456 <= 0.517" in why and "seed 13" not in why
    better = {
        13: {"key_fact_recall": 0.6, "wrong_abstention": 0.1},
        14: {"key_fact_recall": 0.6, "wrong_abstention": 0.1},
    }
    assert T.verdict(better, ref, 0.15) == (True, "wins on seeds 13, 14")
    assert not T.verdict(better, ref, 0.05)[0]  # over the cap
    assert T.verdict(better, {12: ref[13]}, 0.15) == (False, "no seed in common with the reference")
    assert T.verdict({None: better[13]}, {None: ref[13]}, 0.15) == (True, "wins on one run only (use --seeds)")


def test_mean_row_averages_each_metric_over_seeds():
    rows = [
        {"n": 136, "key_fact_recall": 0.5, "wrong_abstention": 0.1},
        {"n": 136, "key_fact_recall": 0.4, "wrong_abstention": None},
    ]
    mean = T.mean_row("x", rows)
    assert mean["candidate"] == "x (mean of 2)" and mean["key_fact_recall"] == 0.45 and mean["wrong_abstention"] is None


def test_reference_must_be_a_candidate(tmp_path):
    with pytest.raises(SystemExit, match="--reference 'current' is not a candidate"):
        T.main(["--out", str(tmp_path), "--reference", "current", "--candidate", "balanced", "sft.balance_styles=true"])
    assert not any(tmp_path.iterdir())  # nothing ran


def test_a_time_saving_change_is_adopted_when_no_mean_is_worse_by_more_than_the_margin():
    ref = {
        13: {"key_fact_recall": 0.40, "abstain_recall": 0.80, "citation_ok": 0.85, "wrong_abstention": 0.10,
             "train_seconds": 1300},
        14: {"key_fact_recall": 0.50, "abstain_recall": 0.70, "citation_ok": 0.80, "wrong_abstention": 0.05,
             "train_seconds": 1340},
    }  # fmt: skip
    # seed 14 alone loses 0.08 key-fact recall; the means (0.42 vs 0.45) stay within 0.05
    faster = {
        13: dict(ref[13], key_fact_recall=0.42, train_seconds=900),
        14: dict(ref[14], key_fact_recall=0.42, train_seconds=910),
    }
    adopted, why = T.verdict_noninferior(faster, ref, 0.05)
    assert adopted and "key_fact_recall 0.420 vs 0.450" in why and "train 905 s vs 1320 s" in why
    assert not T.verdict_noninferior(faster, ref, 0.02)[0]
    more_wrong = {s: dict(r, wrong_abstention=r["wrong_abstention"] + 0.06) for s, r in faster.items()}
    adopted, why = T.verdict_noninferior(more_wrong, ref, 0.05)
    assert not adopted and "wrong_abstention 0.135 vs 0.075" in why
    slower = {s: dict(r, train_seconds=2000) for s, r in faster.items()}
    adopted, why = T.verdict_noninferior(slower, ref, 0.05)
    assert not adopted and "no time saved" in why
    assert T.verdict_noninferior(faster, {12: ref[13]}, 0.05) == (False, "no seed in common with the reference")


def test_natural_validation_file_is_optional_and_must_exist_when_named(tmp_path):
    assert T.natural_validation_file({}) is None
    assert T.natural_validation_file({"tune": {"natural_validation": ""}}) is None
    assert T.natural_validation_file({"tune": {"natural_validation": "data/tune/natural_validation.jsonl"}}) == Path(
        "data/tune/natural_validation.jsonl"
    )
    with pytest.raises(SystemExit, match="tune.natural_validation: nope.jsonl not found"):
        T.natural_validation_file({"tune": {"natural_validation": "nope.jsonl"}})


def test_questions_whose_gold_chunk_is_not_a_validation_chunk_are_named():
    chunks = [
        {"chunk_id": "c1", "pages": [3], "title": "", "text": "카페 너른 70대 주차장"},
        {"chunk_id": "c2", "pages": [4], "title": "", "text": "서울관광호텔 043-651-8000"},
    ]
    records = [
        {"id": "n201", "answerable": True, "gold_pages": [3], "key_facts": ["70대"]},
        {"id": "n202", "answerable": True, "gold_pages": [4], "key_facts": ["043-651-8000"]},
        {"id": "n203", "answerable": True, "gold_pages": [9], "key_facts": ["없는 쪽"]},  # no chunk at all
        {"id": "n204", "answerable": False, "gold_pages": [4], "key_facts": []},
    ]
    assert T.outside_validation(records, chunks, {"c1"}) == ["n202", "n203"]
    assert T.outside_validation(records, chunks, {"c1", "c2"}) == ["n203"]


def test_metric_values_reads_nested_paths_and_the_natural_columns_mirror_the_template_ones():
    metrics = {"answer": {"key_fact_recall": 0.4}, "abstention": {"wrong_rate": 0.17, "recall": 0.1}}
    row = T.metric_values(metrics, T.NATURAL_COLUMNS)
    assert row["nat_key_fact_recall"] == 0.4 and row["nat_wrong_abstention"] == 0.17 and row["nat_correct"] is None
    assert [label for label, _ in T.NATURAL_COLUMNS] == [
        f"nat_{label}" for label, _ in T.COLUMNS if label != "abstain_f1"
    ]


def test_the_script_finds_the_stages_package_when_run_from_anywhere(tmp_path):
    """`python scripts/tune_on_validation.py` puts the repository on sys.path: its checks import stages.common."""
    import subprocess

    script = Path(T.__file__).resolve()
    code = f"import runpy; runpy.run_path({str(script)!r}); import stages.common.natural; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env={"PATH": ""})
    assert out.stdout.strip() == "ok", out.stderr[-500:]
