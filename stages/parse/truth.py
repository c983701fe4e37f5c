"""The parse stage's ground truth, made optional for DVC (the ``truth`` stage in dvc.yaml).

    python -m stages.parse.truth --truth data/sample/ground_truth.jsonl --out data/truth.jsonl
    python -m stages.parse.truth --truth '' --out data/truth.jsonl      # no ground truth: an empty file

Why a stage of its own: ``data.truth`` may be empty (a new brochure has no ground truth), and DVC
cannot list an empty path as a dependency (``deps: [${data.truth}]`` with ``data.truth=''`` is an
"unexpected error"). This stage is ``always_changed``: it validates the given file and copies it
to a fixed path (or writes an empty file when none is given); DVC hashes that copy, so parse
re-runs only when the truth's content, or its absence, changes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..common import io
from ..common.errors import UserError, run_cli
from .cer import load_truth

log = logging.getLogger("parse.truth")


def copy_truth(truth: str, out: Path) -> int:
    """Validate ``truth`` and copy it byte for byte to ``out``; "" writes an empty ``out``. Returns the record count."""
    if not truth:
        io.write_text(out, "")
        log.info("no ground truth given (data.truth is empty): %s is empty, parse will not measure CER", out)
        return 0
    path = Path(truth)
    rows = load_truth(path)  # one-line errors for a missing file or a bad record
    if not rows:
        raise UserError(f"{path}: ground truth has no records (leave data.truth empty for none)")
    with io.atomic_path(out) as tmp:
        tmp.write_bytes(path.read_bytes())
    log.info("%s -> %s: %d ground-truth pages", path, out, len(rows))
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stages.parse.truth", description=__doc__.split("\n")[0])
    ap.add_argument("--truth", required=True, help="ground-truth jsonl, or '' for none")
    ap.add_argument("--out", required=True, type=Path, help="the copy parse reads (data/truth.jsonl)")
    args = ap.parse_args(argv)
    copy_truth(args.truth, args.out)


if __name__ == "__main__":
    run_cli(main)
