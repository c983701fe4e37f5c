"""scripts/answerability_signals.py: coverage, the out-of-fold fit, the operating point and its errors."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import answerability_signals as AS  # noqa: E402


def test_coverage_counts_the_whole_context_and_the_best_chunk():
    question = "의림지 주차장 요금은 얼마인가요?"
    whole, best = AS.coverage(question, ["의림지는 제천의 저수지다.", "주차장은 무료로 운영된다."])
    assert (whole, best) == (0.5, 0.25)  # 의림지 and 주차장 backed, by one chunk each; 요금 and 얼마 nowhere
    assert AS.coverage(question, ["의림지 주차장 요금은 얼마인가요?"]) == (1.0, 1.0)
    assert AS.coverage(question, []) == (0.0, 0.0)


def test_operating_point_caps_abstentions_on_A_and_counts_what_it_catches():
    kinds = ["A"] * 10 + ["R"] * 4 + ["U"] * 2
    scores = [float(i) for i in range(10)] + [9.5, 9.6, 1.0, 2.0] + [20.0, 0.5]
    got = AS.operating_point(scores, kinds, max_a=0.1)
    assert got["A_abstained"] <= 0.1
    assert got["threshold"] == 9.0  # the 90th percentile of A, taken from A's own values
    assert got["R_caught"] == 0.5 and got["U_caught"] == 0.5
    assert got["auc_A_vs_U"] == pytest.approx(0.55)  # 20 beats all ten A, 0.5 beats none but 0: (10 + 1) / 20
    assert AS.operating_point([1.0, 2.0], ["R", "U"], 0.15) == {"threshold": None, "A_abstained": None}


def test_out_of_fold_probabilities_separate_a_clean_signal():
    kinds = ["A", "R"] * 20 + ["U"] * 6
    groups = [f"q{i // 2}" for i in range(40)] + [f"u{i}" for i in range(6)]
    features = [[0.1 if k == "A" else 0.9] for k in kinds]
    prob = AS.out_of_fold(features, kinds, groups, folds=5)
    assert AS.operating_point(prob, kinds, 0.15)["auc_A_vs_R"] == 1.0
    assert all(0.0 < p < 1.0 for p in prob)


def test_missing_margins_file_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "signals.json"
    with pytest.raises(SystemExit) as exc:
        AS.run_cli(AS.main, ["--margins", str(tmp_path / "none.json"), "--out", str(out)])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run scripts/abstention_margin.py first" in err[0]
    assert not out.exists()
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    with pytest.raises(SystemExit):
        AS.run_cli(AS.main, ["--margins", str(other), "--out", str(out)])
    assert "not an abstention_margin.py output" in capsys.readouterr().err


def test_margins_from_another_split_or_index_are_refused(tmp_path, capsys):
    root = Path(__file__).resolve().parents[1]
    if not (root / "data/index").is_dir() or not (root / "data/qa/validation.jsonl").is_file():
        pytest.skip("data/index or data/qa not built (dvc repro index)")
    margins = tmp_path / "margin.json"
    margins.write_text(json.dumps({"split": "validation", "prompts": [{"id": "q0", "kind": "A", "margin": 1.0}]}))
    with pytest.raises(SystemExit) as exc:
        AS.run_cli(
            AS.main,
            [
                "--margins",
                str(margins),
                "--out",
                str(tmp_path / "o.json"),
                "--index",
                str(root / "data/index"),
                "--qa",
                str(root / "data/qa"),
            ],
        )
    assert exc.value.code == 1
    assert "not this split's A/R/U prompts" in capsys.readouterr().err


def test_similarity_is_the_cosine_of_the_best_chunk_and_the_mean():
    best, mean = AS.similarity([2.0, 0.0], [[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    assert best == pytest.approx(1.0)  # the first chunk points the same way, whatever the lengths
    assert mean == pytest.approx((1.0 + 0.0 + 2**-0.5) / 3)
    assert AS.similarity([1.0, 0.0], []) == (0.0, 0.0)
