"""sft: QA pairs -> chat-format RAG training examples that teach answering (with citations) and abstaining.

RAFT-style (arXiv 2403.10131): each answerable training question is shown with
*different* contexts, so the model learns to find the gold chunk among hard
distractors rather than to recognise one prompt:

* gold views (`sft.views_per_question` per answerable question): the gold chunk(s)
  plus hard distractors - view 0 takes the retriever's best non-gold chunks, further
  views sample other distractors from its top `sft.distractor_depth`; target = the
  answer sentence (`answer`) + a `[cNNN]` citation of every chunk it used;
* gold-removed views: the same question with the gold chunk(s) taken out (only
  distractors left); target = the abstention phrase. Their number is set so that
  abstention targets (these + unanswerable questions) make up `sft.abstain_share`
  of the rows: too many taught the model to abstain by reflex (issue 13);
* unanswerable questions: the retrieved chunks as they are; target = abstention.

`sft.gold_removed_share` sets how the abstention rows divide between the two kinds. At 0
the unanswerable questions fill them; but the generator's unanswerable questions come
from a few wordings ("~에 화장실이 있나요?", every policy question), so a model can learn to
abstain on the wording instead of on the context. A gold-removed row asks an answerable
question, in any style, whose answer is simply not in its context: only the context
tells it apart from the same question answered elsewhere.

Follow-ups (`sft.followups_per_row`, training rows only): after its answer a row asks further questions
about the context it already shows, in later chat turns: answered with citations when their gold chunks
are shown, abstained on when not (`add_followups`). One context then carries both targets, and with
`sft.max_rows` binding the follow-ups ask training questions that no row asks, at the cost of a question
and an answer instead of a whole context.

Comparison and multi-hop questions need several chunks (`chunk_ids`): all count as
gold, are kept or removed together, and are all cited.

No prompt shows a chunk that a later split is about: training prompts draw only on
chunks no validation/test question is built from, validation prompts on chunks no
test question is built from (a test chunk seen as a distractor in training leaks
its text into the weights). Chunks are shuffled inside each prompt so the gold's
position carries no signal. `sft.max_rows` / `sft.max_val_rows` cap the rows (the
CPU cost budget: training time is linear in rows), keeping the abstention share; when the cap
binds, view-0 rows go first, so questions get one gold context each before any gets a second.
With `sft.balance_styles` the capped picks go round-robin over question styles: a random cap keeps
the generator's style mix (direct 147 training questions, where_to_book 3), so the rare ways people ask
(yes/no, when, multi-part) got few answer rows, and a third or more of the yes/no rows (half those
questions are unanswerable) were abstentions, 10% overall: the style predicted the abstention. Off in params.yaml: on validation
it did not win over two training seeds (docs/training-and-cost.md "Tuning on validation").

    python -m stages.sft --qa data/qa --index data/index --out data/sft
"""

from __future__ import annotations

import argparse
import logging
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from stages.common import params as P
from stages.common.env import setup_env
from stages.common.errors import UserError, run_cli
from stages.common.io import atomic_dir, dump_jsonl, read_jsonl, write_json
from stages.common.params_schema import Prompt, Retrieval, Sft
from stages.common.prompting import PromptLayout, build_messages, question_line, target_answer
from stages.common.records import gold_ids
from stages.common.retrieval import Retriever, needs_dense

log = logging.getLogger("sft")

SPLITS = ("train", "validation", "test")


def split_chunks(qa: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    """The chunk ids each split's questions are built from."""
    return {split: {c for q in qa.get(split, []) for c in gold_ids(q)} for split in SPLITS}


def allowed_chunks(all_ids: list[str], by_split: dict[str, set[str]], split: str) -> set[str]:
    """Chunks a `split` prompt may show: never a test chunk; for training not a validation-only chunk either."""
    banned = set(by_split["test"])
    if split == "train":
        banned |= by_split["validation"] - by_split["train"]
    return set(all_ids) - banned


def make_context(
    question: dict[str, Any], retrieved: list[str], k: int, keep_gold: bool, distractor_pool: list[str]
) -> list[str]:
    """Chunk ids for the prompt: top-k retrieved, with the gold chunk(s) forced in or taken out."""
    if not question["answerable"]:
        return retrieved[:k]
    golds = gold_ids(question)
    others = [cid for cid in retrieved if cid not in golds] + [
        c for c in distractor_pool if c not in golds and c not in retrieved
    ]
    if keep_gold:
        return [*golds, *others[: max(k - len(golds), 0)]]
    return others[:k]


def view_context(
    question: dict[str, Any], hard: list[str], k: int, keep_gold: bool, view: int, rng: random.Random
) -> list[str]:
    """Context of one view: view 0 = the top hard distractors, later views = a sample of the hard pool."""
    golds = gold_ids(question) if question["answerable"] else []
    need = k - len(golds) if keep_gold else k
    pool = [c for c in hard if c not in golds]
    picked = pool[:need] if view == 0 else rng.sample(pool, min(need, len(pool)))
    return [*golds, *picked] if keep_gold else picked


def build_example(
    question: dict[str, Any],
    context_ids: list[str],
    by_id: dict[str, dict[str, Any]],
    layout: PromptLayout,
    abstain: str,
    rng: random.Random,
    view: int = 0,
    rank: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One training row. Its chunks are shuffled, then, given the retriever's `rank` of each
    (``sft.context_order: retrieval``), put in that order: the same chunks and random draws either way."""
    ids = list(context_ids)
    rng.shuffle(ids)
    if rank is not None:
        ids.sort(key=rank.__getitem__)
    golds = gold_ids(question)
    gold_in = question["answerable"] and all(g in ids for g in golds)
    answer = target_answer(question["answer"], golds) if gold_in else abstain
    chunks = [by_id[c] for c in ids]
    messages = build_messages(question["question"], chunks, layout)
    return {
        "messages": [*messages, {"role": "assistant", "content": answer}],
        "meta": {
            "qa_id": question["id"],
            "type": question["type"],
            "answerable": question["answerable"],
            "style": question.get("style"),
            "view": view,
            "gold_chunk_id": question["chunk_id"],
            "gold_chunk_ids": golds,
            "context_ids": ids,
            "gold_in_context": gold_in,
            "target": "answer" if gold_in else "abstain",
        },
    }


def seeded_pick(items: list, n: int, rng: random.Random, group: Callable[[Any], str] | None = None) -> list:
    """`n` of `items`, a seeded random choice.

    With `group`, round-robin over the groups (each in seeded random order, the groups of one round in random
    order too): a small group is taken whole before a big one is cut, so a cap keeps every question style.
    """
    order = list(items)
    rng.shuffle(order)
    if group is not None:
        seen: Counter = Counter()
        rounds = []
        for item in order:
            rounds.append(seen[group(item)])
            seen[group(item)] += 1
        # a stable sort by round: within a round the shuffled order stays
        order = [item for _, item in sorted(zip(rounds, order, strict=True), key=lambda pair: pair[0])]
    return order[: max(n, 0)]


def abstention_count(n_answer_rows: int, n_unanswerable: int, share: float, max_rows: int) -> int:
    """Abstention rows that make up `share` of the rows: of `max_rows` when the cap binds, else beside the answer rows."""
    if max_rows and n_answer_rows + n_unanswerable > max_rows:
        return round(max_rows * share)
    if share >= 1:
        return n_answer_rows + n_unanswerable
    return round(share * n_answer_rows / (1 - share))


def split_abstentions(
    answerable: list[int],
    unanswerable: list[int],
    n_abstain: int,
    gold_removed_share: float,
    rng: random.Random,
    group: Callable[[int], str] | None = None,
) -> tuple[list[int], list[int]]:
    """`n_abstain` abstention rows as (unanswerable questions, answerable questions shown without their gold).

    `gold_removed_share` of them are gold-removed (at most one per answerable question); the unanswerable
    questions fill the rest, and gold-removed rows fill in when there are too few of them. Seeded picks,
    round-robin over `group` (the question style) when given.
    """
    n_removed = min(len(answerable), round(n_abstain * gold_removed_share))
    n_unanswerable = min(len(unanswerable), n_abstain - n_removed)
    n_removed = min(len(answerable), n_abstain - n_unanswerable)
    return sorted(seeded_pick(unanswerable, n_unanswerable, rng, group)), sorted(
        seeded_pick(answerable, n_removed, rng, group)
    )


def pick_answer_rows(
    rows: list[tuple[int, int]], n: int, rng: random.Random, group: Callable[[tuple[int, int]], str] | None = None
) -> list[tuple[int, int]]:
    """`n` of the (view, question index) answer rows: every view 0 before any later view, each a seeded pick."""
    first = [r for r in rows if r[0] == 0]
    picked = seeded_pick(first, n, rng, group)
    return sorted(picked + seeded_pick([r for r in rows if r[0] > 0], n - len(picked), rng, group))


def add_followups(
    examples: list[dict[str, Any]],
    usable: list[dict[str, Any]],
    hard: list[list[str]],
    per_row: int,
    share: float,
    depth: int,
    abstain: str,
    rng: random.Random,
) -> None:
    """Append `per_row` follow-up turns to every row: more questions about the context it already shows.

    A follow-up whose gold chunks are all shown is answered (answer + citations); one whose answer is not
    there gets the abstention: an unanswerable question about an entry shown, or an answerable question
    whose gold is a near miss (ranked in the row question's top `depth`, not shown). `share` of the
    follow-ups abstain. One context then teaches both answering and abstaining, so abstaining has to be
    read from the question against the context. Questions no row asks yet go first: with `sft.max_rows`
    binding, follow-ups bring in training questions the rows leave out, for ~60 tokens each instead of a
    whole context.
    """
    index = {q["id"]: n for n, q in enumerate(usable)}
    golds = [set(gold_ids(q)) if q["answerable"] else set() for q in usable]
    answerable = [j for j, q in enumerate(usable) if q["answerable"]]
    unanswerable = [j for j, q in enumerate(usable) if not q["answerable"]]
    asked = Counter(index[e["meta"]["qa_id"]] for e in examples)
    slots = len(examples) * per_row
    abstaining = set(rng.sample(range(slots), round(slots * share)))
    for row, e in enumerate(examples):
        i = index[e["meta"]["qa_id"]]
        shown = set(e["meta"]["context_ids"])
        near = set(hard[i][:depth]) - shown
        pools = {
            "answer": [j for j in answerable if golds[j] <= shown],
            "abstain": [j for j in unanswerable if usable[j]["chunk_id"] in shown]
            + [j for j in answerable if golds[j] & near and not golds[j] & shown],
        }
        in_row = {i}
        e["meta"]["followups"] = []
        for slot in range(row * per_row, (row + 1) * per_row):
            want = "abstain" if slot in abstaining else "answer"
            for target in (want, "answer" if want == "abstain" else "abstain"):
                candidates = [j for j in pools[target] if j not in in_row]
                if candidates:
                    break
            else:
                continue
            rng.shuffle(candidates)
            j = min(candidates, key=lambda c: asked[c])  # first of the least asked, in shuffled order
            asked[j] += 1
            in_row.add(j)
            q = usable[j]
            cited = sorted(golds[j])
            reply = target_answer(q["answer"], cited) if target == "answer" else abstain
            e["messages"] += [
                {"role": "user", "content": question_line(q["question"])},
                {"role": "assistant", "content": reply},
            ]
            e["meta"]["followups"].append(
                {"qa_id": q["id"], "style": q.get("style"), "answerable": q["answerable"], "target": target}
            )


def build_split(
    questions: list[dict[str, Any]],
    retriever: Retriever,
    cfg: Sft,
    rcfg: Retrieval,
    prompt_cfg: Prompt,
    allowed: set[str],
    *,
    views: int,
    max_rows: int,
    followups: int = 0,
    seed_offset: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of one split and their counts (questions dropped, rows per target, test chunks shown = 0)."""
    share = float(cfg.abstain_share)
    layout = PromptLayout.from_params(prompt_cfg)
    in_retrieval_order = cfg.context_order == "retrieval"
    depth = cfg.distractor_depth
    k = rcfg.top_k
    # A question whose gold chunk a prompt may not show cannot be trained on in this split.
    usable = [q for q in questions if not q["answerable"] or all(g in allowed for g in gold_ids(q))]
    dropped = len(questions) - len(usable)
    # Rank deep enough that `depth` allowed, non-gold chunks survive the filter.
    ranked = retriever.rank([q["question"] for q in usable], len(retriever.by_id), rcfg.method) if usable else []
    hard = [[c for c in r if c in allowed][: depth + 4] for r in ranked]

    # Separate random streams, so that which abstention rows are drawn does not change which answer rows are.
    rng_answers, rng_abstentions, rng_contexts = (
        random.Random(f"{cfg.seed}:{seed_offset}:{use}") for use in ("answers", "abstentions", "contexts")
    )
    style = (lambda i: usable[i].get("style") or "") if cfg.balance_styles else None
    answerable = [i for i, q in enumerate(usable) if q["answerable"]]
    unanswerable = [i for i, q in enumerate(usable) if not q["answerable"]]
    answer_rows = [(v, i) for i in answerable for v in range(views)]
    n_abstain = abstention_count(len(answer_rows), len(unanswerable), share, max_rows)
    picked_unanswerable, removed = split_abstentions(
        answerable, unanswerable, n_abstain, cfg.gold_removed_share, rng_abstentions, style
    )
    n_answer = len(answer_rows)
    if max_rows:
        n_answer = min(n_answer, max_rows - len(picked_unanswerable) - len(removed))
    row_style = (lambda row: style(row[1])) if style else None
    answer_rows = pick_answer_rows(answer_rows, n_answer, rng_answers, row_style)
    # (question index, keep gold, view): sorted, rows follow question order, a question's gold-removed view first
    rows = [(i, True, v) for v, i in answer_rows] + [(i, False, 0) for i in picked_unanswerable + removed]

    examples = []
    for i, keep_gold, view in tqdm(sorted(rows), desc="sft", leave=False):
        q = usable[i]
        pool = [c for c in hard[i] if q["answerable"] is False or c not in gold_ids(q)][:depth]
        ids = view_context(q, pool, k, keep_gold, view, rng_contexts)
        rank = {c: pos for pos, c in enumerate(ranked[i])} if in_retrieval_order else None  # every chunk is ranked
        examples.append(build_example(q, ids, retriever.by_id, layout, prompt_cfg.abstain, rng_contexts, view, rank))
    if followups:
        rng_followups = random.Random(f"{cfg.seed}:{seed_offset}:followups")
        add_followups(examples, usable, hard, followups, share, depth, prompt_cfg.abstain, rng_followups)
    leaks = sum(c not in allowed for e in examples for c in e["meta"]["context_ids"])
    if leaks:  # guarded above; a failure here is a bug, not bad input
        raise AssertionError(f"sft: {leaks} prompt chunks outside the allowed set")
    stats = {
        "questions": len(questions),
        "questions_dropped_gold_not_allowed": dropped,
        "rows": len(examples),
        "answer_rows": sum(e["meta"]["target"] == "answer" for e in examples),
        "abstain_rows": sum(e["meta"]["target"] == "abstain" for e in examples),
        "gold_removed_rows": sum(e["meta"]["target"] == "abstain" and e["meta"]["answerable"] for e in examples),
        "allowed_chunks": len(allowed),
        "prompt_chunks_from_other_splits": leaks,
    }
    stats["abstain_share"] = round(stats["abstain_rows"] / max(len(examples), 1), 4)
    if followups:
        turns = [f for e in examples for f in e["meta"]["followups"]]
        stats["followup_turns"] = {t: sum(f["target"] == t for f in turns) for t in ("answer", "abstain")}
        asked = {e["meta"]["qa_id"] for e in examples} | {f["qa_id"] for f in turns}
        stats["questions_asked"] = len(asked)
    by_style: dict[str, Counter] = {}
    for e in examples:
        by_style.setdefault(e["meta"]["style"] or "", Counter())[e["meta"]["target"]] += 1
    stats["rows_by_style"] = {st: {t: n[t] for t in ("answer", "abstain")} for st, n in sorted(by_style.items())}
    return examples, stats


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qa", type=Path, required=True)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    params = P.load(args.params, "sft", "retrieval", "prompt", "machine")
    cfg = params["sft"]
    setup_env(offline=params["machine"].offline)
    qa: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        path = args.qa / f"{split}.jsonl"
        if not path.is_file():
            raise UserError(f"{path}: not found (run the synthesize stage first)")
        qa[split] = read_jsonl(path)
    if not qa["train"]:
        raise UserError(f"{args.qa / 'train.jsonl'}: empty training split")
    retriever = Retriever.load(args.index, with_dense=needs_dense(params["retrieval"].method))
    by_split = split_chunks(qa)
    all_ids = sorted(retriever.by_id)
    out: dict[str, list[dict[str, Any]]] = {}
    stats: dict[str, Any] = {}
    caps = {
        "train": (cfg.views_per_question, cfg.max_rows, cfg.followups_per_row),
        "validation": (1, cfg.max_val_rows, 0),  # one view, one question: a stable loss to watch
    }
    for offset, split in enumerate(("train", "validation")):
        views, max_rows, followups = caps[split]
        allowed = allowed_chunks(all_ids, by_split, split)
        out[split], stats[split] = build_split(
            qa[split], retriever, cfg, params["retrieval"], params["prompt"], allowed,
            views=views, max_rows=max_rows, followups=followups, seed_offset=offset,
        )  # fmt: skip
    if not out["train"]:
        raise UserError("sft: no training rows (every training question's gold chunk belongs to another split?)")
    with atomic_dir(args.out) as tmp:
        for split, rows in out.items():
            dump_jsonl(tmp / f"{split}.jsonl", rows)
        write_json(tmp / "stats.json", stats)
    for split, s in stats.items():
        log.info(
            "%s: %d rows from %d questions (%d answer, %d abstain = %.0f%%, %d dropped: gold chunk in another split)",
            split, s["rows"], s["questions"], s["answer_rows"], s["abstain_rows"], 100 * s["abstain_share"],
            s["questions_dropped_gold_not_allowed"],
        )  # fmt: skip


if __name__ == "__main__":
    run_cli(main)
