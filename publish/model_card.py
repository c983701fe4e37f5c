"""The Hub model card of the LoRA adapter, built from what the pipeline recorded.

Everything on the card comes from files: hyperparameters from the adapter's resolved
``axolotl.yaml`` (what actually ran), numbers from ``metrics/`` (train.json,
eval/<model>/<testset>.json, comparison.json), the base model and prompt from params.yaml.
A missing metrics file leaves its part of the card out rather than failing: a
card without numbers is still better than no adapter on the Hub, and the card says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from stages.common.errors import UserError
from stages.common.metrics import BY_KEY, card_metrics, get_path

# Rows of the evaluation table come from the metric registry (stages.common.metrics.METRICS, the
# `card` position of each metric): labels are the scorer's own (Metric.label, as in the report) with
# the comparison.json key beside them for readers of this English card, and the place of each number
# in metrics/eval/<model>/<testset>.json (used when comparison.json is absent) is Metric.path.
# Functions, not constants: a metric registered after import still gets its row.


def metric_label(key: str) -> str:
    m = BY_KEY.get(key)
    return f"{m.label} (`{key}`)" if m and m.label else key


def card_keys() -> list[str]:
    return [m.key for m in card_metrics()]


# Resolved-config keys worth a row on the card, in reading order.
HYPERPARAMETERS: tuple[str, ...] = (
    "adapter",
    "load_in_4bit",
    "bnb_config_kwargs",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "learning_rate",
    "lr_scheduler",
    "warmup_ratio",
    "optimizer",
    "num_epochs",
    "max_steps",
    "micro_batch_size",
    "gradient_accumulation_steps",
    "sequence_len",
    "bf16",
    "gradient_checkpointing",
    "seed",
)


def read_json_if(path: Path) -> Any | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


# The evaluate stage's models and test sets (metrics/eval/<model>/<testset>.json) and the report's
# comparisons (comparison.json testsets.<testset>.pairs."finetuned-<reference>").
MODELS: tuple[str, ...] = ("baseline", "baseline_fewshot", "finetuned")
MODEL_LABELS = {"baseline": "base, zero-shot", "baseline_fewshot": "base, few-shot", "finetuned": "fine-tuned"}
TESTSETS: dict[str, str] = {
    "template": "template test split (questions from chunks no training question uses)",
    "natural": "hand-written natural questions (frozen, never used for a choice)",
}


def load_metrics(metrics_dir: Path) -> dict[str, Any]:
    """train.json, comparison.json and eval/<model>/<testset>.json, each None when absent."""
    return {
        "train": read_json_if(metrics_dir / "train.json"),
        "comparison": read_json_if(metrics_dir / "comparison.json"),
        "eval": {ts: {m: read_json_if(metrics_dir / "eval" / m / f"{ts}.json") for m in MODELS} for ts in TESTSETS},
    }


def load_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / "axolotl.yaml"
    if not path.is_file():
        raise UserError(f"{path}: not found (run the train stage first: dvc repro train)")
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: expected a mapping")
    return cfg


def is_hub_id(name: str) -> bool:
    """'org/name' with no path-like parts: a Hub repo id rather than a local folder or a bare name."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/")) and "\\" not in name


def _fmt(value: Any, signed: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _ordered(keys) -> list[str]:
    keys, card = list(keys), card_keys()
    return [k for k in card if k in keys] + [k for k in keys if k not in card]


def metrics_table(metrics: dict[str, Any], testset: str) -> str:
    """Markdown table of one test set: every model present, then Δ [CI] of fine-tuned vs each baseline.

    From comparison.json when the report ran; else the bare values of metrics/eval/<model>/<testset>.json.
    """
    comparison = metrics.get("comparison") or {}
    node = (comparison.get("testsets") or {}).get(testset) or {}
    if node.get("values"):
        models = [m for m in MODELS if any((v or {}).get(m) is not None for v in node["values"].values())]
        pairs = list(node.get("pairs") or {})
        ci = comparison.get("ci")
        ci_label = f"{round(ci * 100)}% bootstrap CI" if isinstance(ci, int | float) else "bootstrap CI"
        head = [MODEL_LABELS[m] for m in models] + [
            f"Δ vs {MODEL_LABELS.get(p.split('-', 1)[1], p)} [{ci_label}]" for p in pairs
        ]
        lines = ["| metric | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 1)]
        for key in _ordered(node["values"]):
            row = node["values"][key]
            cells = [_fmt(row.get(m)) for m in models]
            for p in pairs:
                r = node["pairs"][p].get(key) or {}
                delta = _fmt(r.get("delta"), signed=True)
                if r.get("ci_low") is not None and r.get("ci_high") is not None:
                    delta += f" [{_fmt(r['ci_low'], signed=True)}, {_fmt(r['ci_high'], signed=True)}]"
                cells.append(delta)
            lines.append(f"| {metric_label(key)} | " + " | ".join(cells) + " |")
        return "\n".join(lines)
    runs = {m: f for m, f in ((metrics.get("eval") or {}).get(testset) or {}).items() if f and not f.get("skipped")}
    if not runs:
        return ""
    models = [m for m in MODELS if m in runs]
    lines = ["| metric | " + " | ".join(MODEL_LABELS[m] for m in models) + " |", "|" + "---|" * (len(models) + 1)]
    for metric in card_metrics():
        vals = [get_path(runs[m], metric.path) for m in models]
        if all(v is None for v in vals):
            continue
        lines.append(f"| {metric_label(metric.key)} | " + " | ".join(_fmt(v) for v in vals) + " |")
    return "\n".join(lines)


def _testset_n(metrics: dict[str, Any], testset: str) -> int | None:
    node = ((metrics.get("comparison") or {}).get("testsets") or {}).get(testset) or {}
    tuned = ((metrics.get("eval") or {}).get(testset) or {}).get("finetuned") or {}
    return node.get("n") or tuned.get("n") or None


def evaluation_section(metrics: dict[str, Any]) -> str:
    parts = []
    for ts, what in TESTSETS.items():
        table = metrics_table(metrics, ts)
        if not table:
            continue
        n = _testset_n(metrics, ts)
        parts.append(f"### {ts}: {what}{f', n={n}' if n else ''}\n\n{table}\n")
    if not parts:
        return "\nNo evaluation metrics were found (metrics/eval/*/*.json, metrics/comparison.json): run `dvc repro`.\n"
    return (
        "\nThree models answer the same questions with the same retriever and greedy decoding: the base model "
        "zero-shot, the base model with solved train-split examples in the prompt (few-shot), and the base model "
        "+ this adapter. Copied from `metrics/` of the run that produced this adapter.\n\n" + "\n".join(parts)
    )


def hyperparameter_table(cfg: dict[str, Any]) -> str:
    lines = ["| key | value |", "|---|---|"]
    for key in HYPERPARAMETERS:
        if key not in cfg:
            continue
        value = cfg[key]
        if isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        elif isinstance(value, dict):
            text = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            text = str(value)
        lines.append(f"| `{key}` | {text} |")
    return "\n".join(lines)


def _train_summary(train: dict[str, Any] | None) -> str:
    if not train:
        return "metrics/train.json was not found: no training numbers recorded."
    parts = []
    if train.get("train_loss_first") is not None and train.get("train_loss_last") is not None:
        parts.append(f"train loss {_fmt(train['train_loss_first'])} → {_fmt(train['train_loss_last'])}")
    if train.get("val_loss_first") is not None and train.get("val_loss_last") is not None:
        parts.append(f"validation loss {_fmt(train['val_loss_first'])} → {_fmt(train['val_loss_last'])}")
    for key, label, unit in (
        ("steps", "optimizer steps", ""),
        ("train_examples", "training examples", ""),
        ("val_examples", "validation examples", ""),
        ("train_seconds", "training time", " s"),
        ("tokens_per_second", "throughput", " tokens/s"),
        ("peak_rss_mb", "peak host memory", " MB"),
        ("peak_gpu_mb", "peak GPU memory", " MB"),
    ):
        if train.get(key) is not None:
            parts.append(f"{label} {train[key]}{unit}")
    return "; ".join(parts) + "."


def _yaml_header(meta: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + "---\n"


def card_metadata(model: dict[str, Any], adapter_kind: str, dataset_repo: str | None, license_id: str) -> dict:
    """The card's YAML header (Hub metadata)."""
    base_name = str(model.get("name", "?"))
    meta: dict[str, Any] = {"license": license_id, "language": ["ko"], "library_name": "peft"}
    if model.get("source") == "hub" and is_hub_id(base_name):
        meta["base_model"] = base_name
    if dataset_repo and is_hub_id(dataset_repo):
        meta["datasets"] = [dataset_repo]
    meta["pipeline_tag"] = "text-generation"
    meta["tags"] = [adapter_kind, "rag", "korean", "axolotl", "brochure-rag"]
    return meta


def base_model_line(model: dict[str, Any]) -> str:
    """`name` (revision `r`) for a Hub base model, else `name` (source: ..., package `p`)."""
    base_name = str(model.get("name", "?"))
    base_on_hub = model.get("source") == "hub" and is_hub_id(base_name)
    revision = model.get("revision")
    line = f"`{base_name}`" + (f" (revision `{revision}`)" if base_on_hub and revision else "")
    if not base_on_hub:
        line += f" (source: {model.get('source', '?')}" + (
            f", package `{model['package']}`)" if model.get("package") else ")"
        )
    return line


def usage_section(system_prompt: str, load_base: str, repo_id: str, license_id: str, base_name: str) -> str:
    """How to use, intended use, limitations and license: the card's closing sections."""
    return f"""
## How to use

The adapter expects the pipeline's prompt: this system prompt, then the retrieved chunks (each prefixed with its
id, e.g. `[c012]`) and the question in the user turn, formatted with the tokenizer's chat template.

```text
{system_prompt.strip()}
```

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{load_base}")
model = PeftModel.from_pretrained(base, "{repo_id}").merge_and_unload()
tokenizer = AutoTokenizer.from_pretrained("{repo_id}")
```

## Intended use

Question answering over the Jecheon tourism brochure inside a retrieval-augmented pipeline: the model reads the
chunks it is given, answers briefly in Korean, cites chunk ids, and abstains when the chunks lack the answer.
It is a worked example of RAG-specialised fine-tuning (distractor-aware, RAFT-style) on a small synthetic dataset.

## Limitations

- Trained on a few hundred template-generated questions about one brochure: expect it to copy facts from the
  context well and to generalise poorly to other documents, question styles or long-form answers.
- Answers are only as good as the retrieved chunks; without context it is not a knowledge source about Jecheon.
- Facts (prices, phone numbers, hours) come from a 2025 brochure and go stale; verify before relying on them.
- The evaluation is small (see n above) and automatic; confidence intervals are wide.

## License

Card metadata: `{license_id}`. The adapter is a derivative of `{base_name}`: the base model's license and terms
apply to it as well. The training facts come from a public brochure of Jecheon city (제천시).
"""


def build_model_card(
    *,
    adapter_cfg: dict[str, Any],
    metrics: dict[str, Any],
    model: dict[str, Any],
    profile: str,
    system_prompt: str,
    abstain: str,
    repo_id: str,
    dataset_repo: str | None,
    license_id: str,
) -> str:
    """The adapter's README.md (Hub card): metadata header + Markdown body."""
    base_name = str(model.get("name", "?"))
    base_on_hub = model.get("source") == "hub" and is_hub_id(base_name)
    adapter_kind = str(adapter_cfg.get("adapter", "lora"))
    adapter_label = {"lora": "LoRA", "qlora": "QLoRA"}.get(adapter_kind, adapter_kind)
    meta = card_metadata(model, adapter_kind, dataset_repo, license_id)
    base_line = base_model_line(model)
    if dataset_repo and is_hub_id(dataset_repo):
        dataset_line = f"[`{dataset_repo}`](https://huggingface.co/datasets/{dataset_repo})"
    else:
        dataset_line = f"`{dataset_repo}`" if dataset_repo else "the brochure-rag QA dataset"
    load_base = base_name if base_on_hub else "<local folder made by the prepare_model stage>"
    quantised = " in 4-bit NF4 (QLoRA)" if adapter_cfg.get("load_in_4bit") else ""

    body = f"""# {repo_id.split("/")[-1]}

A {adapter_label} adapter for {base_line}, fine-tuned with Axolotl by the
brochure-rag pipeline (`{profile}` profile) to answer Korean questions about the
"2025 제천여행 길라잡이" tourism brochure **from retrieved brochure chunks**: a short answer that cites the
chunk it used (`[c012]`), or exactly "{abstain}" when the chunks do not contain the answer.

## Base model and data

| | |
|---|---|
| base model | {base_line}{quantised} |
| training data | the `sft` stage's chat examples built from the **train** split of {dataset_line}: real retriever top-k context, the gold chunk removed in a share of examples (RAFT-style abstention targets), chunks shuffled |
| evaluation data | the test split of the same dataset (questions from chunks no training question uses) and, for the sample brochure, hand-written natural questions |

## Training hyperparameters

From the resolved Axolotl config (`axolotl.yaml` in this repo, the exact file the run used):

{hyperparameter_table(adapter_cfg)}

Training: {_train_summary(metrics.get("train"))}

## Evaluation
"""
    body += evaluation_section(metrics)
    body += usage_section(system_prompt, load_base, repo_id, license_id, base_name)
    return _yaml_header(meta) + body
