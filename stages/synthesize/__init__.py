"""synthesize: chunks -> Korean QA pairs split BY SOURCE CHUNK into train/validation/test.

Where things are:

* ``facts.py`` — what an entry or a list states (addresses, phones, prices, menus, key sentences);
* ``tables.py`` — what a table or a course states (cells, label tables, price differences, steps, stops);
* ``questions.py`` — how facts are asked (phrasings) and answered;
* ``unanswerable.py`` — plausible questions the brochure cannot answer;
* ``filters.py`` — grounding, leakage, ambiguity and near-duplicate filters;
* ``crosschunk.py`` — comparison and multi-hop questions over two chunks;
* ``llm.py`` — the llm generator (OpenAI-compatible endpoint or local transformers model);
* ``split.py`` — the group split by source chunk;
* ``dataset.py`` — assembly of all of the above; ``card.py`` — the dataset card; ``cli.py`` — the CLI.

    python -m stages.synthesize --chunks data/chunks --out data/qa --metrics metrics/dataset.json
"""

from stages.synthesize.card import dataset_card
from stages.synthesize.cli import main
from stages.synthesize.crosschunk import comparison_questions, multihop_questions
from stages.synthesize.dataset import build_dataset, counts, rules_questions
from stages.synthesize.facts import entity_facts, list_facts
from stages.synthesize.filters import filter_records, leaks_answer, near_duplicate, supported
from stages.synthesize.limits import SPLITS, TYPES, Limits
from stages.synthesize.llm import ChatClient, parse_llm_json
from stages.synthesize.split import split_by_chunk, split_chunks
from stages.synthesize.tables import course_facts, table_facts

__all__ = [
    "SPLITS",
    "TYPES",
    "ChatClient",
    "Limits",
    "build_dataset",
    "comparison_questions",
    "counts",
    "course_facts",
    "dataset_card",
    "entity_facts",
    "filter_records",
    "leaks_answer",
    "list_facts",
    "main",
    "multihop_questions",
    "near_duplicate",
    "parse_llm_json",
    "rules_questions",
    "split_by_chunk",
    "split_chunks",
    "supported",
    "table_facts",
]
