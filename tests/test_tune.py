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
