"""The one gold-chunk rule and the record shapes of docs/data-contracts.md."""

from stages.common.records import Prediction, Question, gold_ids


def test_gold_ids_prefers_chunk_ids_then_chunk_id_then_none():
    assert gold_ids({"chunk_id": "c001", "chunk_ids": ["c001", "c007"]}) == ["c001", "c007"]
    assert gold_ids({"chunk_id": "c003", "chunk_ids": []}) == ["c003"]
    assert gold_ids({"chunk_id": None}) == [] and gold_ids({}) == []
    pred = {"gold_chunk_id": "c002", "gold_chunk_ids": None, "chunk_id": "c009"}
    assert gold_ids(pred, prefix="gold_") == ["c002"]


def test_record_shapes_name_the_contract_fields():
    # the fields evaluate copies from a question into its prediction (docs/data-contracts.md)
    copied = {"gold_answer", "gold_answer_short", "gold_key_facts", "answer_kind", "style", "type", "answerable"}
    assert copied | {"gold_chunk_id", "gold_chunk_ids", "testset", "model"} <= set(Prediction.__annotations__)
    assert {"id", "question", "answer", "answer_short", "key_facts", "chunk_id", "chunk_ids"} <= set(
        Question.__annotations__
    )
