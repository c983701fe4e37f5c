"""synthesize: chunks -> Korean QA pairs split BY SOURCE CHUNK into train/validation/test.

The `rules` generator (offline, deterministic) finds facts in each chunk — address,
phone, price, rooms, hours, duration, menu, table cells, key sentences — and asks
about them with several honorific templates; it also asks plausible questions the
brochure cannot answer (expected answer: the abstention phrase). Every answer is
checked against its chunk before it is kept.

Splitting by chunk (not by pair) is the point: a test question's chunk never backs
a training question, so the test measures reading the context, not memorisation.

    python -m stages.synthesize --chunks data/chunks --out data/qa --metrics metrics/dataset.json
"""

from __future__ import annotations

import argparse
import logging
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from stages.common import params as P
from stages.common.errors import UserError, run_cli
from stages.common.io import atomic_dir, dump_jsonl, read_jsonl, write_json
from stages.common.korean import josa, normalize

log = logging.getLogger("synthesize")

SPLITS = ("train", "validation", "test")

# ------------------------------------------------------------------ facts
ADDRESS = re.compile(r"제천시\s[^,()\n/]*?(?:\d+(?:-\d+)?(?:번지)?(?:\s*\d+층)?|일원)(?=[\s,)/]|$)")
PHONE = re.compile(r"0\d{1,2}[-.]\s?\d{3,4}[-.]\s?\d{4}")
PRICE = re.compile(r"\d{1,3}(?:,\d{3})+원")
ROOMS = re.compile(r"객실\s*수?\s*(\d+)")
HOURS = re.compile(r"\d{1,2}:\d{2}\s*~\s*\d{1,2}:\d{2}")
DURATION = re.compile(r"소요\s*시간\s*[:：]?\s*([0-9~시간 반분]+[0-9시간반분])")
LABELLED_PRICE = re.compile(r"(?P<label>[가-힣A-Za-z0-9 ]{2,15}?)\s*[:：(]\s*(?P<price>\d{1,3}(?:,\d{3})+원)")
MENU_ITEM = re.compile(r"(?P<name>[가-힣A-Za-z0-9 &]{2,20}?)\s*\((?P<menu>[^()]{2,40})\)")

TEMPLATES: dict[str, list[str]] = {
    "address": [
        "{e_eui} 주소는 어디인가요?",
        "{e_eun} 어디에 있나요?",
        "{e}의 위치를 알려주세요.",
        "{e}에 가려면 어느 주소로 가야 하나요?",
    ],
    "phone": [
        "{e_eui} 전화번호는 무엇인가요?",
        "{e}에 문의하려면 어디로 전화하면 되나요?",
        "{e} 연락처를 알려주세요.",
    ],
    "rooms": [
        "{e_eui} 객실 수는 몇 개인가요?",
        "{e}에는 객실이 몇 개 있나요?",
        "{e_eun} 객실을 몇 개 갖추고 있나요?",
    ],
    "hours": [
        "{e_eui} 운영시간은 어떻게 되나요?",
        "{e_eun} 몇 시부터 몇 시까지 운영하나요?",
    ],
    "duration": [
        "{e_eun} 시간이 얼마나 걸리나요?",
        "{e_eui} 소요시간은 얼마인가요?",
    ],
    "price": [
        "{e_eui} 요금은 얼마인가요?",
        "{e_eun} 가격이 얼마예요?",
        "{e} 이용 요금이 궁금합니다. 얼마인가요?",
    ],
    "menu": [
        "{e_eui} 대표 메뉴는 무엇인가요?",
        "{e}에서는 어떤 음식을 먹을 수 있나요?",
        "{e}에 가면 무엇을 먹으면 좋을까요?",
    ],
    "sentence": [
        "{e_eun} 어떤 곳인가요?",
        "{e}에 대해 간단히 소개해 주세요.",
        "{e_eun} 어떤 특징이 있나요?",
    ],
    "table": [
        "{title}에서 {key_eui} {col_eun} 무엇인가요?",
        "{title} 안내에 따르면 {key_eui} {col_eun} 어떻게 되나요?",
    ],
}

# Aspects a tourism brochure like ours never states: asking about them must give the abstention.
UNANSWERABLE: list[tuple[str, str]] = [
    ("주차", "{e_eui} 주차 요금은 얼마인가요?"),
    ("반려", "{e}에 반려동물을 데리고 갈 수 있나요?"),
    ("휠체어", "{e}에서 휠체어를 빌릴 수 있나요?"),
    ("와이파이", "{e}에서 와이파이를 쓸 수 있나요?"),
    ("수유실", "{e}에 수유실이 있나요?"),
    ("전기차", "{e}에 전기차 충전소가 있나요?"),
    ("셔틀", "{e}까지 가는 셔틀버스 시간표를 알려주세요."),
    ("외국어", "{e}에서 외국어 안내 서비스를 받을 수 있나요?"),
]


def _fill(template: str, **values: str) -> str:
    e = values.get("e", "")
    extra = {"e_eui": f"{e}의", "e_eun": josa(e, "은/는") if e else ""}
    if "key" in values:
        extra["key_eui"] = f"{values['key']}의"
    if "col" in values:
        extra["col_eun"] = josa(values["col"], "은/는")
    return template.format(**values, **extra)


def entity_name(title: str) -> str:
    """'포레스트 리솜 (레스트리 리솜)' -> '포레스트 리솜': brackets hold notes, not the name people ask with."""
    bare = " ".join(re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", title).split())
    return bare if len(bare) >= 2 else title


def _first_sentence(text: str, title: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(title)), 0)
    body = re.sub(r"\([^)]*\)", "", "\n".join(lines[start:]))  # drop parenthesised addresses/notes
    body = ADDRESS.sub("", body, count=1).strip()  # entries often open with their address
    body = body.split(":", 1)[1] if ":" in body.split("\n")[0][:45] else body
    sentence = re.split(r"(?<=[.!?])\s", body.strip())[0].strip()
    return sentence if len(sentence) >= 15 else ""


def entity_facts(chunk: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(fact, entity, answer) triples for an entry chunk (one attraction, lodging, ...)."""
    e, text = entity_name(chunk["title"]), chunk["text"]
    facts: list[tuple[str, str, str]] = []
    for fact, pattern in (("address", ADDRESS), ("phone", PHONE), ("hours", HOURS)):
        found = sorted({normalize(m.group(0)) for m in pattern.finditer(text)})
        if len(found) == 1:  # ambiguous when a chunk holds several
            facts.append((fact, e, found[0]))
    for fact, pattern in (("rooms", ROOMS), ("duration", DURATION)):
        found = sorted({normalize(m.group(1)) for m in pattern.finditer(text)})
        if len(found) == 1:
            facts.append((fact, e, found[0]))
    prices = sorted({m.group(0) for m in PRICE.finditer(text)})
    if len(prices) == 1:
        facts.append(("price", e, prices[0]))
    # Only places get "어떤 곳인가요?": a heading like 기부방법 is not a place.
    sentence = _first_sentence(text, chunk["title"]) if is_place(chunk) else ""
    if sentence:
        facts.append(("sentence", e, sentence))
    return facts


def is_place(chunk: dict[str, Any]) -> bool:
    return chunk["kind"] == "entry" and ADDRESS.search(chunk["text"]) is not None


def list_facts(chunk: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Facts about named items inside a section chunk: menus '식당(메뉴)', labelled prices."""
    facts: list[tuple[str, str, str]] = []
    text = chunk["text"]
    if chunk["kind"] == "table":
        return facts
    items = list(MENU_ITEM.finditer(text))
    names = Counter(m["name"].strip() for m in items)
    # A restaurant list is a run of 'name(menu)' items; one bracket in prose is not a menu.
    for m in items if len(items) >= 3 else []:
        name, menu = m["name"].strip(" ,-"), m["menu"].strip()
        if names[m["name"].strip()] == 1 and not re.search(r"\d", menu) and len(name) >= 2:
            facts.append(("menu", name, normalize(menu.replace("·", ", "))))
    labels = Counter(m["label"].strip() for m in LABELLED_PRICE.finditer(text))
    for m in LABELLED_PRICE.finditer(text):
        label = m["label"].strip()
        if labels[label] == 1 and not label.isdigit():
            facts.append(("price", f"{chunk['title']} {label}".strip(), m["price"]))
    return facts


# Table columns that hold a known fact type get that fact's natural templates.
COLUMN_FACTS = {"객실": "rooms", "주소": "address", "위치": "address", "전화": "phone", "연락처": "phone",
                "요금": "price", "가격": "price", "소요시간": "duration", "운영시간": "hours"}


def table_facts(chunk: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(fact, key, column, value, title) for table chunks with a header row 'a | b | c'."""
    rows = [[c.strip() for c in line.split("|")] for line in chunk["text"].splitlines() if "|" in line]
    if len(rows) < 2:
        return []
    header, body = rows[0], rows[1:]
    keys = Counter(r[0] for r in body if r)
    out = []
    for row in body:
        if len(row) != len(header) or not row[0] or keys[row[0]] > 1:
            continue
        for col, value in zip(header[1:], row[1:], strict=True):
            if value and value != "-" and col and len(value) <= 60:
                fact = next((f for word, f in COLUMN_FACTS.items() if word in col), "table")
                out.append((fact, row[0], col, value, chunk["title"]))
    return out


def supported(answer: str, chunk_text: str) -> bool:
    """Grounding filter: the answer's text (spacing and punctuation aside) occurs in its chunk."""

    def squash(s: str) -> str:
        return re.sub(r"[\s,·.]", "", s)

    return squash(answer) in squash(chunk_text)


def rules_questions(chunks: list[dict[str, Any]], cfg: dict[str, Any], abstain: str) -> list[dict[str, Any]]:
    rng = random.Random(P.require(cfg, "seed", int, "synthesize"))
    per_chunk = P.require(cfg, "max_questions_per_chunk", int, "synthesize")
    n_unanswerable = P.require(cfg, "unanswerable_per_chunk", int, "synthesize")
    corpus = "\n".join(c["text"] for c in chunks)
    out: list[dict[str, Any]] = []
    for chunk in chunks:
        # (type, fact, subject, question, answer); `subject` names what is asked, for dedupe.
        pool: list[tuple[str, str, str, str, str]] = []
        if chunk["kind"] == "entry":
            for fact, e, answer in entity_facts(chunk):
                qtype = "descriptive" if fact == "sentence" else "factual"
                pool.append((qtype, fact, e, _fill(rng.choice(TEMPLATES[fact]), e=e), answer))
        elif chunk["kind"] == "table":
            for fact, key, col, value, title in table_facts(chunk):
                if fact == "table":
                    question = _fill(rng.choice(TEMPLATES["table"]), title=title or "표", key=key, col=col)
                    pool.append(("factual", fact, f"{title}/{key}/{col}", question, value))
                else:
                    e = entity_name(key)
                    pool.append(("factual", fact, e, _fill(rng.choice(TEMPLATES[fact]), e=e), value))
        for fact, e, answer in list_facts(chunk):
            pool.append(("factual", fact, e, _fill(rng.choice(TEMPLATES[fact]), e=e), answer))
        pool = [p for p in pool if supported(p[4], chunk["text"])]
        rng.shuffle(pool)
        for qtype, fact, subject, question, answer in pool[:per_chunk]:
            # A bare count reads better with its counter: "451" -> "451개".
            answer = f"{answer}개" if fact == "rooms" else answer
            out.append(_record(chunk, question, answer, qtype, fact, True, subject))
        if is_place(chunk):
            aspects = [(k, t) for k, t in UNANSWERABLE if k not in corpus]
            for key, template in rng.sample(aspects, min(n_unanswerable, len(aspects))):
                e = entity_name(chunk["title"])
                out.append(_record(chunk, _fill(template, e=e), abstain, "unanswerable", "none", False, f"{e}/{key}"))
    return dedupe(out)


def _record(chunk, question, answer, qtype, fact, answerable, subject) -> dict[str, Any]:
    return {
        "question": question,
        "answer": answer,
        "answerable": answerable,
        "type": qtype,
        "fact": fact,
        "chunk_id": chunk["chunk_id"],
        "section_path": chunk["section_path"],
        "pages": chunk["pages"],
        "_subject": (fact, subject),
    }


def dedupe(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop what is asked from two chunks (same fact of the same subject, or the same question):
    such a question has no single gold chunk."""
    chunks_per_subject: dict[Any, set[str]] = {}
    chunks_per_question: dict[str, set[str]] = {}
    for r in records:
        chunks_per_subject.setdefault(r["_subject"], set()).add(r["chunk_id"])
        chunks_per_question.setdefault(normalize(r["question"]), set()).add(r["chunk_id"])
    kept = []
    for r in records:
        subject = r.pop("_subject")
        if len(chunks_per_subject[subject]) == 1 and len(chunks_per_question[normalize(r["question"])]) == 1:
            kept.append({"id": f"q{len(kept) + 1:04d}", **r})
    return kept


def split_by_chunk(records: list[dict[str, Any]], ratios: dict[str, float], seed: int) -> dict[str, list[dict]]:
    """Group split on chunk_id: every chunk's questions land in exactly one split."""
    import numpy as np
    from sklearn.model_selection import GroupShuffleSplit

    total = sum(ratios.get(s if s != "validation" else "val", 0) for s in SPLITS)
    if abs(total - 1.0) > 1e-6:
        raise UserError(f"params: synthesize.split ratios must sum to 1, got {total}")
    if len({r["chunk_id"] for r in records}) < 3:
        raise UserError("synthesize: fewer than 3 source chunks with questions; cannot split train/validation/test")
    idx = np.arange(len(records))
    groups = np.array([r["chunk_id"] for r in records])
    rest, test = next(GroupShuffleSplit(1, test_size=ratios["test"], random_state=seed).split(idx, groups=groups))
    val_share = ratios["val"] / (ratios["train"] + ratios["val"])
    tr, va = next(GroupShuffleSplit(1, test_size=val_share, random_state=seed).split(rest, groups=groups[rest]))
    picked = {"train": rest[tr], "validation": rest[va], "test": test}
    return {name: [records[i] for i in sorted(ix)] for name, ix in picked.items()}


def counts(splits: dict[str, list[dict]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rows in splits.items():
        by_type = Counter(r["type"] for r in rows)
        out[name] = {
            "questions": len(rows),
            "answerable": sum(r["answerable"] for r in rows),
            "unanswerable": sum(not r["answerable"] for r in rows),
            "chunks": len({r["chunk_id"] for r in rows}),
            "by_type": dict(sorted(by_type.items())),
            "by_fact": dict(sorted(Counter(r["fact"] for r in rows).items())),
        }
    return out


CARD = """---
language: [ko]
license: other
task_categories: [question-answering]
pretty_name: 제천여행 길라잡이 RAG QA
---
# 제천여행 길라잡이 RAG QA (brochure-rag)

Question–answer pairs grounded in the 2025 Jecheon tourism brochure ("2025 제천여행 길라잡이"),
built by the `synthesize` stage of brochure-rag with the **{generator}** generator.

## Construction
1. `parse`: PDF text layer + Tesseract/PaddleOCR for image-only regions, with page and bbox provenance.
2. `chunk`: section/entry-aware chunks (one attraction, lodging, restaurant list, table ...).
3. `synthesize`: facts found in each chunk (address, phone, price, rooms, hours, duration, menu, table cells,
   key sentences) asked with several honorific templates; every answer is checked to occur in its chunk.
   Unanswerable questions ask about aspects the brochure never states; their answer is the abstention
   phrase "{abstain}".

## Split — by source chunk
Train/validation/test are a **group split on `chunk_id`**: no chunk backs questions in two splits, so the test
set measures reading the retrieved context, not memorising the chunk. Ratios {ratios}, seed {seed}.

## Fields
`id`, `question`, `answer`, `answerable`, `type` (factual | descriptive | unanswerable), `fact`,
`chunk_id` (the source chunk), `section_path`, `pages`.

## Counts
| split | questions | answerable | unanswerable | chunks |
|---|---|---|---|---|
{table}

## License
Facts come from a public brochure of Jecheon city (제천시); questions and answers are generated by this pipeline.
Check the city's terms before redistributing.
"""


def dataset_card(stats: dict[str, Any], cfg: dict[str, Any], abstain: str) -> str:
    table = "\n".join(
        f"| {s} | {v['questions']} | {v['answerable']} | {v['unanswerable']} | {v['chunks']} |"
        for s, v in stats.items()
    )
    return CARD.format(generator=cfg["generator"], abstain=abstain, ratios=cfg["split"], seed=cfg["seed"], table=table)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=Path, required=True, help="chunk stage output directory")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    params = P.load(args.params, "synthesize", "prompt")
    cfg, abstain = params["synthesize"], params["prompt"]["abstain"]
    chunks_path = args.chunks / "chunks.jsonl"
    if not chunks_path.is_file():
        raise UserError(f"{chunks_path}: not found (run the chunk stage first)")
    chunks = read_jsonl(chunks_path)
    generator = cfg.get("generator")
    if generator != "rules":
        raise UserError(f"params: synthesize.generator={generator!r} is not available (available: rules)")
    records = rules_questions(chunks, cfg, abstain)
    if not records:
        raise UserError(f"{chunks_path}: no questions could be generated from {len(chunks)} chunks")
    splits = split_by_chunk(records, cfg["split"], cfg["seed"])
    stats = counts(splits)

    from datasets import Dataset, DatasetDict
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # one bar per split for a few hundred rows is noise

    with atomic_dir(args.out) as tmp:
        for name, rows in splits.items():
            dump_jsonl(tmp / f"{name}.jsonl", rows)
        DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(str(tmp / "hf"))
        (tmp / "README.md").write_text(dataset_card(stats, cfg, abstain), encoding="utf-8")
    write_json(args.metrics, {"total": len(records), **stats})
    log.info(
        "%d questions from %d chunks: %s",
        len(records),
        len(chunks),
        ", ".join(f"{s} {v['questions']} ({v['unanswerable']} unanswerable)" for s, v in stats.items()),
    )


if __name__ == "__main__":
    run_cli(main)
