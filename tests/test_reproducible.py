"""Byte-level reproducibility of what a deterministic stage writes (scripts/check_reproducible.sh runs the real
stages twice; this is the fast guard for the one cause it found: set iteration order, which changes with
PYTHONHASHSEED from one process to the next)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BUILD = """
import sys
from pathlib import Path
import numpy as np
from stages.common.retrieval import Retriever

sys.path.insert(0, "tests")  # run from the repo root
from conftest import retrieval_options

class Embedder:
    def embed_passages(self, texts):
        return np.ones((len(texts), 4), dtype=np.float32) / 2

texts = ["의림지는 제천시 의림대로에 있는 저수지입니다", "청풍호반 케이블카 요금은 성인 15,000원", "배론성지 천주교 성지 순례길"]
chunks = [{"chunk_id": f"c{i:03d}", "section_path": t.split()[0], "title": t.split()[0], "text": t} for i, t in enumerate(texts)]
Retriever.build(chunks, Embedder(), 60, 20, options=retrieval_options()).save(Path(sys.argv[1]), {"embedder": "fixed"})
"""


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


def test_index_files_do_not_depend_on_the_hash_seed(tmp_path):
    digests = []
    for seed in ("1", "2"):
        out = tmp_path / f"index-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", BUILD, str(out)], cwd=REPO, env=env, check=True, timeout=120)
        digests.append(_digest(out))
    assert any(name.startswith("bm25") for name in digests[0])
    assert digests[0] == digests[1]
