"""The template's context: numbers formatted into tables and short strings, then rendered with Jinja2.

The prose and layout live in ``REPORT.md.j2`` beside this file; nothing here writes a sentence.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import yaml

from stages.common import metrics as M
from stages.common.io import read_jsonl
from stages.common.params_schema import Report, Retrieval
from stages.report.compare import (
    FAILURE_DOCS,
    MODEL_KO,
    MODELS,
    PAIRS,
    TESTSET_KO,
    TESTSETS,
    _pair_key,
    detail_keys,
    finetuned_values,
    label,
    metric_doc,
    optional_json,
    quality_keys,
)
from stages.report.tables import (
    cell,
    cost_table,
    example_blocks,
    failure_examples,
    failure_table,
    fmt,
    fmt_ci,
    fmt_delta,
    judge_table,
    main_table,
    md_table,
    significant,
    style_table,
    top_failure,
    type_table,
)

log = logging.getLogger("report")

TEMPLATE = Path(__file__).with_name("REPORT.md.j2")

# Axolotl keys worth a row in the hyper-parameter table (in this order, when present).
HYPER_KEYS = (
    "base_model",
    "adapter",
    "load_in_4bit",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "sequence_len",
    "sample_packing",
    "micro_batch_size",
    "gradient_accumulation_steps",
    "num_epochs",
    "max_steps",
    "learning_rate",
    "lr_scheduler",
    "warmup_ratio",
    "optimizer",
    "weight_decay",
    "bf16",
    "train_on_inputs",
    "eval_steps",
    "val_set_size",
    "seed",
)


def testset_context(ts: str, t: dict[str, Any], run: dict[str, Any], cfg: Report) -> dict[str, Any]:
    if t.get("skipped"):
        return {"name": ts, "ko": TESTSET_KO[ts], "skipped": True, "reason": t["reason"]}
    preds = run["preds"]
    limit = cfg.max_example_chars
    pct = int(round(float(cfg.ci) * 100))
    models = t["models"]
    headers = ["지표", *[MODEL_KO[m] for m in MODELS]] + [
        f"{MODEL_KO[a]} − {MODEL_KO[b]} Δ [{pct}% CI]" for a, b in PAIRS
    ]
    ref_model = "baseline_fewshot" if "baseline_fewshot" in preds else "baseline"
    return {
        "name": ts,
        "ko": TESTSET_KO[ts],
        "skipped": False,
        "n": t["n"],
        "n_answerable": t["n_answerable"],
        "n_unanswerable": t["n_unanswerable"],
        "has_fewshot": "baseline_fewshot" in models,
        "main_table": md_table(headers, main_table(t, quality_keys())),
        "detail_table": md_table(headers, main_table(t, detail_keys())),
        "type_table": type_table(t),
        "style_table": style_table(t),
        "failure_table": failure_table(t),
        "failure_examples": md_table(
            ["실패 유형", "모델", "id", "질문", "정답", "답변"], failure_examples(preds, None, limit // 2)
        ),
        "style_examples": md_table(
            ["스타일", "모델", "실패 유형", "id", "질문", "답변"], failure_examples(preds, "style", limit // 2)
        ),
        "wrong_abstention": {m: fmt(v) for m, v in t["wrong_abstention_share"].items()},
        "citation_misses": (t.get("citation_misses") or {}).get("finetuned"),
        "cost_table": cost_table(t),
        "examples": example_blocks(preds, ref_model, limit),
        "ref_model_ko": MODEL_KO[ref_model],
        "vs_baseline": significant(t, _pair_key("finetuned", "baseline")),
        "vs_fewshot": significant(t, _pair_key("finetuned", "baseline_fewshot"))
        if "baseline_fewshot" in models
        else None,
        "judge_table": judge_table(t),
        "top_failure": {m: top_failure(t["failures"][m]) for m in models},
        "correct_ci_width": _ci_width(t["pairs"].get(_pair_key("finetuned", "baseline"), {}).get("correct")),
    }


def targets_table(rows: list[dict[str, Any]], pct: int) -> str:
    status_ko = {"met": "✅ 충족", "missed": "❌ 미달", "not measured": "– 측정 안 됨"}
    body = []
    for r in rows:
        c = r["condition"]
        if "vs" in c:
            what = f"파인튜닝 − {MODEL_KO.get(c['vs'], c['vs'])}:"
            parts = [f"Δ ≥ {c['delta_min']:+.2f}"] if "delta_min" in c else []
            parts += [f"{pct}% CI 하한 > {c['ci_low_above']:+.2f}"] if "ci_low_above" in c else []
            measured = fmt_delta(r["value"]) + (f" {fmt_ci(*r['ci'])}" if r.get("ci") else "")
        else:
            what = "파인튜닝:"
            parts = [f"≥ {c['min']:.2f}"] if "min" in c else []
            parts += [f"≤ {c['max']:.2f}"] if "max" in c else []
            measured = fmt(r["value"])
        name = "잘못된 기권 비율" if r["metric"] == "wrong_abstention_share" else label(r["metric"])
        body.append(
            [
                TESTSET_KO.get(r["testset"], r["testset"]),
                name,
                f"{what} {' 그리고 '.join(parts)}",
                measured,
                status_ko[r["status"]],
            ]
        )
    return md_table(["테스트셋", "지표", "목표", "측정값", "판정"], body) if body else ""


def _ci_width(r: dict[str, Any] | None) -> str | None:
    if not r or r.get("ci_low") is None or r.get("ci_high") is None:
        return None
    return f"{r['ci_high'] - r['ci_low']:.3f}"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def hyperparameters(adapter: Path | None, train_cfg: dict[str, Any]) -> tuple[dict[str, Any], str]:
    path = adapter / "axolotl.yaml" if adapter else None
    if path and path.is_file():
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return {k: cfg[k] for k in HYPER_KEYS if k in cfg}, f"`{path.as_posix()}`"
    return dict(train_cfg), "params.yaml `train`"


def qa_samples(qa_dir: Path) -> list[dict[str, Any]]:
    path = qa_dir / "train.jsonl"
    if not path.is_file():
        return []
    seen: dict[str, dict[str, Any]] = {}
    for q in read_jsonl(path):
        seen.setdefault(q["type"], q)
    return [seen[t] for t in sorted(seen)]


def dataset_context(ds: dict[str, Any] | None, samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"present": bool(ds)}
    if ds:
        splits = [k for k, v in ds.items() if isinstance(v, dict) and "questions" in v]
        types = sorted({t for s in splits for t in ds[s].get("by_type", {})})
        rows = [
            [
                s,
                ds[s].get("questions"),
                ds[s].get("answerable"),
                ds[s].get("unanswerable"),
                ds[s].get("chunks"),
                *[ds[s].get("by_type", {}).get(t, 0) for t in types],
            ]
            for s in splits
        ]
        out["split_table"] = md_table(["분할", "질문", "답변 가능", "답변 불가", "원천 청크", *types], rows)
        facts = sorted({f for s in splits for f in ds[s].get("by_fact", {})})
        out["fact_table"] = (
            md_table(
                ["사실 유형", *splits], [[f, *[ds[s].get("by_fact", {}).get(f, 0) for s in splits]] for f in facts]
            )
            if facts
            else ""
        )
    out["samples_table"] = (
        md_table(
            ["유형", "사실", "질문", "정답", "근거 청크"],
            [[q["type"], q.get("fact", "–"), cell(q["question"]), cell(q["answer"]), q["chunk_id"]] for q in samples],
        )
        if samples
        else ""
    )
    return out


def retrieval_context(ret: dict[str, Any] | None, rcfg: Retrieval) -> dict[str, Any]:
    if not ret:
        return {"present": False}
    methods = [k for k, v in ret.items() if isinstance(v, dict) and "mrr" in v]
    ks = sorted({k for m in methods for k in ret[m] if k.startswith("recall@")}, key=lambda s: int(s[7:]))
    extra = [k for k in ("ndcg@10", "latency_ms_per_query") if any(k in ret[m] for m in methods)]
    active = rcfg.method
    rows = [
        [
            f"**{m}** (사용)" if m == active else m,
            *[fmt(ret[m].get(k)) for k in [*ks, "mrr"]],
            *[fmt(ret[m].get(k), 3 if k == "ndcg@10" else 2) for k in extra],
        ]
        for m in methods
    ]
    k = rcfg.top_k
    recall_k = ret[active].get(f"recall@{k}") if isinstance(ret.get(active), dict) else None
    return {
        "present": True,
        "table": md_table(["방식", *ks, "MRR", *extra], rows),
        "n_questions": fmt(ret.get("n_questions")),
        "n_chunks": fmt(ret.get("n_chunks")),
        "embedder": ret.get("embedder", "–"),
        "recall_at_k": fmt(recall_k) if recall_k is not None else None,
    }


def build_context(
    args: argparse.Namespace,
    params: dict[str, Any],
    runs: dict[str, Any],
    comp: dict[str, Any],
    drawn: dict[str, Any],
    train_curve,
    val_curve,
) -> dict[str, Any]:
    cfg = params["report"]
    hyper, hyper_src = hyperparameters(args.adapter, params["train"])
    train = optional_json(args.metrics_dir / "train.json")
    ret = optional_json(args.metrics_dir / "retrieval.json")
    ecfg = params["evaluate"]
    testsets = {ts: testset_context(ts, comp["testsets"][ts], runs[ts], cfg) for ts in TESTSETS}
    loss: dict[str, Any] = {"train": None, "val": None}
    if train_curve:
        loss["train"] = (
            f"{train_curve[0][1]:.3f}",
            int(train_curve[0][0]),
            f"{train_curve[-1][1]:.3f}",
            int(train_curve[-1][0]),
        )
    if val_curve:
        loss["val"] = (f"{val_curve[0][1]:.3f}", f"{val_curve[-1][1]:.3f}", f"{min(v for _, v in val_curve):.3f}")
    return {
        "p": params,
        "brochure_path": params["data"].get("pdf") or "–",
        "brochure": Path(params["data"].get("pdf") or "").name or "–",
        "model_name": params["model"].get("name", "–"),
        "embedder": (ret or {}).get("embedder") or params["index"].get("embedder", "–"),
        "pct": int(round(float(cfg.ci) * 100)),
        "n_resamples": comp["n_resamples"],
        "seed": comp["seed"],
        "fewshot_k": ecfg.get("fewshot_k"),
        "fewshot_chars": ecfg.get("fewshot_chunk_chars"),
        "ts": testsets,
        "template": testsets["template"],
        "natural": testsets["natural"],
        "dataset": dataset_context(optional_json(args.metrics_dir / "dataset.json"), qa_samples(args.qa)),
        "retrieval": retrieval_context(ret, params["retrieval"]),
        "metric_docs": md_table(
            ["지표", "정의", "선택 이유"],
            [
                list(metric_doc(k))
                for k in [m.key for m in M.METRICS]
                if any(not t.get("skipped") and k in t["values"] for t in comp["testsets"].values())
            ],
        ),
        "judge_model": (ecfg.get("judge") or {}).get("model", "–"),
        "judge_on": any(t.get("judge_table") for t in testsets.values()),
        "hyper_source": hyper_src,
        "hyper_table": md_table(["키", "값"], [[f"`{k}`", cell(v)] for k, v in hyper.items()]) if hyper else "",
        "train_table": md_table(
            ["항목", "값"],
            [[f"`{k}`", fmt(v)] for k, v in _flatten(train).items() if isinstance(v, int | float | str | bool)],
        )
        if train
        else "",
        "figures": drawn,
        "targets_table": targets_table(comp.get("targets") or [], int(round(float(cfg.ci) * 100))),
        "seed_spread": seed_spread_context(optional_json(args.metrics_dir / "seed_spread.json"), comp),
        "loss": loss,
        "failure_docs": FAILURE_DOCS,
        "model_ko": MODEL_KO,
    }


SPREAD_LABELS = {"wrong_abstention_share": "잘못된 기권 비율"}


def seed_spread_context(spread: dict[str, Any] | None, comp: dict[str, Any]) -> dict[str, Any] | None:
    """The fine-tune over several trainings of its recipe (scripts/seed_spread.py), shown only when it belongs to
    this report: one of its trainings has exactly this fine-tune's values. A spread of another brochure's or an
    older adapter's trainings is left out."""
    runs = (spread or {}).get("runs") or {}
    if not runs:
        return None
    current = finetuned_values(comp)
    matched = [
        name
        for name, run in runs.items()
        if run.get("finetuned") and all(current.get(k) == v for k, v in run["finetuned"].items())
    ]
    if not matched:
        log.info("report: metrics/seed_spread.json holds none of this fine-tune's trainings: left out")
        return None
    keys = list(next(iter(runs.values()))["finetuned"])
    headers = [
        "학습",
        *[
            f"{TESTSET_KO[ts].split()[0]} {SPREAD_LABELS.get(k) or label(k)}"
            for ts, k in (key.split(".", 1) for key in keys)
        ],
        "목표 달성",
    ]
    rows = [
        [
            f"{name} (이 보고서)" if name == matched[0] else name,
            *[fmt(run["finetuned"].get(k)) for k in keys],
            f"{run['targets_met']}/{len(run['targets'])}",
        ]
        for name, run in runs.items()
    ]
    stats = (spread.get("summary") or {}).get("spread") or {}
    rows.append(
        ["평균 (sd)", *[f"{fmt(stats[k]['mean'])} ({fmt(stats[k]['sd'])})" if k in stats else "–" for k in keys], ""]
    )
    return {"n": len(runs), "matched": matched[0], "table": md_table(headers, rows)}


def render(ctx: dict[str, Any], template: Path = TEMPLATE) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template.parent)),
        undefined=jinja2.StrictUndefined,  # a typo in the template fails the stage instead of printing nothing
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # markdown, not HTML
    )
    env.filters.update({"fmt": fmt, "delta": fmt_delta, "cell": cell})
    text = env.get_template(template.name).render(**ctx)
    # Collapse the blank-line runs that conditional blocks leave behind.
    lines: list[str] = []
    for line in text.splitlines():
        if line.strip() == "" and lines and lines[-1].strip() == "":
            continue
        lines.append(line.rstrip())
    return "\n".join(lines).strip() + "\n"
