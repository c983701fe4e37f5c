import pytest
import yaml

from stages.common import korean, params, prompting
from stages.common.errors import UserError
from stages.common.io import atomic_dir, read_jsonl, write_jsonl


def _write(tmp_path, data):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_section_merges_shared_and_profile_keys(tmp_path):
    path = _write(
        tmp_path, {"profile": "cpu", "train": {"lora_r": 8}, "profiles": {"cpu": {"train": {"max_steps": 3}}}}
    )
    assert params.load(path, "train") == {"profile": "cpu", "train": {"lora_r": 8, "max_steps": 3}}


def test_key_in_both_places_is_an_error_naming_it(tmp_path):
    path = _write(tmp_path, {"profile": "cpu", "train": {"lora_r": 8}, "profiles": {"cpu": {"train": {"lora_r": 4}}}})
    with pytest.raises(UserError, match=r"train\.lora_r"):
        params.load(path, "train")


def test_unknown_profile_lists_known_ones(tmp_path):
    path = _write(tmp_path, {"profile": "gpu", "profiles": {"cpu": {}, "runpod": {}}})
    with pytest.raises(UserError, match="known: cpu, runpod"):
        params.load(path)


def test_require_rejects_bool_for_int():
    with pytest.raises(UserError, match="train.lora_r must be int"):
        params.require({"lora_r": True}, "lora_r", int, "train")
    assert params.require({"lora_r": 8}, "lora_r", int, "train") == 8


def test_repo_params_resolve_for_every_profile():
    raw = params.load_raw("params.yaml")
    for name in raw["profiles"]:
        raw["profile"] = name
        for section in ("parse", "chunk", "synthesize", "retrieval", "sft", "train", "evaluate", "index", "model"):
            params.section(raw, section)  # raises on overlap


def test_repo_params_match_the_schema():
    """Every key in the committed params.yaml is registered in stages/common/params_schema.py with its type."""
    from stages.common import params_schema

    params_schema.load_registries()  # choices such as retrieval.method too
    raw = params.load_raw("params.yaml")
    assert params.check_all(raw) > 100


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": {"lora_rr": 16}}, r"unknown key train\.lora_rr \(did you mean train\.lora_r\?\)"),
        (
            {"profiles": {"cpu": {}, "runpod": {"train": {"sequence_lenn": 8}}}},  # a profile that is not active
            r"unknown key profiles\.runpod\.train\.sequence_lenn \(did you mean profiles\.runpod\.train\.sequence_len\?\)",
        ),
        ({"train": {"zzz": 1}}, r"unknown key train\.zzz \(not in stages/common/params_schema\.py"),
        ({"train": {"lora_r": "abc"}}, r"^params: train\.lora_r must be int, got 'abc'$"),
        ({"train": {"lora_r": True}}, r"train\.lora_r must be int, got True"),
        ({"train": {"lora_r": "16"}}, r"train\.lora_r must be int, got '16' \(a number in quotes is text"),
        ({"train": {"learning_rate": "2e-4"}}, r"learning_rate must be float \(a number\), got '2e-4' \(YAML reads"),
        ({"train": {"lora_target_modules": ["q_proj", 3]}}, r"lora_target_modules must be a list of str"),
        (
            {"synthesize": {"split": {"train": 0.7, "tset": 0.3}}},
            r"synthesize\.split\.tset \(did you mean .*split\.test",
        ),
    ],
)
def test_schema_names_the_bad_key(tmp_path, data, message):
    base = {"profile": "cpu", "profiles": {"cpu": {}}}
    path = _write(tmp_path, {**base, **data})
    with pytest.raises(UserError, match=message):
        params.load(path, "synthesize" if "synthesize" in data else "train")
    with pytest.raises(UserError, match=message):
        params.check_all(params.load_raw(path))


@pytest.mark.parametrize(
    ("section", "data", "message"),
    [
        ("sft", {"sft": {"abstain_share": 1.5}}, r"^params: sft\.abstain_share must be \[0, 1\], got 1\.5$"),
        ("train", {"train": {"lora_r": 0}}, r"^params: train\.lora_r must be > 0, got 0$"),
        ("train", {"train": {"max_steps": -1}}, r"^params: train\.max_steps must be >= 0, got -1$"),
        (
            "train",
            {"train": {"dtype": "fp8"}},
            r"^params: train\.dtype must be one of auto, bfloat16, float32, float16, got 'fp8'$",
        ),
        (
            "retrieval",
            {"retrieval": {"method": "bm26"}},
            r"retrieval\.method must be one of bm25, dense, hybrid, dense_ft",
        ),
        (
            "retrieval",
            {"retrieval": {"rerank_from": "reranked"}},
            r"rerank_from must be one of bm25, dense, hybrid, dense_ft, hybrid_ft, got",
        ),
        ("retrieval", {"retrieval": {"eval_k": [1, 0]}}, r"^params: retrieval\.eval_k must be >= 1, got 0$"),
        (
            "parse",
            {"parse": {"ocr_engine": "toy"}},
            r"^params: parse\.ocr_engine must be one of tesseract, paddleocr, got 'toy'$",
        ),
        ("synthesize", {"synthesize": {"mix": {"comparison": -0.1}}}, r"synthesize\.mix\.comparison must be \[0, 1\]"),
        (
            "evaluate",
            {"profiles": {"cpu": {}, "runpod": {"evaluate": {"backend": "tgi"}}}},
            r"profiles\.runpod\.evaluate\.backend must be one of transformers, vllm",
        ),
        ("model", {"model": {"source": "ollama"}}, r"model\.source must be one of gguf-package, hub, got 'ollama'"),
        ("demo", {"demo": {"port": 70000}}, r"demo\.port must be \[0, 65535\], got 70000"),
        ("train", {"train": {"lora_dropout": 1.0}}, r"^params: train\.lora_dropout must be \[0, 1\), got 1\.0$"),
    ],
)
def test_ranges_and_choices_are_one_line_errors_naming_the_key(tmp_path, section, data, message):
    from stages.common import params_schema

    params_schema.load_registries()  # a stage has imported the registries it uses
    base = {"profile": "cpu", "profiles": {"cpu": {}}}
    path = _write(tmp_path, {**base, **data})
    with pytest.raises(UserError, match=message):
        params.load(path, section)
    with pytest.raises(UserError, match=message):
        params.check_all(params.load_raw(path))


def test_range_bounds_are_inclusive_where_declared(tmp_path):
    path = _write(
        tmp_path,
        {"profile": "cpu", "profiles": {"cpu": {}}, "sft": {"abstain_share": 1, "max_rows": 0}, "demo": {"port": 0}},
    )
    assert params.load(path, "sft", "demo")["sft"] == {"abstain_share": 1, "max_rows": 0}
    path = _write(tmp_path, {"profile": "cpu", "profiles": {"cpu": {}}, "train": {"lora_dropout": 0.999}})
    assert params.load(path, "train")["train"]["lora_dropout"] == 0.999  # [0, 1): only 1 itself is out


def test_registry_choices_follow_the_registries():
    """Choices named by a registry are read from it: a method registered at run time is valid at once."""
    import importlib

    from stages.common import params_schema as S
    from stages.common import precision, retrieval
    from stages.parse import ocr

    assert S.METHODS.names() == tuple(retrieval.METHODS)
    assert S.FIRST_STAGE.names() == tuple(retrieval.first_stage_methods())
    assert S.OCR_ENGINES.names() == tuple(ocr.ENGINES) == ("tesseract", "paddleocr")
    assert S.DTYPES.names() == precision.DTYPES
    prepare_model = importlib.import_module("stages.prepare_model")  # runs as __main__: its tuples are repeated
    assert (S.MODEL_SOURCES, S.MODEL_DTYPES) == (prepare_model.SOURCES, prepare_model.DTYPES)
    retrieval.register_method("toy_for_schema", lambda r, q, k: [], needs_dense=False)
    try:
        spec = S.fields(S.Retrieval)["method"][1]
        assert not spec.violates("toy_for_schema") and spec.violates("nope")
    finally:
        retrieval.unregister_method("toy_for_schema")


def test_a_missing_key_read_from_a_loaded_section_names_it(tmp_path):
    import dataclasses
    import pickle

    from stages.common import params_schema

    path = _write(tmp_path, {"profile": "cpu", "profiles": {"cpu": {}}, "sft": {"seed": 3}})
    sft = params.load(path, "sft")["sft"]
    assert isinstance(sft, params_schema.Sft) and sft.seed == 3 and sft.get("max_rows") is None
    with pytest.raises(UserError, match=r"^params: missing sft\.max_rows$"):
        _ = sft.max_rows
    with pytest.raises(UserError, match=r"^params: missing sft\.max_rows$"):
        sft["max_rows"]
    with pytest.raises(AttributeError, match="max_row"):  # a typo is not a params error: the key does not exist
        _ = sft.max_row
    with pytest.raises(dataclasses.FrozenInstanceError):
        sft.seed = 4
    again = pickle.loads(pickle.dumps(sft))  # process pools pickle params
    assert again == {"seed": 3} and again.as_dict() == {"seed": 3} and again.section_name == "sft"
    assert type(again) is params_schema.Sft and again.seed == 3


def test_every_declared_key_has_a_doc_and_a_type():
    from stages.common import params_schema as S

    for name, cls in S.SECTIONS.items():
        for key, (kind, spec) in S.fields(cls).items():
            assert spec.doc and "\n" not in spec.doc and "|" not in spec.doc, f"{name}.{key}"
            assert kind in (str, int, float, bool, dict, list[str], list[int]) or S.dataclasses.is_dataclass(kind)


def test_readme_params_reference_is_generated_from_the_schema():
    """README's "Params reference" is `python -m stages.common.params_schema --markdown`: regenerate it on change."""
    from stages.common import params_schema as S

    readme = open("README.md", encoding="utf-8").read()
    start, end = "<!-- params-reference:start -->\n", "<!-- params-reference:end -->"
    assert readme.count(start) == 1 and readme.count(end) == 1
    S.load_registries()
    section = readme.split(start)[1].split(end)[0]
    assert section == S.markdown(), (
        "README params reference is stale: paste `python -m stages.common.params_schema --markdown`"
    )


def test_schema_accepts_ints_for_floats_and_ignores_unregistered_sections(tmp_path):
    path = _write(
        tmp_path, {"profile": "cpu", "profiles": {"cpu": {}}, "train": {"learning_rate": 1}, "newstage": {"x": 1}}
    )
    assert params.load(path, "train", "newstage")["newstage"] == {"x": 1}  # a stage under development
    with pytest.raises(UserError, match=r"unknown section newstage: \(not in"):
        params.check_all(params.load_raw(path))  # ...but the committed file must register it
    path = _write(tmp_path, {"profile": "cpu", "profiles": {"cpu": {}}, "trian": {"lora_r": 8}})
    with pytest.raises(UserError, match=r"unknown section trian: \(did you mean train\?\)"):
        params.check_all(params.load_raw(path))


def test_dvc_exp_run_set_param_overrides_still_validate(tmp_path):
    """`dvc exp run -S k=v` rewrites params.yaml through DVC's Hydra code: the result must load, and a bad -S value
    must be caught naming the key."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text(open("params.yaml", encoding="utf-8").read(), encoding="utf-8")
    apply_overrides(path, ["train.lora_r=32", "train.learning_rate=1e-4", "profiles.cpu.train.max_steps=2"])
    train = params.load(path, "train")["train"]
    assert (train["lora_r"], train["learning_rate"], train["max_steps"]) == (32, 1e-4, 2)
    assert params.check_all(params.load_raw(path)) > 100
    apply_overrides(path, ["train.lora_r=abc"])
    with pytest.raises(UserError, match=r"train\.lora_r must be int, got 'abc'"):
        params.load(path, "train")


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_previous_output(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as tmp:
        write_jsonl(tmp / "a.jsonl", [{"k": "값"}])
    assert [p.name for p in target.iterdir()] == ["a.jsonl"]
    assert read_jsonl(target / "a.jsonl") == [{"k": "값"}]


@pytest.mark.parametrize(
    ("word", "pair", "expected"),
    [
        ("케이블카", "은/는", "케이블카는"),
        ("박달재", "은/는", "박달재는"),
        ("의림지공원", "은/는", "의림지공원은"),
        ("리조트", "이/가", "리조트가"),
        ("3", "은/는", "3은"),
        ("참좋은강황 365 Premium", "과/와", "참좋은강황 365 Premium과"),  # 프리미엄
        ("H Avenue Hotel", "이/가", "H Avenue Hotel이"),  # 호텔
        ("Green Cafe", "은/는", "Green Cafe는"),  # 카페
        ("Tour", "을/를", "Tour를"),  # 투어
    ],
)
def test_josa(word, pair, expected):
    assert korean.josa(word, pair) == expected


def test_morphemes_drop_particles_and_endings():
    assert korean.morphemes("케이블카의 주소는 어디인가요?") == ["케이블카", "주소", "어디"]


def test_morphemes_keep_serials_urls_and_numbers():
    """Kiwi tags times, phone numbers and dotted dates W_SERIAL: they are content, not nothing."""
    assert korean.morphemes("043-652-9222") == ["043-652-9222"]
    assert korean.morphemes("09:00~18:00에 엽니다") == ["09:00", "18:00", "열"]
    assert korean.morphemes("2025.10.1.") == ["2025.10.1."]
    assert korean.morphemes("https://www.jecheon.go.kr 참고") == ["https://www.jecheon.go.kr", "참고"]
    assert korean.morphemes("객실은 255개") == ["객실", "255", "개"]


def test_negations():
    assert korean.negations("주차가 불가능합니다") == {"불"}
    assert korean.negations("반려동물은 동반할 수 없습니다") == {"없"}
    assert korean.negations("무료가 아닙니다") == {"아니"}
    assert korean.negations("주차할 수 있습니다") == set()


def test_citations_round_trip():
    text = prompting.target_answer("제천시 청풍면 문화재길 166", ["c044"])
    assert text == "제천시 청풍면 문화재길 166 [c044]"
    assert prompting.cited_ids(text + " [c044][c002]") == ["c044", "c002"]
    assert prompting.strip_citations(text) == "제천시 청풍면 문화재길 166"


def test_prompt_puts_every_chunk_id_and_the_question():
    chunks = [{"chunk_id": "c001", "section_path": "A > B", "text": "가" * 50}]
    msgs = prompting.build_messages("질문?", chunks, prompting.PromptLayout("시스템", max_chars=10))
    assert msgs[0] == {"role": "system", "content": "시스템"}
    assert "[c001] A > B\n" + "가" * 10 + "…" in msgs[1]["content"]
    assert msgs[1]["content"].endswith("질문: 질문?")
    # the exact prompt: train (sft) and evaluate rows must not drift apart
    assert msgs[1]["content"] == "문서:\n[c001] A > B\n" + "가" * 10 + "…\n\n질문: 질문?"


def test_question_first_also_asks_before_the_documents_and_keeps_the_rest():
    chunks = [{"chunk_id": "c001", "section_path": "A > B", "text": "가" * 50}]
    layout = prompting.PromptLayout("시스템", max_chars=10)
    asking_first = prompting.PromptLayout("시스템", max_chars=10, question_first=True)
    plain = prompting.build_messages("질문?", chunks, layout)[1]["content"]
    first = prompting.build_messages("질문?", chunks, asking_first)[1]["content"]
    assert first == "질문: 질문?\n\n" + plain
    example = {"question": "예시?", "chunk": chunks[0], "answer": "답 [c001]"}
    turns = prompting.fewshot_turns([example], asking_first.with_max_chars(5))
    assert turns[0]["content"] == "질문: 예시?\n\n문서:\n[c001] A > B\n" + "가" * 5 + "…\n\n질문: 예시?"
    msgs = prompting.build_fewshot_messages("질문?", chunks, asking_first, turns)
    assert msgs[-1]["content"] == first and msgs[0] == {"role": "system", "content": "시스템"}


def test_id_after_text_repeats_each_chunk_id_after_its_text():
    chunks = [
        {"chunk_id": "c001", "section_path": "A > B", "text": "가" * 50},
        {"chunk_id": "c002", "section_path": "A > C", "text": "나나"},
    ]
    plain = prompting.build_messages("질문?", chunks, prompting.PromptLayout("시스템", 10))[1]["content"]
    tailed = prompting.build_messages("질문?", chunks, prompting.PromptLayout("시스템", 10, id_after_text=True))
    assert tailed[1]["content"] == (
        "문서:\n[c001] A > B\n" + "가" * 10 + "… [c001]\n\n[c002] A > C\n나나 [c002]\n\n질문: 질문?"
    )
    assert tailed[1]["content"].replace(" [c001]\n", "\n").replace(" [c002]\n", "\n") == plain


def test_code_defaults_equal_params_yaml():
    """Defaults in code that stand in for params (synthesize's Limits.DEFAULTS) must not shadow params.yaml."""
    import dataclasses

    from stages.synthesize.limits import DEFAULTS

    synth = params.load("params.yaml", "synthesize")["synthesize"]
    assert {k: synth[k] for k in DEFAULTS.__dataclass_fields__} == dataclasses.asdict(DEFAULTS)
