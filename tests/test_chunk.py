from stages.chunk import chunk_blocks
from stages.common import params as P

CFG = {
    "max_chars": 120,
    "min_chars": 15,
    "overlap_sentences": 0,
    "entry_level": 3,
    "toc_titles": ["contents"],
    "entry_name_max_chars": 40,
    "entry_name_max_words": 6,
}


def cfg(**changes):
    """The chunk section as the stage gets it from params.load (a typed section), with ``changes``."""
    return P.make_section("chunk", {**CFG, **changes})


def block(page, order, text, type_="text", size=None, source="textlayer", level=None):
    return {
        "doc": "d",
        "page": page,
        "block_id": f"p{page:03d}-b{order:03d}",
        "order": order,
        "type": type_,
        "bbox": [10, order * 20, 200, order * 20 + 15],
        "text": text,
        "source": source,
        "confidence": None,
        "font_size": size,
        "level": level,
    }


BLOCKS = [
    block(2, 1, "contents", "title", 20),
    block(2, 2, "PART 1 출발 전 준비 04", "text"),
    block(12, 0, "PART 2 · 미리보는 여행지", "header"),
    block(12, 3, "남부권역 주요 관광지", "title", 20),
    block(
        12,
        4,
        "청풍호반 케이블카: 비봉산의 풍경을 감상할 수 있는 제천 관광의 랜드마크이다.\n(제천시 청풍면 문화재길 166)",
        "list",
    ),
    block(
        12,
        5,
        "옥순봉 출렁다리: 명승 제48호 옥순봉을 잇는 222m 출렁다리이다. (제천시 수산면 옥순봉로 342)",
        "list",
        source="ocr",
    ),
    block(12, 6, "12", "footer"),
    block(13, 0, "PART 4 · 편안한 휴식과 숙소", "header"),
    block(13, 1, "주요 숙박시설", "title", 20),
    block(
        13,
        2,
        "구분 | 객실수\n포레스트 리솜 | 451\nES리조트 | 255\n청풍리조트 | 276\n박달재수련원 | 50\n청풍유스호스텔 | 25\n서울관광호텔 | 42\nHOUND 하운드호텔 제천역점 | 41\n제천 더월 (The Wall) 호텔 | 40",
        "table",
    ),
]


def test_entries_become_chunks_with_section_path_and_provenance():
    chunks = chunk_blocks(BLOCKS, cfg())
    cable = next(c for c in chunks if c["title"] == "청풍호반 케이블카")
    assert cable["section_path"] == "PART 2 미리보는 여행지 > 남부권역 주요 관광지 > 청풍호반 케이블카"
    assert cable["title"] == "청풍호반 케이블카"
    assert cable["kind"] == "entry"
    assert "문화재길 166" in cable["text"]  # continuation line stays with its entry
    assert cable["pages"] == [12]
    bridge = next(c for c in chunks if c["title"] == "옥순봉 출렁다리")
    assert bridge["sources"] == {"ocr": len(BLOCKS[5]["text"])}


def test_headers_and_footers_are_dropped():
    texts = "\n".join(c["text"] for c in chunk_blocks(BLOCKS, cfg()))
    assert "\n12\n" not in f"\n{texts}\n"
    assert all(c["section_path"] != "PART 2" for c in chunk_blocks(BLOCKS, cfg()))
    assert "PART 1 출발 전 준비 04" not in texts  # the contents page is not content


def test_running_header_sets_the_part_and_font_size_ranks_set_levels():
    blocks = [
        block(14, 0, "PART 2 · 미리보는 여행지", "header"),
        block(14, 1, "남부권역 주요 관광지", "title", 20),
        block(14, 2, "권역 소개", "title", 14.5),
        block(14, 3, "청풍랜드", "title", 12),
        block(14, 4, "제천시 청풍면 청풍호로50길 6 청풍호를 배경으로 번지점프와 짚라인을 즐길 수 있다."),
        block(14, 5, "청풍수상레저", "title", 12),
        block(14, 6, "제천시 금성면 굴리-성내리 근방 6월부터 9월 초까지 운영되는 수상액티비티이다."),
    ]
    chunks = chunk_blocks(blocks, cfg())
    assert [(c["kind"], c["title"]) for c in chunks] == [("entry", "청풍랜드"), ("entry", "청풍수상레저")]
    assert chunks[1]["section_path"] == "PART 2 미리보는 여행지 > 남부권역 주요 관광지 > 권역 소개 > 청풍수상레저"


def test_tiny_subheading_merges_into_the_next_table_as_caption():
    blocks = [
        block(22, 1, "주요 숙박시설", "title", 20),
        block(22, 2, "호텔"),
        block(22, 3, "숙박시설 | 객실수\n서울관광호텔 | 42", "table"),
    ]
    [table] = chunk_blocks(blocks, cfg())
    assert table["kind"] == "table" and table["text"] == "호텔\n숙박시설 | 객실수\n서울관광호텔 | 42"


def test_long_table_is_split_by_rows_and_keeps_header():
    tables = [c for c in chunk_blocks(BLOCKS, cfg()) if c["kind"] == "table"]
    assert len(tables) == 2
    assert all(t["text"].startswith("구분 | 객실수\n") for t in tables)
    rows = [r for t in tables for r in t["text"].splitlines()[1:]]
    assert len(rows) == 8 and rows[0] == "포레스트 리솜 | 451"


def test_ids_are_stable_and_sequential():
    first, second = chunk_blocks(BLOCKS, cfg()), chunk_blocks(list(reversed(BLOCKS)), cfg())
    assert [c["chunk_id"] for c in first] == [f"c{i:03d}" for i in range(1, len(first) + 1)]
    assert first == second  # input order does not matter: blocks are sorted by (page, order)


def test_colon_inside_brackets_is_not_an_entry():
    blocks = [
        block(1, 1, "트레킹", "title", 20),
        block(1, 2, "의림지 숲길 (소요시간: 30분)\n금수산 용담폭포 (소요시간: 2시간)", "list"),
    ]
    chunks = chunk_blocks(blocks, cfg())
    assert [c["kind"] for c in chunks] == ["section"]


def test_long_section_splits_at_sentence_boundaries():
    text = " ".join(f"문장 {i}번은 제천의 관광지를 소개합니다." for i in range(12))
    chunks = chunk_blocks([block(1, 1, "소개", "title", 20), block(1, 2, text)], cfg())
    assert len(chunks) > 1
    assert all(len(c["text"]) <= CFG["max_chars"] for c in chunks)
    assert all(c["text"].endswith("소개합니다.") for c in chunks)


def test_ocr_title_without_font_size_takes_parse_level():
    # OCR titles have no font size: parse's level (3, from OCR line height) makes '청풍호반 케이블카'
    # a sibling of the 12 pt entry '청풍랜드' (size rank 3) instead of the deepest level
    blocks = [
        block(14, 1, "남부권역 주요 관광지", "title", 20, level=3),
        block(14, 2, "권역 소개", "title", 14.5, level=3),
        block(14, 3, "청풍호반 케이블카", "title", None, source="ocr", level=3),
        block(
            14, 4, "제천시 청풍면 문화재길 166 비봉산의 풍경을 감상할 수 있는 제천 관광의 랜드마크이다.", source="ocr"
        ),
        block(14, 5, "청풍랜드", "title", 12, level=3),
        block(14, 6, "제천시 청풍면 청풍호로50길 6 번지점프와 짚라인을 즐길 수 있다."),
        block(14, 7, "청풍수상레저", "title", 10.5, level=3),  # a smaller size ranks deeper (4)
        block(14, 8, "제천시 금성면 굴리-성내리 근방 6월부터 9월 초까지 운영되는 수상액티비티이다."),
    ]
    chunks = chunk_blocks(blocks, cfg())
    assert [c["section_path"] for c in chunks] == [
        "남부권역 주요 관광지 > 권역 소개 > 청풍호반 케이블카",
        "남부권역 주요 관광지 > 권역 소개 > 청풍랜드",
        "남부권역 주요 관광지 > 권역 소개 > 청풍랜드 > 청풍수상레저",
    ]


def test_entry_name_limits_come_from_params():
    line = "청풍호반 케이블카 타는 곳 안내: 매표소는 1층입니다."  # a 5-word name
    blocks = [block(1, 1, "안내", "title", 20), block(1, 2, line, "list")]
    assert chunk_blocks(blocks, cfg())[0]["kind"] == "entry"
    assert chunk_blocks(blocks, cfg(entry_name_max_words=4))[0]["kind"] == "section"
    assert chunk_blocks(blocks, cfg(entry_name_max_chars=10))[0]["kind"] == "section"


def test_bare_headings_become_list_lines_of_their_section():
    """Festival names set as headings over photos (no text under them) must land in a chunk."""
    blocks = [
        block(11, 0, "PART 2 · 미리보는 여행지", "header"),
        block(11, 1, "제천의 축제", "title", 20),
        block(11, 2, "제천에서 열리는 다양한 축제와 함께 여행을 즐기세요.", "text"),
        block(11, 3, "청풍호 벚꽃축제", "title", 14),
        block(11, 4, "제천국제음악영화제", "title", 14),
        block(11, 5, "봉양박달콩축제", "title", 14),
        block(12, 0, "PART 2 · 미리보는 여행지", "header"),
        block(12, 1, "남부권역 주요 관광지", "title", 20),
        block(12, 2, "청풍호반 케이블카", "title", 14),
        block(12, 3, "비봉산의 풍경을 감상할 수 있는 제천 관광의 랜드마크이다.", "text"),
    ]
    chunks = chunk_blocks(blocks, cfg(max_chars=400))
    festival = [c for c in chunks if c["title"] == "제천의 축제"]
    assert len(festival) == 1
    assert festival[0]["text"].splitlines()[1:] == ["청풍호 벚꽃축제", "제천국제음악영화제", "봉양박달콩축제"]
    assert festival[0]["pages"] == [11]
    # A heading with text under it keeps its own chunk; its parent section is not listed as bare.
    cable = [c for c in chunks if c["title"] == "청풍호반 케이블카"]
    assert len(cable) == 1 and cable[0]["text"].startswith("비봉산")
    assert all("남부권역 주요 관광지" not in c["text"] for c in chunks)
