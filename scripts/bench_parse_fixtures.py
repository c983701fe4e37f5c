"""Parse accuracy on the real brochures in ../shared/fixtures/pdfs (issue #3, measurement 2).

    python scripts/bench_parse_fixtures.py [--fixtures ../shared/fixtures/pdfs] \\
        [--out metrics/parse_fixtures.json] [--params params.yaml]

Runs the parse stage itself (``stages.parse.__main__.run``, the params' profile, output in a temp dir) on:

* ``jeju_oreum_themebook.pdf`` (28 pages, sound text layer except the cover, two map pages and
  two image pages): recall of the text layer's Hangul tokens by the parse output, and the tokens
  the parse output adds that the text layer lacks (outlined cover lettering, map labels drawn as
  vector paths), with a check list of named labels;
* ``jeju_rentcar_leaflet_imageonly.pdf`` (2 pages, no text layer at all): Hangul tokens recovered.

A token is a maximal run of Hangul syllables, Latin letters and digits that holds at least one
Hangul syllable, so punctuation does not count. Recall is counted per page as a multiset (a word
the text layer has twice must come out twice); a word the text layer splits at a line end
(``많`` / ``은``) and the parse output re-joins (``많은``) counts as recalled. The fixtures
are not in the repo: without them the script says so and exits 0 without writing anything.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import fixture_cli  # noqa: E402  (puts the repo on sys.path: the script runs from anywhere)

from stages.common import io  # noqa: E402
from stages.parse.__main__ import run as parse_run  # noqa: E402

THEMEBOOK = "jeju_oreum_themebook.pdf"
LEAFLET = "jeju_rentcar_leaflet_imageonly.pdf"
RECALL_TARGET = 0.97
# Named things the text layer lacks: the page they are drawn on (checked in the output of that page only).
LABELS: dict[str, int] = {
    "수월봉": 14,
    "송악산": 14,
    "가파도": 14,
    "대정읍": 14,
    "섯알오름": 14,
    "성산일출봉": 15,
    "따라비오름": 15,
    "제주관광공사": 1,
    "제주특별자치도": 1,
}
_TOKEN = re.compile(r"[\uac00-\ud7a3A-Za-z0-9]+")


def hangul_tokens(text: str) -> list[str]:
    """Runs of Hangul syllables/Latin letters/digits that contain at least one Hangul syllable."""
    return [t for t in _TOKEN.findall(io.nfc(text)) if any("\uac00" <= c <= "\ud7a3" for c in t)]


def page_texts(blocks: list[dict[str, Any]]) -> dict[int, str]:
    """Parse output per page: every block's text (headers and footers too: the text layer has them)."""
    out: dict[int, list[str]] = {}
    for b in blocks:
        out.setdefault(int(b["page"]), []).append(b["text"])
    return {p: "\n".join(t) for p, t in out.items()}


def textlayer_texts(pdf: Path, pages: list[int]) -> dict[int, str]:
    import pymupdf

    with pymupdf.open(pdf) as doc:
        return {p: doc[p - 1].get_text() for p in pages}


def line_tokens(text: str) -> list[tuple[str, bool]]:
    """Hangul tokens in order, each with 'ends its line' (the text layer breaks words at line ends: 많|은)."""
    out: list[tuple[str, bool]] = []
    for line in io.nfc(text).splitlines():
        found = _TOKEN.findall(line)
        out += [(t, i == len(found) - 1) for i, t in enumerate(found) if any("\uac00" <= c <= "\ud7a3" for c in t)]
    return out


def recalled_tokens(reference: str, output: str) -> tuple[int, list[str]]:
    """(recalled, missed) reference tokens: a multiset match, then a token split by the reference's
    line break (``많`` + ``은``) counts twice as recalled when the output has it joined (``많은``)."""
    ref = line_tokens(reference)
    hyp = Counter(hangul_tokens(output))
    matched = [False] * len(ref)
    for i, (token, _) in enumerate(ref):
        if hyp[token] > 0:
            hyp[token] -= 1
            matched[i] = True
    for i in range(len(ref) - 1):
        joined = ref[i][0] + ref[i + 1][0]
        if ref[i][1] and not (matched[i] and matched[i + 1]) and hyp[joined] > 0:
            hyp[joined] -= 1
            for j in (i, i + 1):
                if matched[j]:  # it had taken an output token of its own: give that back
                    hyp[ref[j][0]] += 1
            matched[i] = matched[i + 1] = True
    return sum(matched), [t for (t, _), m in zip(ref, matched, strict=True) if not m]


def token_recall(reference: dict[int, str], output: dict[int, str]) -> dict[str, Any]:
    """Per-page recall of the reference's Hangul tokens, and the output's tokens the reference lacks."""
    total = hit = 0
    missed: list[str] = []
    new_by_page: dict[int, list[str]] = {}
    for page in sorted(reference):
        ref = Counter(hangul_tokens(reference[page]))
        hyp = Counter(hangul_tokens(output.get(page, "")))
        recalled, lost = recalled_tokens(reference[page], output.get(page, ""))
        total += sum(ref.values())
        hit += recalled
        missed += [f"p{page}:{t}" for t in lost]
        # new: not a token of the text layer, nor a piece of one (the parse joins words split by a line break)
        flat = "".join(reference[page].split())
        new = sorted(t for t in hyp.elements() if t not in ref and t not in flat)
        if new:
            new_by_page[page] = new
    return {
        "textlayer_tokens": total,
        "recalled": hit,
        "token_recall": round(hit / total, 4) if total else None,
        "missed": missed,
        "new_tokens": sum(len(v) for v in new_by_page.values()),
        "new_tokens_by_page": {str(p): len(v) for p, v in new_by_page.items()},
        "new_token_examples": {str(p): v[:60] for p, v in new_by_page.items()},
    }


def labels_found(output: dict[int, str], labels: dict[str, int]) -> dict[str, bool]:
    """Is each label in its page's output (spaces ignored: OCR may split a label)?"""
    return {name: name in "".join(output.get(page, "").split()) for name, page in labels.items()}


def run_parse(pdf: Path, params_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        metrics = parse_run(pdf, Path(tmp) / "parsed", Path(tmp) / "metrics.json", None, params_path)
        blocks = io.read_jsonl(Path(tmp) / "parsed" / "blocks.jsonl")
    return blocks, metrics


def bench(fixtures: Path, params_path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}  # numbers only (dvc metrics show); the token definition is in this docstring
    pdf = fixtures / THEMEBOOK
    blocks, metrics = run_parse(pdf, params_path)
    output = page_texts(blocks)
    reference = textlayer_texts(pdf, list(range(1, metrics["pages"] + 1)))
    found = labels_found(output, LABELS)
    out["jeju_oreum_themebook"] = {
        "pages": metrics["pages"],
        "failed_pages": metrics["failed_pages"],
        "recall_target": RECALL_TARGET,
        **token_recall(reference, output),
        "labels_found": sum(found.values()),
        "labels_checked": len(found),
        "labels": found,
        "seconds": metrics["seconds"],
        "pages_per_second": metrics["pages_per_second"],
    }
    pdf = fixtures / LEAFLET
    blocks, metrics = run_parse(pdf, params_path)
    tokens = [t for text in page_texts(blocks).values() for t in hangul_tokens(text)]
    out["jeju_rentcar_leaflet_imageonly"] = {
        "pages": metrics["pages"],
        "failed_pages": metrics["failed_pages"],
        "hangul_tokens": len(tokens),
        "distinct_hangul_tokens": len(set(tokens)),
        "seconds": metrics["seconds"],
        "pages_per_second": metrics["pages_per_second"],
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = fixture_cli(__doc__, "parse_fixtures.json")
    args = ap.parse_args(argv)
    missing = [name for name in (THEMEBOOK, LEAFLET) if not (args.fixtures / name).is_file()]
    if missing:
        print(f"skipped: {args.fixtures} lacks {', '.join(missing)} (the shared fixtures are not here)")
        return 0
    result = bench(args.fixtures, args.params)
    io.write_json(args.out, result)
    book, leaflet = result["jeju_oreum_themebook"], result["jeju_rentcar_leaflet_imageonly"]
    print(
        f"themebook: token recall {book['token_recall']} (target {RECALL_TARGET}), {book['new_tokens']} new tokens, "
        f"labels {book['labels_found']}/{book['labels_checked']}; leaflet: {leaflet['hangul_tokens']} Hangul tokens"
        f" -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
