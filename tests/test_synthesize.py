import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from stages.common import params as P
from stages.synthesize import (
    Limits,
    build_dataset,
    comparison_questions,
    course_facts,
    entity_facts,
    filter_records,
    leaks_answer,
    list_facts,
    main,
    multihop_questions,
    near_duplicate,
    parse_llm_json,
    rules_questions,
    split_by_chunk,
    supported,
)
from stages.synthesize.styles import KINDS, STYLES

ABSTAIN = "브로셔에 해당 정보가 없습니다."
CFG = {
    "seed": 1,
    "max_questions_per_chunk": 10,
    "unanswerable_per_chunk": 1,
    "generator": "rules",
    "split": {"train": 0.6, "val": 0.2, "test": 0.2},
    "stratify_by": "fact",
    "questions_per_fact": 1,
    "mix": {"comparison": 0.5, "multihop": 0.5, "unanswerable": 0.2},
    "near_duplicate": 0.8,
    "natural_overlap": 0.5,
    "value_max_chars": 60,
    "sentence_min_chars": 15,
    "colon_window": 45,
    "menu_min_items": 3,
}
LIM = Limits()


def synth_cfg(**changes):
    """The synthesize section as the stage gets it from params.load (a typed section), with ``changes``."""
    return P.make_section("synthesize", {**CFG, **changes})


def chunk(cid, title, text, kind="entry", path=None):
    return {
        "chunk_id": cid,
        "title": title,
        "kind": kind,
        "text": text,
        "pages": [22],
        "section_path": path or f"숙박 > {title}",
    }


LODGING = chunk(
    "c001",
    "포레스트 리솜 (레스트리 리솜)",
    "포레스트 리솜 (레스트리 리솜): 객실수 451 (제천시 백운면 금봉로 365, 043-649-6000)",
)
ATTRACTION = chunk(
    "c002",
    "청풍호반 케이블카",
    "청풍호반 케이블카: 비봉산의 풍경을 감상할 수 있는 제천 관광의 랜드마크로, 한국관광 100선에 선정된 명소이다.\n(제천시 청풍면 문화재길 166)",
)
RESTAURANTS = chunk(
    "c003",
    "제천맛집 위치별 소개",
    "북부권 (4)\n열두달밥상(가마솥약초밥상), 묵마을(채묵밥), 산아래(유기농 우렁쌈밥), 풍정(한방토종닭·오리백숙),\n"
    "춘양옥 국시방(칼국수-떡만두국), 광성추어탕(추어탕.추어튀김), 미당손두부와\n등갈비(두부전골:등갈비)",
    kind="section",
)
HOTELS_A = chunk(
    "c010",
    "리조트",
    "숙박시설 | 객실수 | 주소\n청풍리조트 | 276 | 제천시 청풍면 청풍호로 1798\n"
    "박달재수련원 | 50 | 제천시 봉양읍 박달로 256-46",
    kind="table",
    path="PART 4 > 주요 숙박시설 > 리조트",
)
HOTELS_B = chunk(
    "c011",
    "호텔",
    "숙박시설 | 객실수 | 주소\n서울관광호텔 | 42 | 제천시 의병대로13길 10\n"
    "하운드호텔 제천역점 | 41 | 제천시 의림대로 33",
    kind="table",
    path="PART 4 > 주요 숙박시설 > 호텔",
)
COURSE = chunk(
    "c020",
    "#천주교 코스 순교의 발자취를 따라걷는 순례 여행",
    "1.\n제천역\n2.\n의림지 트래킹\n3.\n중식(의림지-도심권)\n4.\n배론성지 순례\n5.\n청풍호반 케이블카",
    path="PART 2 > 종교여행 코스 > #천주교 코스 순교의 발자취를 따라걷는 순례 여행",
)


def test_entity_facts_find_address_phone_rooms_and_a_sentence():
    facts = {fact: (e, answer) for fact, e, answer in entity_facts(LODGING)}
    assert facts["address"] == ("포레스트 리솜", "제천시 백운면 금봉로 365")
    assert facts["phone"] == ("포레스트 리솜", "043-649-6000")
    assert facts["rooms"] == ("포레스트 리솜", "451")
    found = {f: a for f, _, a in entity_facts(ATTRACTION)}
    assert found["sentence"].startswith("비봉산의 풍경을") and found["sentence"].endswith("명소이다.")
    assert found["activity"] == "비봉산의 풍경"  # '... 풍경을 감상할 수 있는'
    assert found["selected"] == "한국관광 100선"


def test_menu_facts_clean_ocr_separators_and_skip_cut_names():
    facts = {e: a for f, e, a in list_facts(RESTAURANTS) if f == "menu"}
    assert facts["풍정"] == "한방토종닭, 오리백숙"
    assert facts["춘양옥 국시방"] == "칼국수, 떡만두국"  # OCR read '·' as '-'
    assert facts["광성추어탕"] == "추어탕, 추어튀김"
    assert facts["열두달밥상"] == "가마솥약초밥상"
    assert "등갈비" not in facts  # '미당손두부와\n등갈비' is a name cut by a line break


def test_grounding_filter_rejects_unsupported_answer():
    assert supported("043-649-6000", LODGING["text"])
    assert supported("제천시 백운면 금봉로365", LODGING["text"])  # spacing differences are fine
    assert supported("칼국수, 떡만두국", RESTAURANTS["text"])  # separators aside
    assert not supported("043-649-6001", LODGING["text"])
    assert not supported("객실수 452", LODGING["text"])
    by_id = {c["chunk_id"]: c for c in (LODGING, ATTRACTION)}
    good = {
        "question": "포레스트 리솜의 객실 수는?",
        "answer": "451개",
        "answerable": True,
        "chunk_id": "c001",
        "chunk_ids": ["c001"],
        "_subject": ("rooms", "포레스트 리솜"),
    }
    bad = {**good, "question": "포레스트 리솜의 전화번호는?", "answer": "043-000-0000", "_subject": ("phone", "x")}
    assert [r["answer"] for r in filter_records([good, bad], by_id, 0.8)] == []  # '451개' is not in the text...
    good["answer"] = "451"
    assert [r["answer"] for r in filter_records([dict(good, _subject=("rooms", "a")), bad], by_id, 0.8)] == ["451"]


def test_free_form_grounding_needs_numbers_verbatim_and_most_morphemes():
    text = ATTRACTION["text"]
    assert supported("비봉산 풍경을 감상할 수 있는 랜드마크입니다", text, min_share=0.6)
    assert not supported("비봉산 풍경을 감상할 수 있는 랜드마크입니다", text, min_share=1.0)
    assert not supported("한국관광 200선에 선정된 명소", text, min_share=0.5)  # 200 is not in the chunk
    assert not supported("바다 위 요트 체험과 스쿠버 다이빙", text, min_share=0.6)


def test_leak_and_near_duplicate_filters():
    assert leaks_answer("청풍호반 케이블카는 제천시 청풍면 문화재길 166에 있나요?", "제천시 청풍면 문화재길 166")
    assert not leaks_answer("청풍호반 케이블카의 주소는 어디인가요?", "제천시 청풍면 문화재길 166")
    assert near_duplicate("청풍호반 케이블카의 주소는 어디인가요?", "청풍호반 케이블카의 주소는 어디인가요", 0.8)
    assert not near_duplicate("청풍호반 케이블카의 주소는 어디인가요?", "청풍호반 케이블카는 어떤 곳인가요?", 0.8)


def test_course_facts_ask_order_and_skip_meals():
    facts = {(key, extra): answer for _, _, answer, key, extra in course_facts(COURSE)}
    assert facts[("course_first", "")] == "제천역"
    assert facts[("course_last", "")] == "청풍호반 케이블카"
    assert facts[("course_next", "제천역")] == "의림지 트래킹"
    assert facts[("course_next", "배론성지 순례")] == "청풍호반 케이블카"
    # the whole itinerary may list the lunch stop; order questions never ask about it
    assert not any(
        "중식" in extra or "중식" in answer for (key, extra), answer in facts.items() if key != "course_stops"
    )
    assert {e for _, e, *_ in course_facts(COURSE)} >= {"천주교 코스"}


def test_comparison_uses_two_chunks_and_names_the_winner():
    import random

    qs = comparison_questions([HOTELS_A, HOTELS_B], LIM, random.Random(0), 3)
    assert qs and all(q["type"] == "comparison" and q["fact"] == "rooms" for q in qs)
    cross = [q for q in qs if len(q["chunk_ids"]) == 2]
    assert cross  # pairs across chunks come first
    rooms = {"청풍리조트": 276, "박달재수련원": 50, "서울관광호텔": 42, "하운드호텔 제천역점": 41}
    for q in qs:
        a, b = [n for n in rooms if n in q["question"]]
        more = "많은" in q["question"]
        winner = max((a, b), key=rooms.get) if more else min((a, b), key=rooms.get)
        assert q["answer"].startswith(f"{winner}이 ") or q["answer"].startswith(f"{winner}가 ")
        assert q["answer_short"] == winner and q["key_facts"] == [winner] and q["style"] == "difference"
        assert str(rooms[winner]) in q["answer"]  # the sentence states both values
        assert q["chunk_id"] == q["chunk_ids"][0]  # the winner's chunk is the gold one


def test_multihop_links_a_course_stop_to_the_place_chunk():
    import random

    place = chunk("c030", "배론성지", "제천시 봉양읍 배론성지길 296 배론성지는 천주교 전파의 중심지이다.")
    [q] = multihop_questions([COURSE, place], LIM, random.Random(0), 5)
    assert q["type"] == "multihop" and q["answer_short"] == "제천시 봉양읍 배론성지길 296"
    assert q["answer"] == "배론성지는 제천시 봉양읍 배론성지길 296에 있습니다." and q["answer_kind"] == "address"
    assert q["chunk_ids"] == ["c030", "c020"]
    assert "천주교 코스" in q["question"]


def test_rules_dataset_types_unanswerable_and_ids():
    chunks = [LODGING, ATTRACTION, RESTAURANTS, HOTELS_A, HOTELS_B, COURSE]
    qa = rules_questions(chunks, synth_cfg(), ABSTAIN)
    by_fact = {q["fact"]: q for q in qa if q["type"] == "factual" and q["chunk_id"] == "c001"}
    assert by_fact["rooms"]["question"] in {
        "포레스트 리솜의 객실 수는 몇 개인가요?",
        "포레스트 리솜 방이 몇 개나 돼요?",
        "포레스트 리솜에 객실이 몇 개 있는지 알려주시겠어요?",
        "단체로 묵을 숙소를 찾는데, 포레스트 리솜에는 객실이 몇 개 있나요?",
    }
    assert by_fact["rooms"]["answer"] == "포레스트 리솜에는 객실이 451개 있습니다."
    assert by_fact["rooms"]["answer_short"] == "451개" and by_fact["rooms"]["answer_kind"] == "count"
    assert all(q["question"].endswith(("?", ".")) for q in qa)
    unanswerable = [q for q in qa if not q["answerable"]]
    assert unanswerable and all(q["answer"] == ABSTAIN and q["type"] == "unanswerable" for q in unanswerable)
    assert all(q["answer_short"] == "" and q["key_facts"] == [] and q["answer_kind"] == "abstain" for q in unanswerable)
    for q in qa:  # the data contract's fields
        assert q["style"] in STYLES and q["answer_kind"] in KINDS
        assert q["answerable"] == bool(q["key_facts"]) and all(isinstance(k, str) and k for k in q["key_facts"])
    assert {q["type"] for q in qa} >= {"factual", "descriptive", "unanswerable"}
    assert sorted(q["id"] for q in qa) == [f"q{i:04d}" for i in range(1, len(qa) + 1)]
    for q in qa:  # every answerable answer is grounded in the chunk it names
        if q["answerable"] and q["type"] in ("factual", "descriptive"):
            text = next(c["text"] for c in chunks if c["chunk_id"] == q["chunk_id"])
            assert all(supported(k.removesuffix("개"), text) for k in q["key_facts"]), q


def test_same_question_from_two_chunks_is_dropped():
    twin = dict(LODGING, chunk_id="c009")
    qa = rules_questions(
        [LODGING, twin, ATTRACTION, RESTAURANTS, HOTELS_B], synth_cfg(mix={"unanswerable": 0.0}), ABSTAIN
    )
    assert {q["chunk_id"] for q in qa} == {"c002", "c003", "c011"}


def test_group_split_never_shares_a_chunk():
    records = [
        {"chunk_id": f"c{i % 20:03d}", "type": "factual" if i % 3 else "unanswerable", "q": i} for i in range(200)
    ]
    splits = split_by_chunk(records, CFG["split"], seed=3)
    groups = {name: {r["chunk_id"] for r in rows} for name, rows in splits.items()}
    assert not groups["train"] & groups["test"]
    assert not groups["train"] & groups["validation"]
    assert not groups["validation"] & groups["test"]
    assert sum(len(rows) for rows in splits.values()) == 200
    assert len(groups["test"]) == 4 and len(groups["validation"]) == 4  # 20% of 20 equal chunks
    assert split_by_chunk(records, CFG["split"], seed=3) == splits  # deterministic


def test_group_split_balances_the_stratify_field():
    # 10 big "table" chunks (6 questions each) and 30 small "address" chunks (2 each), all one type.
    records = [{"chunk_id": f"t{i}", "type": "factual", "fact": "table"} for i in range(10) for _ in range(6)]
    records += [{"chunk_id": f"a{i}", "type": "factual", "fact": "address"} for i in range(30) for _ in range(2)]
    by_fact = split_by_chunk(records, CFG["split"], seed=0, stratify_by="fact")
    tables = {s: sum(r["fact"] == "table" for r in rows) for s, rows in by_fact.items()}
    assert tables == {"train": 36, "validation": 12, "test": 12}  # 60/20/20 of the 60 table questions
    addresses = {s: sum(r["fact"] == "address" for r in rows) for s, rows in by_fact.items()}
    assert addresses == {"train": 36, "validation": 12, "test": 12}


def test_cross_chunk_questions_stay_inside_one_split():
    hotels = [
        chunk(
            f"c{i:03d}",
            f"호텔{i}",
            f"숙박시설 | 객실수 | 전화\n가호텔{i} | {10 + i} | 043-600-{1000 + i}\n"
            f"나호텔{i} | {50 + i} | 043-700-{1000 + i}\n다호텔{i} | {90 + i} | 043-800-{1000 + i}",
            kind="table",
            path=f"숙박 > 호텔{i}",
        )
        for i in range(1, 16)
    ]
    splits = build_dataset(hotels, synth_cfg(mix={"comparison": 0.3, "multihop": 0.0, "unanswerable": 0.0}), ABSTAIN)
    owner = {}
    for name, rows in splits.items():
        for r in rows:
            for cid in r["chunk_ids"]:
                assert owner.setdefault(cid, name) == name, f"{cid} backs questions in {owner[cid]} and {name}"
    assert any(r["type"] == "comparison" and len(r["chunk_ids"]) == 2 for rows in splits.values() for r in rows)


def test_parse_llm_json_survives_fences_prose_and_truncation():
    fenced = '네, 만들었습니다.\n```json\n[{"question": "Q1?", "answer": "A1", "type": "factual"}]\n```\n도움이 되길 바랍니다.'
    assert parse_llm_json(fenced) == [{"question": "Q1?", "answer": "A1", "type": "factual"}]
    wrapped = '{"questions": [{"question": "Q2?", "answer": "A2", "type": "descriptive"}]}'
    assert parse_llm_json(wrapped)[0]["type"] == "descriptive"
    cut = '[{"question": "Q3?", "answer": "A3"}, {"question": "Q4?", "answer": "A4"}, {"question": "Q5?", "ans'
    assert [i["question"] for i in parse_llm_json(cut)] == ["Q3?", "Q4?"]
    assert parse_llm_json("죄송합니다. 질문을 만들 수 없습니다.") == []


class _FakeChat(BaseHTTPRequestHandler):
    reply = staticmethod(lambda prompt: "")
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeChat.seen.append((self.path, self.headers.get("Authorization"), body))
        content = _FakeChat.reply(body["messages"][0]["content"])
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_endpoint():
    server = HTTPServer(("127.0.0.1", 0), _FakeChat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeChat.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_llm_generator_against_a_local_openai_compatible_server(fake_endpoint, monkeypatch):
    import re

    def reply(prompt):  # canned questions about the chunk's own place, two of them bad
        e = re.search(r"\[문서\]\n([^:]+):", prompt).group(1)
        return (
            "```json\n"
            + json.dumps(
                [
                    {
                        "question": f"{e}에서는 무엇을 감상할 수 있나요?",
                        "answer": "비봉산의 풍경",
                        "type": "descriptive",
                    },
                    {
                        "question": f"{e}의 주소는 어디인가요?",
                        "answer": f"제천시 청풍면 문화재길 {e[-1]}66",
                        "type": "factual",
                    },
                    {
                        "question": f"{e} 요금은 얼마인가요?",
                        "answer": "15,000원",
                        "type": "factual",
                    },  # not in the chunk
                    {
                        "question": f"{e}는 제천시 청풍면 문화재길 {e[-1]}66에 있나요?",
                        "answer": f"제천시 청풍면 문화재길 {e[-1]}66",
                    },
                ],
                ensure_ascii=False,
            )
            + "\n```\n도움이 되었길 바랍니다."
        )

    _FakeChat.reply = staticmethod(reply)
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    llm = {
        "backend": "openai",
        "model": "m",
        "base_url": fake_endpoint,
        "api_key_env": "FAKE_KEY",
        "questions_per_chunk": 4,
        "temperature": 0.0,
        "max_new_tokens": 256,
        "timeout_s": 10,
        "grounding_min_share": 0.8,
    }
    chunks = [
        chunk(
            f"c{i:03d}", f"케이블카{i}", f"케이블카{i}: 비봉산의 풍경을 감상할 수 있다.\n(제천시 청풍면 문화재길 {i}66)"
        )
        for i in range(1, 4)
    ]
    splits = build_dataset(chunks, synth_cfg(generator="llm", llm=llm, mix={"unanswerable": 0.0}), ABSTAIN)
    rows = [r for rows in splits.values() for r in rows]
    assert all(r["generator"] == "llm" for r in rows)
    assert sorted(r["answer"] for r in rows if r["chunk_id"] == "c001") == [
        "비봉산의 풍경",
        "제천시 청풍면 문화재길 166",
    ]
    assert len(rows) == 6  # per chunk: the unsupported price and the question leaking its answer are dropped
    path, auth, body = _FakeChat.seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test" and body["model"] == "m"
    assert "4개" in body["messages"][0]["content"] and "문화재길 166" in body["messages"][0]["content"]


def test_cli_writes_dataset_dict_card_and_counts(tmp_path):
    chunks_dir = tmp_path / "chunks"
    chunks_dir.mkdir()
    many = [
        chunk(f"c{i:03d}", f"호텔{i}", f"호텔{i}: 객실수 {i + 10} (제천시 의림대로 {i}, 043-600-{1000 + i})")
        for i in range(1, 11)
    ]
    (chunks_dir / "chunks.jsonl").write_text(
        "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in many), encoding="utf-8"
    )
    out, metrics = tmp_path / "qa", tmp_path / "dataset.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.synthesize",
            "--chunks",
            str(chunks_dir),
            "--out",
            str(out),
            "--metrics",
            str(metrics),
        ],
        check=True,
        capture_output=True,
    )
    from datasets import load_from_disk

    ds = load_from_disk(str(out / "hf"))
    assert set(ds) == {"train", "validation", "test"}
    stats = json.loads(metrics.read_text())
    assert stats["total"] == sum(len(ds[s]) for s in ds)
    assert stats["test"]["questions"] == len(ds["test"])
    assert set(stats["test"]["by_type"]) == {"factual", "descriptive", "comparison", "multihop", "unanswerable"}
    assert sum(stats["by_type"].values()) == stats["total"]
    card = (out / "README.md").read_text()
    assert "group split on `chunk_id`" in card and "## License" in card and "| test | " in card


def test_cli_missing_input_is_one_line_error(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.synthesize",
            "--chunks",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "qa"),
            "--metrics",
            str(tmp_path / "m.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope' / 'chunks.jsonl'}: not found (run the chunk stage first)"
    ]
    assert not (tmp_path / "qa").exists()


@pytest.mark.parametrize("bad", [{"train": 0.5, "val": 0.1, "test": 0.1}])
def test_split_ratios_must_sum_to_one(bad):
    from stages.common.errors import UserError

    with pytest.raises(UserError, match="sum to 1"):
        split_by_chunk([{"chunk_id": f"c{i}"} for i in range(3)], bad, seed=0)


# ------------------------------------------------------------------ issue 12: any brochure, natural questions
OREUM = chunk(
    "c058",
    "난이도하",
    "#차귀도 조망 #해안가 지질트레일\n"
    "수성화산체의 ‘화산학의 교과서’로 불릴 만큼 다양한 화산 퇴적구조가 관찰되면서 유네스코 세계지질공원으로 선정되어 있다.\n"
    "제주시 한경면 고산리 3760 원추형 탐방시간 : 1시간 주차장 화장실 주변여행 : 제주곶자왈도립공원, 오설록뮤지엄",
    path="수월봉 > 난이도하",
)
FARES = chunk(
    "c070",
    "이용요금",
    "구분 | 성인 | 청소년\n1일 이용권 | 1,200원 | 800원\n2일 이용권 | 2,000원 | 1,500원\n3일 이용권 | 2,500원 | 2,000원",
    kind="table",
    path="교통 > 제주 시티버스 > 이용요금",
)
CLOSED = chunk(
    "c071",
    "옥순봉 출렁다리",
    "제천시 수산면 옥순봉로 342 명승 옥순봉을 잇는 222m 출렁다리이다. 운영시간 09:00~18:00, 매주 월요일 휴장",
)
PERKS = chunk(
    "c072",
    "발급방법",
    "주요혜택 * 제천 관광택시 8시간권 5,000원 할인 * 제천 시티투어 3.000원 할인",
    path="준비 > 디지털 관광주민증 > 발급방법",
)


def _questions(c, **cfg):
    import random

    from stages.synthesize.questions import rules_candidates

    lim = Limits(**{**{k: CFG[k] for k in Limits.__dataclass_fields__}, **cfg})
    return rules_candidates(c, lim, random.Random(0))


def test_any_region_address_and_a_label_title_resolve_to_the_place():
    from stages.synthesize.facts import ADDRESS, subject

    assert ADDRESS.search(OREUM["text"]).group(0) == "제주시 한경면 고산리 3760"
    assert ADDRESS.search("서울특별시 중구 세종대로 110 (서울시청)").group(0) == "서울특별시 중구 세종대로 110"
    assert ADDRESS.search("연말정산 시 기부금액 10만원") is None  # '시' alone is no city
    assert subject(OREUM) == "수월봉"  # '난이도하' rates, it does not name
    qs = _questions(OREUM, questions_per_fact=4)
    by_fact = {}
    for q in qs:
        by_fact.setdefault(q["fact"], []).append(q)
    assert by_fact["address"][0]["answer_short"] == "제주시 한경면 고산리 3760"
    assert all("수월봉" in q["question"] for q in qs)
    assert by_fact["duration"][0]["answer_short"] == "1시간" and by_fact["duration"][0]["answer_kind"] == "time"
    assert by_fact["nearby_list"][0]["key_facts"] == ["제주곶자왈도립공원", "오설록뮤지엄"]
    assert by_fact["amenities"][0]["answer_short"] == "주차장, 화장실"


def test_a_fare_table_is_read_with_its_header_never_as_a_menu():
    qs = _questions(FARES, questions_per_fact=2)
    assert qs and not any(q["fact"] == "menu" or "음식" in q["question"] for q in qs)
    cells = [q for q in qs if q["fact"] == "table"]
    adult = [q for q in cells if "1일 이용권" in q["question"] and "성인" in q["question"]]
    assert adult and all(q["answer_short"] == "1,200원" and q["answer_kind"] == "price" for q in adult)
    assert all("제주 시티버스" in q["question"] for q in cells)  # '1일 이용권' alone names nothing
    assert any(q["style"] == "direct" and q["question"].endswith("얼마인가요?") for q in adult)
    diff = [q for q in qs if q["style"] == "difference"]
    assert diff and diff[0]["type"] == "comparison" and diff[0]["answer_kind"] == "price"
    assert diff[0]["answer_short"] in {"800원", "500원", "700원"}  # adjacent rows of one column
    assert diff[0]["answer_short"] in diff[0]["answer"]


def test_several_styles_per_fact_and_answers_are_sentences_that_state_the_value():
    qs = _questions(CLOSED, questions_per_fact=3)
    closed = [q for q in qs if q["fact"] == "closed"]
    assert len({q["style"] for q in closed}) == len(closed) == 3  # three different styles
    assert all(q["answer_short"] == "매주 월요일" and q["answer_kind"] == "date" for q in closed)
    for q in qs:
        assert q["answer"].endswith(".") and q["answer"] != q["answer_short"]
        assert all(k.replace(" ", "") in q["answer"].replace(" ", "") for k in q["key_facts"]), q
    hours_yes_no = [q for q in qs if q["fact"] == "hours" and q["style"] == "yes_no"]
    if hours_yes_no:  # '19시에 가도 ...?' -> no, and the hours
        assert hours_yes_no[0]["answer"].startswith("아니요") and "09:00~18:00" in hours_yes_no[0]["answer"]
    perks = [q for q in _questions(PERKS, questions_per_fact=3) if q["fact"] == "discount"]
    yes = [q for q in perks if q["style"] == "yes_no"]
    assert yes and yes[0]["answer"].startswith("네, 디지털 관광주민증이 있으면")
    assert {q["answer_short"] for q in perks} == {"5,000원", "3,000원"}  # OCR '3.000원' read as money


def test_multi_part_questions_ask_two_facts_of_one_entry():
    qs = _questions(LODGING, questions_per_fact=1)
    multi = [q for q in qs if q["style"] == "multi_part"]
    assert len(multi) == 1 and len(multi[0]["key_facts"]) == 2 and multi[0]["answer_kind"] == "list"
    assert all(k in multi[0]["answer"] for k in multi[0]["key_facts"])


def test_shape_filter():
    from stages.synthesize.styles import has_shape

    assert has_shape("1,200원", "price") and not has_shape("성인", "price")
    assert has_shape("09:00~18:00", "time") and not has_shape("ONE DAY PASS", "time")
    assert has_shape("043-641-5114", "phone") and not has_shape("641-5114", "phone")
    assert not has_shape("200원", "name")  # a price never answers 'which dish / which place'
    assert has_shape("citytour.jecheon.go.kr", "url") and not has_shape("제천시티투어", "url")


def test_unanswerable_topics_are_checked_against_the_whole_corpus_and_vary_in_wording():
    import random

    from stages.synthesize.unanswerable import covered, unanswerable_candidates

    places = [
        chunk(f"c{i:03d}", f"명소{i}", f"제천시 청풍면 문화재길 {i} 명소{i}는 유물을 전시하는 박물관이다.")
        for i in range(1, 9)
    ]
    parking = chunk("c050", "공영주차장", "제천시 청풍면 문화재길 1-1 명소1 공영주차장은 50대 규모이다.")  # about 명소1
    general = chunk("c051", "주의사항", "대부분의 명소는 반려동물 출입이 제한된다.", kind="section")
    corpus = [*places, parking, general]
    words = ("주차",)
    assert covered(words, "명소1", places[0], corpus)  # another chunk names 명소1 and parking
    assert not covered(words, "명소2", places[1], corpus)
    assert covered(("반려",), "명소2", places[1], corpus)  # a general rule may apply to every place
    rng = random.Random(0)
    qs = [q for c in places for q in unanswerable_candidates(c, corpus, LIM, ABSTAIN, rng, 6)]
    assert qs and all(q["answer"] == ABSTAIN and q["answer_kind"] == "abstain" for q in qs)
    assert not any("주차" in q["question"] for q in qs if q["chunk_id"] == "c001")
    assert not any("반려" in q["question"] or "강아지" in q["question"] for q in qs)
    assert len({q["style"] for q in qs}) >= 3  # policy, yes_no, colloquial ... not one template per topic
    templates = {re.sub(r"명소\d+", "X", q["question"]) for q in qs}
    assert len(templates) >= 8


def test_a_brochure_without_facts_is_a_one_line_error_naming_the_file(tmp_path):
    from stages.common.errors import UserError

    chunks_dir = tmp_path / "chunks"
    chunks_dir.mkdir()
    ocr_noise = [chunk(f"c{i:03d}", "인사사고", "인사사고 : 4건, 24명\n조처은\n04", kind="section") for i in range(5)]
    (chunks_dir / "chunks.jsonl").write_text(
        "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in ocr_noise), encoding="utf-8"
    )
    with pytest.raises(
        UserError, match=r"chunks\.jsonl: no questions could be generated from 5 chunks \(no extractable"
    ):
        main(["--chunks", str(chunks_dir), "--out", str(tmp_path / "qa"), "--metrics", str(tmp_path / "m.json")])
    assert not (tmp_path / "qa").exists() and not (tmp_path / "m.json").exists()


def test_metrics_report_yield_filters_and_styles_per_split(tmp_path):
    chunks_dir = tmp_path / "chunks"
    chunks_dir.mkdir()
    many = [HOTELS_A, HOTELS_B, LODGING, ATTRACTION, RESTAURANTS, COURSE, OREUM, FARES, CLOSED, PERKS]
    (chunks_dir / "chunks.jsonl").write_text(
        "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in many), encoding="utf-8"
    )
    metrics = tmp_path / "m.json"
    main(["--chunks", str(chunks_dir), "--out", str(tmp_path / "qa"), "--metrics", str(metrics)])
    m = json.loads(metrics.read_text())
    assert m["yield"]["answerable_per_content_chunk"] >= 3 and m["yield"]["chunks"] == len(many)
    assert {"candidates", "grounding"} <= set(m["filters"]) and m["filters"]["candidates"] > m["total"] / 2
    assert sum(m["by_style"].values()) == m["total"]
    for split in ("train", "validation", "test"):
        assert sum(m[split]["by_style"].values()) == m[split]["questions"]
    rows = [json.loads(x) for s in ("train", "validation", "test") for x in open(tmp_path / "qa" / f"{s}.jsonl")]
    keys = {"answer_short", "key_facts", "answer_kind", "style", "chunk_ids", "pages", "section_path", "generator"}
    assert all(keys <= set(r) for r in rows)


def test_payment_and_age_questions_are_asked_of_places_that_charge_not_of_a_mountain():
    import random

    from stages.synthesize.unanswerable import subjects_of, unanswerable_candidates

    mountain = chunk("c080", "송악산", "서귀포시 대정읍 상모리 산2 송악산은 이중화산체로 널리 알려져 있다.")
    museum = chunk("c081", "차문화박물관", "제천시 국사봉로 741 차 관련 유물 2,500여 점이 전시된 박물관이다.")
    assert subjects_of(mountain, LIM) == [("place", "송악산")]
    assert subjects_of(museum, LIM) == [("paid_place", "차문화박물관")]
    qs = unanswerable_candidates(mountain, [mountain, museum], LIM, ABSTAIN, random.Random(0), 20)
    assert qs and not any(
        w in q["question"] for q in qs for w in ("결제", "카드", "현금", "어린이", "나이", "캐리어", "와이파이")
    )


def test_questions_near_a_natural_test_question_are_dropped_from_every_split():
    """Decontamination: the frozen natural test set is never trained (or validated) on."""
    chunks = [HOTELS_A, HOTELS_B, LODGING, ATTRACTION, COURSE]
    base = build_dataset(chunks, synth_cfg(), ABSTAIN)
    rows = [r for s in base.values() for r in s]
    by_q = next(r for r in rows if r["answerable"] and r["type"] == "factual")
    by_a = next(
        r for r in rows if r["answerable"] and r["answer"] != by_q["answer"] and r["question"] != by_q["question"]
    )
    natural = [
        # near-verbatim: one extra space and a question mark less
        {"question": by_q["question"].rstrip("?") + " ", "answer": "다른 답입니다.", "answerable": True},
        # a different wording with the same gold sentence
        {"question": "완전히 다른 질문은 무엇일까요", "answer": by_a["answer"], "answerable": True},
        # unanswerable natural answers are the abstention phrase: never a reason to drop
        {"question": "반려동물 동반이 되나요 혹시", "answer": ABSTAIN, "answerable": False},
    ]
    report: dict = {}
    kept = build_dataset(chunks, synth_cfg(), ABSTAIN, report=report, natural=natural)
    kept_rows = [r for s in kept.values() for r in s]
    assert by_q["question"] not in {r["question"] for r in kept_rows}
    assert by_a["answer"] not in {r["answer"] for r in kept_rows}
    assert any(not r["answerable"] for r in kept_rows)
    assert report["filtered"]["natural_overlap"] >= 2
    clean: dict = {}
    build_dataset(chunks, synth_cfg(), ABSTAIN, report=clean)
    assert clean["filtered"]["natural_overlap"] == 0


def test_differences_compare_prices_of_one_unit_never_subsidies():
    subsidy = chunk(
        "c080",
        "지원금액",
        "구분 | 당일 여행 | 1박2일 여행\n단체관광객 유치 | 35만원 / 1대 | 60만원 / 1대\n수학여행 | 1인당 6천원 | 1인당 1만원",
        kind="table",
        path="준비 > 단체관광객 유치 인센티브 > 지원금액",
    )
    assert not [q for q in _questions(subsidy, questions_per_fact=2) if q["style"] == "difference"]
    # the same table as prices: '35만원 / 1대' and '1인당 6천원' are per different units, never subtracted
    text = subsidy["text"].replace("\n수학", "\n소형버스 | 25만원 / 1대 | 40만원 / 1대\n수학")
    fares = {**subsidy, "text": text, "chunk_id": "c081", "title": "요금", "section_path": "교통 > 전세버스 > 요금"}
    diff = [q for q in _questions(fares, questions_per_fact=2) if q["style"] == "difference"]
    assert diff and {q["answer_short"] for q in diff} <= {"100,000원", "200,000원"}  # per 1대 vs per 1대 only


def test_llm_sentence_answers_are_grounded_too_not_only_the_bare_value():
    from collections import Counter

    from stages.synthesize.llm import llm_candidates

    class Client:
        def chat(self, prompt):
            return json.dumps(
                [
                    {"question": "주소가 어디인가요?", "answer": "청풍호반 케이블카는 제천시 청풍면 문화재길 166에 있습니다.",
                     "answer_short": "제천시 청풍면 문화재길 166", "answer_kind": "address", "type": "factual"},
                    # bare value in the chunk, but the sentence invents a fare and an opening year
                    {"question": "어디에 있고 요금은 얼마인가요?",
                     "answer": "2019년 개장한 케이블카로 요금은 15,000원이며 제천시 청풍면 문화재길 166에 있습니다.",
                     "answer_short": "제천시 청풍면 문화재길 166", "answer_kind": "address", "type": "factual"},
                ],
                ensure_ascii=False,
            )  # fmt: skip

    stats: Counter = Counter()
    recs = llm_candidates(ATTRACTION, Client(), 2)
    kept = filter_records(recs, {ATTRACTION["chunk_id"]: ATTRACTION}, 0.8, 0.8, stats)
    assert [r["question"] for r in kept] == ["주소가 어디인가요?"] and stats["grounding"] == 1


def test_price_comparisons_read_man_won_and_ocr_dots_as_the_facts_do():
    import random

    a = chunk(
        "c090",
        "요금",
        "구분 | 요금 | 문의\n전세버스 | 35만원 | 043-111-2222\n미니버스 | 30만원 | 043-111-3333",
        kind="table",
        path="교통 > 버스",
    )
    b = chunk(
        "c091",
        "요금",
        "구분 | 요금 | 문의\n관광택시 | 6.000원 | 043-333-4444\n자전거 | 5.000원 | 043-333-5555",
        kind="table",
        path="교통 > 택시",
    )
    qs = [q for q in comparison_questions([a, b], LIM, random.Random(0), 4) if q["fact"] == "price"]
    assert qs
    for q in qs:  # 35만원 = 350,000원 > 6,000원 (a digit prefix read them as 35 and 6)
        names = [n for n in ("전세버스", "미니버스", "관광택시", "자전거") if n in q["question"]]
        won = {"전세버스": 350000, "미니버스": 300000, "관광택시": 6000, "자전거": 5000}
        assert q["answer_short"] == (max if "비싼" in q["question"] else min)(names, key=won.get)
    subsidy = {**a, "chunk_id": "c092", "section_path": "준비 > 단체관광 지원금"}
    rest = comparison_questions([subsidy, b], LIM, random.Random(0), 4)
    assert rest and not [q for q in rest if "버스" in q["question"]]  # the subsidy rows are never compared


def test_only_a_weekly_closing_day_makes_the_is_it_open_that_day_question():
    weekly = [q for q in _questions(CLOSED, questions_per_fact=3) if q["fact"] == "closed"]
    assert any(q["question"].startswith("월요일에 ") and q["answer"].startswith("아니요") for q in weekly)
    monthly = {**CLOSED, "chunk_id": "c073", "text": CLOSED["text"].replace("매주 월요일", "매월 첫째 월요일")}
    closed = [q for q in _questions(monthly, questions_per_fact=3) if q["fact"] == "closed"]
    assert closed and all(q["answer_short"] == "매월 첫째 월요일" for q in closed)
    assert not any("가도 문을 여나요" in q["question"] for q in closed)


def test_discounts_name_a_pass_only_when_the_section_is_one():
    plain = {**PERKS, "chunk_id": "c074", "title": "주요 행사", "section_path": "축제 > 겨울 축제 > 주요 행사"}
    qs = [q for q in _questions(plain, questions_per_fact=3) if q["fact"] == "discount"]
    assert qs and not any("있으면" in q["question"] + q["answer"] for q in qs)
    assert {q["answer"] for q in qs} >= {"제천 시티투어는 3,000원 할인됩니다."}


def test_golds_not_on_their_true_pages_are_dropped(tmp_path):
    from collections import Counter

    from stages.synthesize.filters import drop_off_truth, truth_pages

    menus = chunk(
        "c075",
        "맛집",
        "식당 | 메뉴 | 전화\n가람 | 김치음밥 | 043-111-1111\n나래 | 두부전골 | 043-222-2222",
        kind="table",
    )
    rows = _questions(menus, questions_per_fact=1)
    assert any("김치음밥" in r["key_facts"] for r in rows)
    # the true page: OCR misread '김치알밥'; rooms and phones as printed
    truth = truth_pages(
        [{"page": 22, "text": "가람 김치알밥 043-111-1111", "raster_regions": [{"text": "나래 두부전골 043-222-2222"}]}]
    )
    stats: Counter = Counter()
    kept = drop_off_truth(rows, truth, stats)
    assert stats["truth"] >= 1 and not any("김치음밥" in r["key_facts"] for r in kept)
    assert any("두부전골" in r["key_facts"] for r in kept) and any(r["answer_kind"] == "phone" for r in kept)
    assert drop_off_truth(rows, {}, Counter()) == rows  # no truth (another brochure): nothing checked
    assert drop_off_truth(rows, {5: "다른 페이지"}, Counter()) == rows  # pages the truth does not cover
    # the CLI: --truth is optional, an empty file means no filter, a missing one is a one-line error
    chunks_dir = tmp_path / "chunks"
    chunks_dir.mkdir()
    many = [menus, HOTELS_A, HOTELS_B, LODGING, ATTRACTION]
    (chunks_dir / "chunks.jsonl").write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in many))
    page = {"page": 22, "text": "\n".join(c["text"] for c in many).replace("김치음밥", "김치알밥")}
    (tmp_path / "truth.jsonl").write_text(json.dumps(page, ensure_ascii=False) + "\n", encoding="utf-8")
    args = ["--chunks", str(chunks_dir), "--out", str(tmp_path / "qa"), "--metrics", str(tmp_path / "m.json")]
    main([*args, "--truth", str(tmp_path / "truth.jsonl")])
    assert json.loads((tmp_path / "m.json").read_text())["filters"]["truth"] >= 1
    with pytest.raises(Exception, match="truth file not found"):
        main([*args, "--truth", str(tmp_path / "missing.jsonl")])


def test_yes_no_mix_adds_answerable_yes_no_questions_and_changes_nothing_else():
    places = [
        chunk(
            f"c1{i:02d}",
            f"전망대{i}",
            f"전망대{i}: 청풍호를 한눈에 볼 수 있는 전망대이다. 운영시간 09:00~18:00, 매주 월요일 휴장 "
            f"(제천시 수산면 옥순봉로 {100 + i}, 043-6{i:02d}-1234)",
        )
        for i in range(1, 13)
    ]
    base_mix = {"comparison": 0.0, "multihop": 0.0, "unanswerable": 0.2}
    before = build_dataset(places, synth_cfg(mix=base_mix), ABSTAIN)
    after = build_dataset(places, synth_cfg(mix={**base_mix, "yes_no": 0.5}), ABSTAIN)
    for name in before:
        old = [{k: v for k, v in r.items() if k != "id"} for r in before[name]]
        new = [{k: v for k, v in r.items() if k != "id"} for r in after[name]]
        assert [r for r in new if r in old] == old  # every question kept as it was, in its split
        added = [r for r in new if r not in old]
        singles = [r for r in old if r["answerable"]]
        assert len(added) <= round(0.5 * len(singles))
        asked = {(r["chunk_id"], r["fact"], r["answer_short"]) for r in singles}
        for r in added:
            assert r["answerable"] and r["style"] == "yes_no" and r["answer"].startswith(("네, ", "아니요, "))
            assert (r["chunk_id"], r["fact"], r["answer_short"]) in asked  # a fact this split already asks
            assert all(k.replace(" ", "") in r["answer"].replace(" ", "") for k in r["key_facts"])
    added = [r for name in after for r in after[name] if r["question"] not in {q["question"] for q in before[name]}]
    assert len(added) >= 6
    from stages.synthesize.card import dataset_card
    from stages.synthesize.dataset import counts

    card_off = dataset_card(counts(before), synth_cfg(mix=base_mix), ABSTAIN)
    card_on = dataset_card(counts(after), synth_cfg(mix={**base_mix, "yes_no": 0.5}), ABSTAIN)
    assert "yes_no" not in card_off.split("## Split")[0].split("Mix (params")[1]  # a pass that added nothing
    assert "'yes_no': 0.5" in card_on and "`mix.yes_no` added answerable yes/no questions" in card_on
    phone = next(r for r in added if r["fact"] == "phone")
    assert re.search(r"전화로 (문의할|물어볼) 수 있", phone["question"]) and phone["answer_short"] in phone["answer"]


def test_yes_no_questions_hold_for_the_value():
    import random

    from stages.synthesize.questions import chunk_facts, yes_no_candidates

    by_fact = {q["fact"]: q for q in yes_no_candidates(CLOSED, LIM, random.Random(0))}
    assert by_fact["closed"]["answer"] == "네, 옥순봉 출렁다리는 매주 월요일에 쉽니다."
    assert by_fact["hours"]["answer"].startswith("아니요, ")  # 'any time?' or 'at 19시?': no, and the hours
    always_open = chunk("c073", "무인 전망대", "무인 전망대: 운영시간 00:00~24:00 (제천시 수산면 옥순봉로 5)")
    assert "hours" in [f[0] for f in chunk_facts(always_open, LIM)]
    hours = [q for q in yes_no_candidates(always_open, LIM, random.Random(0)) if q["fact"] == "hours"]
    assert not any("아무 때나" in q["question"] for q in hours)  # open round the clock: the 'no' would be false


def test_missing_attribute_questions_ask_what_other_entries_state_with_the_answerable_wording():
    import random

    from stages.synthesize.styles import SPECS
    from stages.synthesize.unanswerable import missing_attribute_candidates

    museum = chunk("c081", "차문화박물관", "제천시 국사봉로 741 차 관련 유물 2,500여 점이 전시된 박물관이다.")
    stated = chunk(
        "c082", "꽃돌과학관", "제천시 송학면 송학주천로 647 꽃돌 전시관. 관람료 3,000원, 09:00~18:00, 043-653-1111"
    )
    about_museum = chunk("c083", "문의", "차문화박물관 문의 043-641-0000", kind="section")
    qs = missing_attribute_candidates(museum, [museum, stated], LIM, ABSTAIN, random.Random(0), 10)
    asked = {q["_subject"][1].split("/")[1] for q in qs}
    assert asked == {"hours", "price", "phone"}  # no closing day anywhere in this brochure: never asked
    templates = {attr: {re.sub(r"\{e\w*\}", "", t).strip() for _, t, _ in SPECS[attr].styles} for attr in asked}
    for q in qs:
        attr = q["_subject"][1].split("/")[1]
        assert not q["answerable"] and q["answer"] == ABSTAIN and q["style"] != "yes_no"
        # the answerable template's words, with the museum's name
        assert "차문화박물관" in q["question"] and any(
            all(part in q["question"] for part in re.split(r"\{e\w*\}", t)) for _, t, _ in SPECS[attr].styles
        ), (q["question"], templates[attr])
    # a chunk naming the museum with a phone number: its phone may be stated, so it is not asked
    qs = missing_attribute_candidates(museum, [museum, stated, about_museum], LIM, ABSTAIN, random.Random(0), 10)
    assert {q["_subject"][1].split("/")[1] for q in qs} == {"hours", "price"}
    # the place that states them gets none
    assert missing_attribute_candidates(stated, [museum, stated], LIM, ABSTAIN, random.Random(0), 10) == []


def test_missing_attribute_mix_swaps_unanswerable_questions_and_keeps_every_answerable_one_in_its_split():
    places = [
        chunk(f"c1{i:02d}", f"박물관{i}", f"박물관{i}: 유물을 전시하는 박물관이다. (제천시 수산면 옥순봉로 {100 + i})")
        for i in range(1, 13)
    ]
    stated = chunk(
        "c200", "꽃돌과학관", "꽃돌과학관: 관람료 3,000원, 09:00~18:00, 043-653-1111 (제천시 송학면 송학주천로 647)"
    )
    corpus = [*places, stated]
    base_mix = {"comparison": 0.0, "multihop": 0.0, "unanswerable": 0.2}
    before = build_dataset(corpus, synth_cfg(mix=base_mix), ABSTAIN)
    after = build_dataset(corpus, synth_cfg(mix={**base_mix, "missing_attribute": 0.5}), ABSTAIN)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "id"} for r in rows]  # noqa: E731
    n_before = n_after = n_new = 0
    for name in before:
        assert strip([r for r in after[name] if r["answerable"]]) == strip([r for r in before[name] if r["answerable"]])
        old = {r["question"] for r in before[name] if not r["answerable"]}
        new = [r for r in after[name] if not r["answerable"] and r["question"] not in old]
        assert all(r["chunk_id"] in {q["chunk_id"] for q in before[name]} for r in new)  # its chunk's split
        n_before += len(old)
        n_after += sum(not r["answerable"] for r in after[name])
        n_new += len(new)
    assert n_after == n_before and n_new == round(0.5 * n_before)
    new_questions = [r["question"] for s in after.values() for r in s if not r["answerable"]]
    assert any(
        w in q for q in new_questions for w in ("운영시간", "이용 시간", "몇 시", "요금", "얼마", "전화", "연락처")
    )
