"""The Gradio demo (app/): citation view, abstention, input checks, and the served app queried through gradio_client.

A tiny random model cannot be made to cite a given chunk, so the citation view is
asserted on fixed answers (pure functions, and the served app with the generator
replaced), plus one query through the real tiny model asserting the response structure.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import retrieval_options

from app import rag
from app.__main__ import create, parse_args
from stages.common.errors import UserError, run_cli
from stages.common.retrieval import Retriever

ABSTAIN = "브로셔에 해당 정보가 없습니다."
PAGE_PT = (200.0, 300.0)  # page size in points; images are rendered at 2 px per point
PX_PER_PT = 2
CHUNKS = [
    {
        "chunk_id": "c001",
        "section_path": "관광지 > 청풍호반 케이블카",
        "title": "청풍호반 케이블카",
        "text": "주소: 제천시 청풍면 문화재길 166. 전화: 043-641-5532.",
        "pages": [1],
        "bboxes": [[1, 20.0, 30.0, 180.0, 80.0]],
    },
    {
        "chunk_id": "c002",
        "section_path": "관광지 > 의림지",
        "title": "의림지",
        "text": "주소: 제천시 의림지로 33. 삼한시대 저수지로 산책로가 있다.",
        "pages": [2, 3],
        "bboxes": [[2, 40.0, 100.0, 160.0, 140.0], [2, 40.0, 150.0, 100.0, 170.0], [3, 10.0, 10.0, 60.0, 30.0]],
    },
    {
        "chunk_id": "c003",
        "section_path": "음식 > 약채락",
        "title": "약채락",
        "text": "약초 비빔밥을 파는 식당. 가격은 12,000원이다.",
        "pages": [3],
        "bboxes": [[3, 20.0, 200.0, 180.0, 260.0]],
    },
]
PARAMS = f"""
profile: cpu
retrieval: {{method: bm25, top_k: 2, rrf_k: 60, fusion_depth: 20}}
prompt: {{system: "브로셔 문서만 보고 짧게 답하고 [c001]처럼 근거를 표시하세요.", abstain: {ABSTAIN}, max_context_chars: 80, question_first: false, id_after_text: false}}
evaluate:
  max_new_tokens: 6
  stop_at_line_end: true
  batch_size: 8
  abstain_markers: [정보가 없]
  abstain_window: 60
demo:
  host: 127.0.0.1
  port: 7860
  crop_margin: 5
  crop_width: 100
  page_thumb_width: 50
  examples: ["의림지 주소는?"]
profiles:
  cpu:
    machine: {{offline: true}}
    evaluate: {{device: cpu, dtype: float32, limit: 0, backend: transformers, attention: grouped}}
"""


class OneHotEmbedder:
    """Only to build the index: the app's bm25 retrieval never loads a dense embedder."""

    name = "onehot"

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return np.eye(len(texts), 8, dtype=np.float32)

    embed_queries = embed_passages


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from PIL import Image
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("app")
    Retriever.build(CHUNKS, OneHotEmbedder(), rrf_k=60, fusion_depth=20, options=retrieval_options()).save(
        root / "index", {"embedder": "onehot"}
    )
    (root / "parsed" / "images").mkdir(parents=True)
    with open(root / "parsed" / "pages.jsonl", "w", encoding="utf-8") as fh:
        for page in (1, 2, 3):
            fh.write(json.dumps({"page": page, "width": PAGE_PT[0], "height": PAGE_PT[1], "status": "ok"}) + "\n")
            # white pages with one solid blue square at points (50, 110)-(70, 130): inside c002's first box
            img = Image.new("RGB", (int(PAGE_PT[0] * PX_PER_PT), int(PAGE_PT[1] * PX_PER_PT)), "white")
            img.paste((0, 0, 255), (100, 220, 140, 260))
            img.save(root / "parsed" / "images" / f"page_{page:03d}.png")
    torch.manual_seed(1)
    lora = LoraConfig(r=2, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora).save_pretrained(root / "adapter")
    (root / "params.yaml").write_text(PARAMS, encoding="utf-8")
    return {"root": root, "base": tiny_model_dir}


def argv(world, *extra: str) -> list[str]:
    root = world["root"]
    return [
        "--index", str(root / "index"), "--parsed", str(root / "parsed"), "--base", str(world["base"]),
        "--adapter", str(root / "adapter"), "--params", str(root / "params.yaml"), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def settings(world) -> rag.Settings:
    return rag.Settings.from_params(world["root"] / "params.yaml")


@pytest.fixture(scope="module")
def by_id() -> dict:
    return {c["chunk_id"]: c for c in CHUNKS}


# ---------------------------------------------------------------- pure functions
def test_cited_answer_builds_the_citation_view(world, settings, by_id):
    answer = rag.interpret(
        "의림지 주소는?", "finetuned", "제천시 의림지로 33 [c002] [c999]", ["c002", "c001"], set(by_id), settings
    )
    assert answer.text == "제천시 의림지로 33"
    assert (answer.cited_ids, answer.unknown_ids, answer.shown_ids, answer.shown_as) == (
        ["c002"],
        ["c999"],
        ["c002"],
        "cited",
    )
    assert not answer.abstained

    cards = rag.citation_cards(answer.shown_ids, by_id, rag.Pages.load(world["root"] / "parsed"), settings)
    assert [(c["chunk_id"], c["section_path"], c["pages"]) for c in cards] == [("c002", "관광지 > 의림지", [2, 3])]
    crops = cards[0]["crops"]
    assert [c["page"] for c in crops] == [2, 3]  # one crop per page the chunk spans
    # page 2: union of both boxes (40,100)-(160,170) pt + 5 pt margin = 130 x 80 pt = 260 x 160 px, shown at 100 px
    assert crops[0]["image"].size == (100, round(160 * 100 / 260))
    assert crops[0]["width"] == 100 and crops[0]["thumb"].size == (50, 75)

    html = rag.render_citations_html(answer, cards, ABSTAIN)
    assert 'data-chunk-id="c002"' in html and 'data-chunk-id="c001"' not in html
    assert "[c002] 관광지 &gt; 의림지" in html and "cited #1 · page 2, 3" in html
    assert html.count("data:image/jpeg;base64,") == 4  # page thumbnail + region crop, for pages 2 and 3
    assert "Cited ids not in the index: c999" in html and "data-abstained" not in html
    md = rag.render_answer_markdown(answer, by_id)
    assert md == "제천시 의림지로 33\n\nSources: [c002] 관광지 > 의림지 (p.2, 3)"


def test_crop_region_maps_points_to_pixels_and_highlights():
    from PIL import Image

    page = Image.new("RGB", (400, 600), "white")
    page.paste((0, 0, 255), (100, 220, 140, 260))
    crop = rag.crop_region(page, PAGE_PT, [[50.0, 110.0, 70.0, 130.0]], margin=10, max_width=1000)
    assert crop.size == (80, 80)  # (40,100)-(80,140) pt at 2 px/pt
    r, g, b = crop.getpixel((40, 40))  # centre of the blue square, under the translucent yellow highlight
    assert b > 150 and r < 100
    assert crop.getpixel((5, 5)) == (255, 255, 255)  # the margin is page, not highlight
    thumb = rag.page_thumbnail(page, PAGE_PT, [[50.0, 110.0, 70.0, 130.0]], width=100)
    assert thumb.size == (100, 150)


def test_abstention_shows_banner_and_retrieved_context(world, settings, by_id):
    answer = rag.interpret("약채락 주차 요금은?", "finetuned", ABSTAIN, ["c003", "c001"], set(by_id), settings)
    assert answer.abstained and answer.shown_as == "retrieved" and answer.shown_ids == ["c003", "c001"]
    cards = rag.citation_cards(answer.shown_ids, by_id, rag.Pages.load(world["root"] / "parsed"), settings)
    html = rag.render_citations_html(answer, cards, ABSTAIN)
    assert 'data-abstained="true"' in html and ABSTAIN in html
    assert html.index('data-chunk-id="c003"') < html.index('data-chunk-id="c001"')  # retrieval order
    assert rag.render_answer_markdown(answer, by_id) == f"⚠️ **{ABSTAIN}**"
    # an uncited, non-abstaining answer also falls back to the retrieved context, with a note
    loose = rag.interpret("q", "baseline", "아마도 그렇습니다", ["c001"], set(by_id), settings)
    assert (loose.shown_as, loose.shown_ids) == ("retrieved", ["c001"])
    assert "cited no chunk" in rag.render_citations_html(loose, [], ABSTAIN)


def test_missing_inputs_are_one_line_errors_naming_the_stage(world, tmp_path, capsys):
    from app.__main__ import main

    root = world["root"]
    cases = [
        (["--index", str(tmp_path / "none")], "no index found (run `dvc repro index`)"),
        (["--base", str(tmp_path)], "no base model found (run `dvc repro prepare_model`)"),
        (["--parsed", str(tmp_path)], "no parsed pages found (run `dvc repro parse`)"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exc:
            run_cli(main, argv(world, *extra))
        assert exc.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and err[-1].endswith(message)
    adapter, warnings = rag.check_paths(root / "index", root / "parsed", world["base"], tmp_path)
    assert adapter is None and "run `dvc repro train`" in warnings[0]
    with pytest.raises(UserError, match="demo.crop_width"):
        bad = tmp_path / "params.yaml"
        bad.write_text(PARAMS.replace("crop_width: 100", "crop_width: wide"), encoding="utf-8")
        rag.Settings.from_params(bad)


# ---------------------------------------------------------------- the served app
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(world):
    from gradio_client import Client

    from app.ui import launch

    demo, _ = create(parse_args(argv(world)))
    port = free_port()
    launch(demo, "127.0.0.1", port, block=False)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False), demo
    finally:
        demo.close()


def test_served_app_answers_with_the_tiny_model(served):
    client, _ = served
    out = client.predict("의림지 주소는?", "finetuned", api_name="/ask")
    assert out["question"] == "의림지 주소는?" and out["choice"] == "finetuned"
    assert out["retrieved_ids"][0] == "c002" and len(out["retrieved_ids"]) == 2  # bm25, top_k 2
    assert 1 <= out["new_tokens"] <= 6 and isinstance(out["raw"], str)
    assert out["shown_as"] in ("cited", "retrieved")
    assert [c["chunk_id"] for c in out["citations"]] == out["shown_ids"]
    if out["shown_as"] == "retrieved":
        assert out["shown_ids"] == out["retrieved_ids"]
    for c in out["citations"]:
        assert c["crop_pages"] == sorted(
            {b[0] for b in next(x for x in CHUNKS if x["chunk_id"] == c["chunk_id"])["bboxes"]}
        )
    with pytest.raises(Exception, match="unknown model choice"):
        client.predict("의림지 주소는?", "gpt", api_name="/ask")


def test_served_app_shows_citations_of_a_fixed_answer(served, world, monkeypatch):
    """The generator replaced by a fixed answer: the chat, the citation panel and the prompt it got."""
    from stages import evaluate as E
    from stages.common.generation import build_prompts

    client, _ = served
    seen: list[list[str]] = []
    reply = {"text": "제천시 의림지로 33 [c002]"}

    def fixed_generate(model, tokenizer, prompts, max_new_tokens, batch_size, prefill_tokens, stop_at_line_end=False):
        seen.append(prompts)
        return [{"answer": reply["text"], "new_tokens": 9, "hit_eos": True, "prompt_tokens": 1, "latency_s": 0.0}]

    monkeypatch.setattr(rag, "generate", fixed_generate)
    history, box, panel = client.predict("의림지 주소는?", [], "finetuned", api_name="/chat")
    assert box == ""
    assert history[0]["role"] == "user" and history[-1]["role"] == "assistant"
    bubble = history[-1]["content"][0]["text"] if isinstance(history[-1]["content"], list) else history[-1]["content"]
    assert bubble == "**finetuned** · 제천시 의림지로 33\n\nSources: [c002] 관광지 > 의림지 (p.2, 3)"
    assert 'data-chunk-id="c002"' in panel and "page 2, 3" in panel and panel.count("<img") == 4

    # the prompt is the evaluate stage's: same retrieval, same prompt code, same params
    from transformers import AutoTokenizer

    s = rag.Settings.from_params(world["root"] / "params.yaml")
    retriever = Retriever.load(world["root"] / "index", with_dense=False)
    q = {"question": "의림지 주소는?"}
    contexts = E.retrieve(retriever, [q], s.top_k, s.method)
    assert seen[-1] == build_prompts(AutoTokenizer.from_pretrained(world["base"]), [q], contexts, s.layout)

    reply["text"] = ABSTAIN
    out = client.predict("약채락 주차 요금은?", "baseline", api_name="/ask")
    assert out["abstained"] and out["shown_as"] == "retrieved" and out["cited_ids"] == []
    assert [c["chunk_id"] for c in out["citations"]] == out["retrieved_ids"]


def test_question_prefill_is_answered_at_start_up(world, monkeypatch):
    from app.ui import launch

    monkeypatch.setattr(
        rag,
        "generate",
        lambda *a: [
            {
                "answer": "제천시 의림지로 33 [c002]",
                "new_tokens": 9,
                "hit_eos": True,
                "prompt_tokens": 1,
                "latency_s": 0,
            }
        ],
    )
    demo, _ = create(parse_args(argv(world, "--question", "의림지 주소는?", "--no-adapter")))
    port = free_port()
    launch(demo, "127.0.0.1", port, block=False)
    try:
        config = urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=10).read().decode("utf-8")
    finally:
        demo.close()
    assert 'data-chunk-id=\\"c002\\"' in config and "Sources: [c002]" in config
    assert "fine-tuned (base + LoRA adapter)" not in config  # --no-adapter: baseline only
