from stages.chunk import chunk_blocks

CFG = {"max_chars": 120, "min_chars": 15, "overlap_sentences": 0}


def block(page, order, text, type_="text", level=None, source="textlayer"):
    return {"doc": "d", "page": page, "block_id": f"p{page:03d}-b{order:03d}", "order": order, "type": type_,
            "bbox": [10, order * 20, 200, order * 20 + 15], "text": text, "source": source,
            "confidence": None, "font_size": None, "level": level}


BLOCKS = [
    block(12, 0, "PART 2", "header"),
    block(12, 1, "PART 2", "title"),
    block(12, 2, "미리보는 여행지", "title"),
    block(12, 3, "남부권역 주요 관광지", "title", level=2),
    block(12, 4, "청풍호반 케이블카: 비봉산의 풍경을 감상할 수 있는 제천 관광의 랜드마크이다.\n(제천시 청풍면 문화재길 166)", "list"),
    block(12, 5, "옥순봉 출렁다리: 명승 제48호 옥순봉을 잇는 222m 출렁다리이다. (제천시 수산면 옥순봉로 342)", "list", source="ocr"),
    block(12, 6, "12", "footer"),
    block(13, 1, "주요 숙박시설", "title", level=2),
    block(13, 2, "구분 | 객실수\n포레스트 리솜 | 451\nES리조트 | 255\n청풍리조트 | 276\n박달재수련원 | 50\n청풍유스호스텔 | 25\n서울관광호텔 | 42\nHOUND 하운드호텔 제천역점 | 41\n제천 더월 (The Wall) 호텔 | 40", "table"),
]


def test_entries_become_chunks_with_section_path_and_provenance():
    chunks = chunk_blocks(BLOCKS, CFG)
    cable = next(c for c in chunks if c["title"] == "청풍호반 케이블카")
    assert cable["section_path"] == "PART 2 미리보는 여행지 > 남부권역 주요 관광지 > 청풍호반 케이블카"
    assert cable["kind"] == "entry"
    assert "문화재길 166" in cable["text"]  # continuation line stays with its entry
    assert cable["pages"] == [12]
    bridge = next(c for c in chunks if c["title"] == "옥순봉 출렁다리")
    assert bridge["sources"] == {"ocr": len(BLOCKS[5]["text"])}


def test_headers_and_footers_are_dropped():
    texts = "\n".join(c["text"] for c in chunk_blocks(BLOCKS, CFG))
    assert "\n12\n" not in f"\n{texts}\n"
    assert all(c["section_path"] != "PART 2" for c in chunk_blocks(BLOCKS, CFG))


def test_long_table_is_split_by_rows_and_keeps_header():
    tables = [c for c in chunk_blocks(BLOCKS, CFG) if c["kind"] == "table"]
    assert len(tables) == 2
    assert all(t["text"].startswith("구분 | 객실수\n") for t in tables)
    rows = [r for t in tables for r in t["text"].splitlines()[1:]]
    assert len(rows) == 8 and rows[0] == "포레스트 리솜 | 451"


def test_ids_are_stable_and_sequential():
    first, second = chunk_blocks(BLOCKS, CFG), chunk_blocks(list(reversed(BLOCKS)), CFG)
    assert [c["chunk_id"] for c in first] == [f"c{i:03d}" for i in range(1, len(first) + 1)]
    assert first == second  # input order does not matter: blocks are sorted by (page, order)


def test_colon_inside_brackets_is_not_an_entry():
    blocks = [block(1, 1, "트레킹", "title"), block(1, 2, "의림지 숲길 (소요시간: 30분)\n금수산 용담폭포 (소요시간: 2시간)", "list")]
    chunks = chunk_blocks(blocks, CFG)
    assert [c["kind"] for c in chunks] == ["section"]


def test_long_section_splits_at_sentence_boundaries():
    text = " ".join(f"문장 {i}번은 제천의 관광지를 소개합니다." for i in range(12))
    chunks = chunk_blocks([block(1, 1, "소개", "title"), block(1, 2, text)], CFG)
    assert len(chunks) > 1
    assert all(len(c["text"]) <= CFG["max_chars"] for c in chunks)
    assert all(c["text"].endswith("소개합니다.") for c in chunks)
