"""Check QA golds against the sample brochure's ground-truth pages: every value must be there.

    python scripts/check_golds.py --qa data/qa --qa data/sample/natural_questions.jsonl \
        --truth data/sample/ground_truth.jsonl

For every answerable record it looks up the truth text of its pages (`pages`, or
`gold_pages` in the natural set) and checks, with the scorer's own normalisation
(stages.common.metrics.key_fact_found: exact normalised value match; facts without
numbers may also match by content morphemes):
- `answer_short` unless `answer_kind` is `text` (a phrase from the gold sentence),
- every `key_facts` entry,
- old records without `answer_kind`: `answer` of factual/multihop questions (bare values).
A count ('255개') also passes when its number stands alone in the truth (a table cell
whose unit is in the column header). A gold read through OCR damage ("65리조트" for "ES리조트", a wrong digit) is not in the
truth and is listed, one line each: `path:line id field 'value' not in page(s) [..]`.
Exit 0 when everything is found, 1 when something is missing, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages.common.metrics import infer_answer_kind, key_fact_found, value_atoms  # noqa: E402  (runs from anywhere)


class InputError(Exception):
    pass


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: not JSON ({exc.msg})") from exc
        if not isinstance(rec, dict):
            raise InputError(f"{path}:{n}: not a JSON object")
        yield n, rec


def load_truth(path: Path) -> dict[int, str]:
    """page number -> all of its truth text (body, header, footer, raster regions)."""
    pages: dict[int, str] = {}
    for n, rec in _read_jsonl(path):
        if not isinstance(rec.get("page"), int):
            raise InputError(f"{path}:{n}: record has no integer 'page'")
        parts = [rec.get("text") or "", rec.get("header") or "", rec.get("footer") or ""]
        parts += [r.get("text") or "" for r in rec.get("raster_regions") or []]
        pages[rec["page"]] = "\n".join(parts)
    if not pages:
        raise InputError(f"{path}: no pages")
    return pages


def qa_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(p.glob("*.jsonl"))
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: not found")
    if not files:
        raise InputError(f"no .jsonl files in {', '.join(map(str, paths))}")
    return files


def gold_values(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) pairs that must occur in the truth of the record's pages."""
    if not rec.get("answerable", True):
        return []
    kind = rec.get("answer_kind")
    out: list[tuple[str, str]] = []
    if kind is None:
        if rec.get("type") in ("factual", "multihop") and rec.get("answer"):
            out.append(("answer", rec["answer"]))
        return out
    if kind not in ("text", "abstain") and rec.get("answer_short"):
        out.append(("answer_short", rec["answer_short"]))
    out += [(f"key_facts[{i}]", f) for i, f in enumerate(rec.get("key_facts") or []) if f]
    return out


def found_in_truth(text: str, value: str) -> bool:
    """The value is in the truth text (scorer normalisation); a count ('255개') also when its
    number is a whole number of the text: tables give the unit once, in the header (객실수)."""
    if key_fact_found(text, value):
        return True
    if infer_answer_kind(value) != "count":
        return False
    return value_atoms(value)[0] in value_atoms(text)


def check(qa_paths: list[Path], truth_path: Path) -> tuple[list[str], int]:
    """Lines for the values not found, and how many values were checked."""
    truth = load_truth(truth_path)
    missing: list[str] = []
    checked = 0
    for path in qa_files(qa_paths):
        for n, rec in _read_jsonl(path):
            values = gold_values(rec)
            if not values:
                continue
            pages = rec.get("pages") or rec.get("gold_pages") or []
            unknown = [p for p in pages if p not in truth]
            if not pages or unknown:
                raise InputError(f"{path}:{n}: {rec.get('id')}: pages {pages} not in {truth_path}")
            text = "\n".join(truth[p] for p in sorted(set(pages)))
            for field, value in values:
                checked += 1
                if not found_in_truth(text, value):
                    missing.append(f"{path}:{n} {rec.get('id')} {field} {value!r} not in page(s) {sorted(set(pages))}")
    return missing, checked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qa", type=Path, action="append", required=True, help="QA .jsonl file or folder (repeatable)")
    ap.add_argument("--truth", type=Path, default=Path("data/sample/ground_truth.jsonl"))
    args = ap.parse_args(argv)
    try:
        missing, checked = check(args.qa, args.truth)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in missing:
        print(line)
    print(f"check_golds: {checked} values checked, {len(missing)} not in the truth pages", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
