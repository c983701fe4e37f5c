"""Could a check outside the generator decide abstention? Signals and their operating point (a diagnostic, not a stage)

    python scripts/answerability_signals.py --margins runs/tune15/followups1@seed13/margin.json --out runs/signals.json

Takes the A/R/U prompts of scripts/abstention_margin.py (its --out file: same split, same retriever) and scores two
signals of "the context does not answer this question":

* lexical coverage: the share of the question's content morphemes found in the context (text_scores.support, as
  faithfulness scores answers; all chunks together, and the
  best single chunk) - read from the context, blind to the wording cue;
* dense similarity: the cosine of the question to each retrieved chunk, from the index's own embedder and stored
  passage vectors (the best chunk, and the mean) - what the retriever itself knows, also read from the context;
* the model's first-token abstention margin, from the margins file.

Each signal set is fitted by a logistic regression scored out of fold (folds grouped by question, so a question's A
and R prompts never sit on both sides), then thresholded so that it abstains on at most --max-a of the A prompts
(issue #13's wrong-abstention cap); reported: ROC AUC A vs R and A vs U, and the share of R and U it catches there.
Validation only: test sets are not for choices.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from abstention_margin import prompts_by_kind  # noqa: E402

from stages.common import params as P  # noqa: E402
from stages.common.errors import UserError, run_cli  # noqa: E402
from stages.common.io import read_jsonl, write_json  # noqa: E402
from stages.common.retrieval import Retriever  # noqa: E402

# Feature columns per signal set; "uncovered" = 1 - coverage and "distant" = 1 - cosine, so every column grows with
# "should abstain".
COVERAGE = ("uncovered_all", "uncovered_best")
DENSE = ("distant_best", "distant_mean")
SIGNALS = {
    "coverage": COVERAGE,
    "dense": DENSE,
    "margin": ("margin",),
    "coverage+dense": COVERAGE + DENSE,
    "coverage+margin": (*COVERAGE, "margin"),
    "all": (*COVERAGE, *DENSE, "margin"),
}


def coverage(question: str, chunk_texts: list[str]) -> tuple[float, float]:
    """(share of the question's content morphemes the whole context backs, the best single chunk's share).

    The faithfulness scorer's own measure (``text_scores.support``: morphemes found as morphemes or inside the
    space-free text, numbers aside), applied to the question instead of an answer.
    """
    from stages.common.text_scores import support

    if not chunk_texts:
        return 0.0, 0.0
    whole = support(question, "\n\n".join(chunk_texts))["share"]
    return whole, max(support(question, text)["share"] for text in chunk_texts)


def similarity(question_vector, chunk_vectors) -> tuple[float, float]:
    """(the best chunk's cosine to the question, the mean cosine)."""
    import numpy as np

    if len(chunk_vectors) == 0:
        return 0.0, 0.0
    chunks = np.asarray(chunk_vectors, dtype=float)
    question = np.asarray(question_vector, dtype=float)
    cosines = chunks @ question / (np.linalg.norm(chunks, axis=1) * np.linalg.norm(question))
    return float(cosines.max()), float(cosines.mean())


def operating_point(scores: list[float], kinds: list[str], max_a: float) -> dict:
    """AUCs and what a threshold abstaining on at most `max_a` of A catches of R and U (higher score = abstain)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    s, k = np.asarray(scores, dtype=float), np.asarray(kinds)
    a = s[k == "A"]
    if not len(a):
        return {"threshold": None, "A_abstained": None}  # nothing to hold the threshold to
    threshold = float(np.quantile(a, 1.0 - max_a, method="higher"))
    result: dict = {"threshold": round(threshold, 4), "A_abstained": round(float((a > threshold).mean()), 4)}
    for other in ("R", "U"):
        o = s[k == other]
        if len(o):
            labels = np.r_[np.zeros(len(a)), np.ones(len(o))]
            result[f"auc_A_vs_{other}"] = round(float(roc_auc_score(labels, np.r_[a, o])), 4)
            result[f"{other}_caught"] = round(float((o > threshold).mean()), 4)
    return result


def out_of_fold(features: list[list[float]], kinds: list[str], groups: list[str], folds: int) -> list[float]:
    """P(should abstain) for every prompt from a logistic regression that never saw its question."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict

    y = np.asarray([kind != "A" for kind in kinds], dtype=int)
    model = LogisticRegression(max_iter=1000)
    prob = cross_val_predict(
        model, np.asarray(features), y, cv=GroupKFold(folds), groups=groups, method="predict_proba"
    )
    return [float(p) for p in prob[:, 1]]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--margins", type=Path, required=True, help="scripts/abstention_margin.py's --out file")
    ap.add_argument("--index", type=Path, default=Path("data/index"))
    ap.add_argument("--qa", type=Path, default=Path("data/qa"))
    ap.add_argument("--depth", type=int, default=4, help="as given to abstention_margin.py")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--max-a", type=float, default=0.15, help="abstain on at most this share of A prompts")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    if not args.margins.is_file():
        raise UserError(f"{args.margins}: not found (run scripts/abstention_margin.py first)")
    margins = json.loads(args.margins.read_text(encoding="utf-8"))
    if not isinstance(margins, dict) or not {"split", "prompts"} <= set(margins):
        raise UserError(f"{args.margins}: not an abstention_margin.py output (no 'split' and 'prompts')")
    split_file = args.qa / f"{margins['split']}.jsonl"
    if not split_file.is_file():
        raise UserError(f"{split_file}: not found")
    rcfg = P.load(args.params, "retrieval")["retrieval"]
    retriever = Retriever.load(args.index)  # with its dense embedder whatever the method: the cosine signal
    rows = prompts_by_kind(read_jsonl(split_file), retriever, rcfg.top_k, rcfg.method, args.depth)
    prompts = margins["prompts"]
    if [(q["id"], kind) for q, _, kind in rows] != [(p["id"], p["kind"]) for p in prompts]:
        raise UserError(
            f"{args.margins}: its prompts are not this split's A/R/U prompts (other index, params or depth)"
        )
    chunk_ids = sorted({c["chunk_id"] for _, chunks, _ in rows for c in chunks})
    question_vectors, chunk_vectors = retriever.dense_vectors(
        [question["question"] for question, _, _ in rows], chunk_ids
    )
    vector_of = dict(zip(chunk_ids, chunk_vectors, strict=True))
    table = []
    for (question, chunks, _), prompt, vector in zip(rows, prompts, question_vectors, strict=True):
        cover_all, cover_best = coverage(question["question"], [f"{c.get('title', '')}\n{c['text']}" for c in chunks])
        best, mean = similarity(vector, [vector_of[c["chunk_id"]] for c in chunks])
        table.append(
            {
                "uncovered_all": 1.0 - cover_all,
                "uncovered_best": 1.0 - cover_best,
                "distant_best": 1.0 - best,
                "distant_mean": 1.0 - mean,
                "margin": prompt["margin"],
            }
        )
    kinds, groups = [p["kind"] for p in prompts], [p["id"] for p in prompts]
    result = {"margins": str(args.margins), "split": margins["split"], "max_a": args.max_a}
    for name, columns in SIGNALS.items():
        features = [[row[c] for c in columns] for row in table]
        result[name] = operating_point(out_of_fold(features, kinds, groups, args.folds), kinds, args.max_a)
    write_json(args.out, result)
    for name in SIGNALS:
        print(name, result[name])


if __name__ == "__main__":
    run_cli(main)
