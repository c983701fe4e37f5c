"""Does a model abstain on what the context holds, or on how the question is worded? (a diagnostic, not a stage)

    python scripts/abstention_margin.py --adapter models/adapter --split validation --out runs/margin.json

Every question of a data/qa split is put to the model three ways, as evaluate prompts it (same retriever, top_k,
prompt): A = an answerable question with its gold chunk among the retrieved ones; R = the same question with its gold
chunk(s) removed (the next-ranked chunks take their place: what the retriever would give if the brochure lacked the
fact); U = an unanswerable question with its retrieved chunks. For each prompt one forward pass gives the first-token
margin: the logit of the abstention's first token (prompt.abstain) minus the best other token's. Greedy decoding starts
the abstention exactly when the margin is above 0, so its share above 0 is the abstention rate on that kind of prompt.

A model that reads its context abstains on R as on U. ROC AUC of the margin, A against R and A against U, says how
well it tells them apart whatever the threshold (0.5 = not at all). Validation only: test sets are not for choices.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.common import params as P  # noqa: E402
from stages.common.errors import UserError, run_cli  # noqa: E402
from stages.common.io import read_jsonl, write_json  # noqa: E402
from stages.common.records import gold_ids  # noqa: E402
from stages.common.retrieval import Retriever, needs_dense  # noqa: E402


def prompts_by_kind(questions, retriever, k: int, method: str, depth: int) -> list[tuple[dict, list[dict], str]]:
    """(question, context chunks, kind) for every A, R and U prompt (answerable questions whose gold chunk is not
    retrieved give an R prompt only)."""
    ranked = retriever.rank([q["question"] for q in questions], k + depth, method)
    rows = []
    for q, ids in zip(questions, ranked, strict=True):
        gold = set(gold_ids(q))
        if not q["answerable"]:
            rows.append((q, [retriever.by_id[c] for c in ids[:k]], "U"))
            continue
        if gold & set(ids[:k]):
            rows.append((q, [retriever.by_id[c] for c in ids[:k]], "A"))
        rows.append((q, [retriever.by_id[c] for c in ids if c not in gold][:k], "R"))
    return rows


def margins(model, tokenizer, prompts: list[str], abstain: str) -> list[float]:
    import torch

    first = tokenizer(abstain, add_special_tokens=False)["input_ids"][0]
    out = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.device)
            logits = model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
            own = logits[first].item()
            logits[first] = float("-inf")
            out.append(round(own - logits.max().item(), 4))
    return out


def summary(rows: list[dict]) -> dict:
    from sklearn.metrics import roc_auc_score

    by_kind = {kind: [r["margin"] for r in rows if r["kind"] == kind] for kind in ("A", "R", "U")}
    result = {
        kind: {"n": len(m), "abstain_rate": round(sum(x > 0 for x in m) / len(m), 4) if m else None}
        for kind, m in by_kind.items()
    }
    for other in ("R", "U"):
        if by_kind["A"] and by_kind[other]:
            labels = [0] * len(by_kind["A"]) + [1] * len(by_kind[other])
            result[f"auc_A_vs_{other}"] = round(float(roc_auc_score(labels, by_kind["A"] + by_kind[other])), 4)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", type=Path, default=None, help="LoRA adapter folder (none: the base model)")
    ap.add_argument(
        "--fewshot", action="store_true", help="prompt as the baseline_fewshot model does (evaluate.fewshot_k examples)"
    )
    ap.add_argument("--base", type=Path, default=Path("models/base"))
    ap.add_argument("--index", type=Path, default=Path("data/index"))
    ap.add_argument("--qa", type=Path, default=Path("data/qa"))
    ap.add_argument("--split", default="validation", help="data/qa split (validation: never choose on test)")
    ap.add_argument("--depth", type=int, default=4, help="extra ranks retrieved so R prompts still have top_k chunks")
    ap.add_argument(
        "--params", type=Path, default=ROOT / "params.yaml", help="a tuning run's own params.yaml for its adapter"
    )
    ap.add_argument("--out", type=Path, required=True, help="json: per-prompt margins + summary")
    args = ap.parse_args(argv)

    split_file = args.qa / f"{args.split}.jsonl"
    if not split_file.is_file():
        raise UserError(f"{split_file}: not found (run the synthesize stage, or pick a split of {args.qa})")
    from stages.common.env import setup_env
    from stages.common.generation import load_model, render_prompts
    from stages.common.prompting import PromptLayout
    from stages.evaluate import prompt_messages, select_fewshot

    params = P.load(args.params, "evaluate", "retrieval", "prompt", "machine")
    setup_env(offline=params["machine"].offline)
    rcfg, pcfg, ecfg = params["retrieval"], params["prompt"], params["evaluate"]
    retriever = Retriever.load(args.index, with_dense=needs_dense(rcfg.method))
    rows = prompts_by_kind(read_jsonl(split_file), retriever, rcfg.top_k, rcfg.method, args.depth)
    model, tokenizer = load_model(
        args.base, args.adapter, ecfg.device, ecfg.dtype, backend="transformers", attention=ecfg.attention
    )
    questions, contexts = [r[0] for r in rows], [r[1] for r in rows]
    examples = select_fewshot("baseline_fewshot", args.qa, retriever.by_id, params) if args.fewshot else []
    example_chars = ecfg.fewshot_chunk_chars if examples else pcfg.max_context_chars
    messages = prompt_messages(questions, contexts, PromptLayout.from_params(pcfg), examples, example_chars)
    values = margins(model, tokenizer, render_prompts(tokenizer, messages), pcfg.abstain)
    per_prompt = [
        {"id": q["id"], "kind": kind, "style": q.get("style"), "margin": m}
        for (q, _, kind), m in zip(rows, values, strict=True)
    ]
    result = {
        "adapter": str(args.adapter) if args.adapter else None,
        "fewshot_k": len(examples),
        "split": args.split,
        **summary(per_prompt),
    }
    write_json(args.out, {**result, "prompts": per_prompt})
    print({k: v for k, v in result.items()})


if __name__ == "__main__":
    run_cli(main)
