"""What the fixture benchmarks (bench_parse_fixtures.py, bench_dataset_fixtures.py) share: the repository
on sys.path (they run from anywhere, also when loaded by file path in tests), where the shared
fixtures are, and their common command-line options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "pdfs"  # real brochures kept outside the repo
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def fixture_cli(doc: str, metrics_name: str) -> argparse.ArgumentParser:
    """A parser with --fixtures, --out (default metrics/<metrics_name>) and --params; `doc`'s first line describes it."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--fixtures", type=Path, default=FIXTURES)
    ap.add_argument("--out", type=Path, default=REPO / "metrics" / metrics_name)
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    return ap
