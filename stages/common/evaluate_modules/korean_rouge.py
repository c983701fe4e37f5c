"""Character-level ROUGE-L for Korean as a local Hugging Face `evaluate` module.

`evaluate.load('rouge')` needs the Hub, and `rouge_score`'s default tokenizer
drops every non-ASCII character (a Hangul-only answer scores 0 whatever it says).
This module scores the longest common subsequence of characters after Korean
normalisation (NFC, citations, punctuation and spaces removed).

    import evaluate
    rouge = evaluate.load("stages/common/evaluate_modules/korean_rouge.py")
    rouge.compute(predictions=["제천시 청풍면"], references=["제천시 청풍면 문화재길"])

The scoring code lives in stages.common.metrics (one implementation for the
pipeline and this wrapper); the repository root must be importable, which
`stages.common.metrics.load_rouge_module()` ensures.
"""

import datasets
import evaluate

_CITATION = """Lin, Chin-Yew. ROUGE: A Package for Automatic Evaluation of Summaries. ACL 2004."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted answers (str).
    references: list of gold answers (str).
Returns:
    rouge_l_char: mean ROUGE-L F1 over examples (characters, spaces removed),
    rouge_l_char_precision, rouge_l_char_recall: means of the per-example values.
    Examples with an empty reference are left out (None when none is left).
"""


@evaluate.utils.file_utils.add_start_docstrings(__doc__, _KWARGS_DESCRIPTION)
class KoreanRouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        # Imported here, not at the top: evaluate treats top-level imports as pip dependencies.
        from stages.common.metrics import compact, rouge_l

        scores = [rouge_l(list(compact(p)), list(compact(r))) for p, r in zip(predictions, references, strict=True)]
        # An empty reference has no score (None), not a perfect one: it is left out of the means.
        scored = [s for s in scores if s["f"] is not None]
        n = len(scored)
        return {
            "rouge_l_char": sum(s["f"] for s in scored) / n if n else None,
            "rouge_l_char_precision": sum(s["precision"] for s in scored) / n if n else None,
            "rouge_l_char_recall": sum(s["recall"] for s in scored) / n if n else None,
        }
