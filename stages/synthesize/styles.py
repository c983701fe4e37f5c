"""How tourists ask, and how we answer: question phrasings per fact in several styles, each with
a one-sentence Korean answer that states the value.

A fact (``facts.py``, ``tables.py``) has a *key* ('address', 'closed', 'table_price', ...). ``SPECS[key]`` gives
the shape of its value (``answer_kind``: the value must have that shape to be asked at all) and
``(style, question, answer)`` templates. Placeholders: ``{e}`` the subject, ``{v}`` the value,
``{x}`` an extra (a verb, a previous stop ...), with particle forms ``{e_eun}`` (은/는), ``{e_ga}``
(이/가), ``{e_eul}`` (을/를), ``{e_wa}`` (과/와), ``{e_ro}`` ((으)로), ``{e_eui}`` (의) and the same
for ``v`` and ``x``; ``{day}`` is the weekday of a closing day.

Styles (data contract): direct, polite, colloquial, yes_no, how_to, when, recommendation,
difference, where_to_book, multi_part (+ policy, for unanswerable questions: ``unanswerable.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stages.common.korean import has_batchim

STYLES = (
    "direct",
    "polite",
    "colloquial",
    "yes_no",
    "how_to",
    "when",
    "recommendation",
    "difference",
    "where_to_book",
    "multi_part",
    "policy",
)
KINDS = ("phone", "time", "price", "address", "count", "date", "url", "name", "list", "text", "abstain")
SLOT_KINDS = ("phone", "time", "price", "address", "count", "date", "url")  # scored by exact normalised match


@dataclass(frozen=True)
class Spec:
    kind: str  # answer_kind of the value
    attr: str  # the attribute as a noun, for multi-part questions ('' = never combined)
    styles: tuple[tuple[str, str, str], ...]  # (style, question, answer)


def _s(kind: str, attr: str, *styles: tuple[str, str, str]) -> Spec:
    return Spec(kind, attr, tuple(styles))


SPECS: dict[str, Spec] = {
    "address": _s(
        "address",
        "주소",
        ("direct", "{e_eui} 주소는 어디인가요?", "{e_eui} 주소는 {v}입니다."),
        ("colloquial", "{e} 어디에 있어요?", "{e_eun} {v}에 있습니다."),
        ("polite", "{e}의 위치를 알려주시겠어요?", "{e_eun} {v}에 있습니다."),
        ("how_to", "{e}에 가려면 내비게이션에 어떤 주소를 입력하면 되나요?", "내비게이션에 {v_eul} 입력하시면 됩니다."),
    ),
    "phone": _s(
        "phone",
        "전화번호",
        ("direct", "{e_eui} 전화번호는 무엇인가요?", "{e_eui} 전화번호는 {v}입니다."),
        ("polite", "{e}에 문의하고 싶은데 연락처를 알려주실 수 있나요?", "{e_eui} 연락처는 {v}입니다."),
        ("colloquial", "{e} 전화번호 좀 알려줘요.", "{e_eui} 전화번호는 {v}입니다."),
        ("how_to", "{e}에 전화로 문의하려면 어떻게 하면 되나요?", "{v_ro} 전화하시면 됩니다."),
    ),
    "booking_phone": _s(
        "phone",
        "",
        ("where_to_book", "{e_eun} 어디로 연락해서 예약하나요?", "{e} 예약은 {v_ro} 전화하시면 됩니다."),
        ("how_to", "{e_eul} 전화로 예약하려면 어떻게 하나요?", "{v_ro} 전화해서 예약하시면 됩니다."),
        ("direct", "{e} 예약 문의 전화번호는 무엇인가요?", "{e} 예약 문의 전화번호는 {v}입니다."),
    ),
    "booking_url": _s(
        "url",
        "",
        ("where_to_book", "{e_eun} 어디에서 예약할 수 있나요?", "{e_eun} {v}에서 예약할 수 있습니다."),
        ("direct", "{e} 홈페이지 주소가 어떻게 되나요?", "{e} 홈페이지 주소는 {v}입니다."),
        ("how_to", "{e_eul} 온라인으로 예약하려면 어떻게 해야 하나요?", "{v}에 접속해서 예약하시면 됩니다."),
    ),
    "homepage": _s(
        "url",
        "",
        ("direct", "{e} 홈페이지 주소가 어떻게 되나요?", "{e} 홈페이지 주소는 {v}입니다."),
        ("how_to", "{e}에 대해 더 자세히 알아보려면 어디를 보면 되나요?", "{v}에서 자세한 내용을 확인할 수 있습니다."),
    ),
    "hours": _s(
        "time",
        "운영시간",
        ("direct", "{e_eui} 운영시간은 어떻게 되나요?", "{e_eui} 운영시간은 {v}입니다."),
        ("when", "{e_eun} 몇 시부터 몇 시까지 이용할 수 있나요?", "{e_eun} {v}에 이용할 수 있습니다."),
        ("colloquial", "{e} 몇 시에 열고 몇 시에 닫아요?", "{e_eui} 운영시간은 {v}입니다."),
        ("polite", "{e} 이용 시간을 알려주시겠어요?", "{e_eui} 운영시간은 {v}입니다."),
        ("yes_no", "{e}에 {late}에 가도 이용할 수 있나요?", "아니요, {e_eui} 운영시간은 {v}입니다."),
    ),
    "closed": _s(
        "date",
        "휴무일",
        ("when", "{e_eun} 언제 쉬나요?", "{e_eun} {v}에 쉽니다."),
        ("direct", "{e_eui} 휴무일은 언제인가요?", "{e_eui} 휴무일은 {v}입니다."),
        ("yes_no", "{day}에 {e}에 가도 문을 여나요?", "아니요, {e_eun} {v}에 쉽니다."),
        ("colloquial", "{e} 쉬는 날이 언제예요?", "{e_eun} {v}에 쉽니다."),
    ),
    "price": _s(
        "price",
        "요금",
        ("direct", "{e_eui} 요금은 얼마인가요?", "{e_eui} 요금은 {v}입니다."),
        ("colloquial", "{e} 얼마예요?", "{e_eui} 요금은 {v}입니다."),
        ("polite", "{e} 이용 요금이 궁금한데 알려주시겠어요?", "{e_eui} 요금은 {v}입니다."),
        ("yes_no", "{e_eun} 무료인가요?", "아니요, {e_eun} 유료이며 요금은 {v}입니다."),
    ),
    "named_price": _s(
        "price",
        "",
        ("direct", "{e} {x_eun} 얼마인가요?", "{e} {x_eun} {v}입니다."),
        ("colloquial", "{e} {x} 얼마예요?", "{e} {x_eun} {v}입니다."),
        ("yes_no", "{e}에 {x_ga} 있나요?", "네, {e} {x_eun} {v}입니다."),
    ),
    "discount": _s(
        "price",
        "",
        (
            "yes_no",
            "{x_ro} {e} 할인을 받을 수 있나요? 얼마 할인되나요?",
            "네, {x_ga} 있으면 {e} 요금을 {v} 할인받을 수 있습니다.",
        ),
        ("direct", "{x_ro} {e_eun} 얼마 할인되나요?", "{x_ga} 있으면 {e} 요금을 {v} 할인받을 수 있습니다."),
        ("colloquial", "{x} 있으면 {e} 싸게 탈 수 있어요?", "네, {x_ga} 있으면 {e} 요금을 {v} 할인받을 수 있습니다."),
    ),
    "discount_plain": _s(  # an 'N원 할인' line whose section is not a pass or card
        "price",
        "",
        ("direct", "{e_eun} 얼마 할인되나요?", "{e_eun} {v} 할인됩니다."),
        ("colloquial", "{e} 할인 얼마나 돼요?", "{e_eun} {v} 할인됩니다."),
    ),
    "fee": _s(
        "text",
        "",
        ("yes_no", "{e}에 입장료가 있나요?", "아니요, {e_eun} {v_ro} 이용할 수 있습니다."),
        ("direct", "{e} 이용 요금은 얼마인가요?", "{e_eun} {v_ro} 이용할 수 있습니다."),
        ("colloquial", "{e} 돈 내야 돼요?", "아니요, {e_eun} {v_ro} 이용할 수 있습니다."),
    ),
    "rooms": _s(
        "count",
        "객실 수",
        ("direct", "{e_eui} 객실 수는 몇 개인가요?", "{e}에는 객실이 {v} 있습니다."),
        ("colloquial", "{e} 방이 몇 개나 돼요?", "{e}에는 객실이 {v} 있습니다."),
        ("polite", "{e}에 객실이 몇 개 있는지 알려주시겠어요?", "{e}에는 객실이 {v} 있습니다."),
        ("recommendation", "단체로 묵을 숙소를 찾는데, {e}에는 객실이 몇 개 있나요?", "{e}에는 객실이 {v} 있습니다."),
    ),
    "duration": _s(
        "time",
        "소요시간",
        ("direct", "{e_eun} 시간이 얼마나 걸리나요?", "{e_eun} {v} 정도 걸립니다."),
        ("colloquial", "{e} 다 도는 데 얼마나 걸려요?", "{e_eun} {v} 정도 걸립니다."),
        ("polite", "{e}의 소요시간을 알려주시겠어요?", "{e_eui} 소요시간은 {v}입니다."),
        ("recommendation", "시간이 많지 않은데 {e_eun} 얼마나 걸리나요?", "{e_eun} {v} 정도 걸립니다."),
    ),
    "menu": _s(
        "list",
        "대표 메뉴",
        ("direct", "{e_eui} 대표 메뉴는 무엇인가요?", "{e_eui} 대표 메뉴는 {v}입니다."),
        ("recommendation", "{e}에 가면 무엇을 먹으면 좋을까요?", "{e}에서는 대표 메뉴인 {v_eul} 드셔 보세요."),
        ("colloquial", "{e_eun} 뭐가 맛있어요?", "{e_eui} 대표 메뉴는 {v}입니다."),
        ("yes_no", "{e}에 {item} 메뉴가 있나요?", "네, {e_eui} 대표 메뉴는 {v}입니다."),
    ),
    "sentence": _s(
        "text",
        "",
        ("direct", "{e_eun} 어떤 곳인가요?", "{sentence}"),
        ("polite", "{e}에 대해 간단히 소개해 주시겠어요?", "{sentence}"),
        ("recommendation", "{e}에 가 볼 만한가요? 어떤 곳인지 궁금해요.", "{sentence}"),
        ("colloquial", "{e} 어떤 데예요?", "{sentence}"),
    ),
    "definition": _s(
        "text",
        "",
        ("direct", "{e_eun} 무엇인가요?", "{sentence}"),
        ("polite", "{e}에 대해 설명해 주시겠어요?", "{sentence}"),
        ("colloquial", "{e_ga} 뭐예요?", "{sentence}"),
    ),
    "product": _s(  # a label table's '상품소개' row
        "text",
        "",
        ("direct", "{e_eun} 어떤 상품인가요?", "{sentence}"),
        ("polite", "{e}에 대해 소개해 주시겠어요?", "{sentence}"),
    ),
    "view": _s(
        "text",
        "",
        ("direct", "{e}에서는 어떤 풍경을 볼 수 있나요?", "{sentence}"),
        ("recommendation", "{e}에 가면 무엇을 구경하면 좋을까요?", "{sentence}"),
    ),
    "height": _s(
        "count",
        "높이",
        ("direct", "{e_eui} 높이는 얼마인가요?", "{e_eui} 높이는 {v}입니다."),
        ("colloquial", "{e} 얼마나 높아요?", "{e_eui} 높이는 {v}입니다."),
    ),
    "nearby_list": _s(
        "list",
        "",
        (
            "recommendation",
            "{e}에 가는 김에 근처에서 함께 둘러볼 만한 곳이 있을까요?",
            "{e} 주변에는 {v_ga} 있습니다.",
        ),
        ("direct", "{e} 주변 여행지로는 어디가 있나요?", "{e} 주변에는 {v_ga} 있습니다."),
    ),
    "amenities": _s(
        "list",
        "",
        ("direct", "{e}에는 어떤 편의시설이 있나요?", "{e}에는 {v_ga} 있습니다."),
        ("polite", "{e}에 어떤 시설이 갖춰져 있는지 알려주시겠어요?", "{e}에는 {v_ga} 있습니다."),
    ),
    "suits": _s(
        "text",
        "",
        ("recommendation", "{e_eun} 어떤 여행객이나 목적에 잘 맞나요?", "{e_eun} {v}{x} 적합합니다."),
        ("direct", "{e_eun} 어떤 경우에 이용하기 적합한가요?", "{e_eun} {v}{x} 적합합니다."),
    ),
    "suits_solo": _s(  # asked besides 'suits' when the value names solo or small-group travellers
        "text",
        "",
        ("recommendation", "혼자 여행하려고 하는데, {e_eul} 이용하는 게 좋을까요?", "네, {e_eun} {v}{x} 적합합니다."),
    ),
    "steps": _s(
        "list",
        "",
        ("how_to", "{e_eun} 어떻게 {x}하나요?", "{e_eun} {steps} 순서로 {x}합니다."),
        ("polite", "{e} {x} 절차를 알려주시겠어요?", "{e_eun} {steps} 순서로 {x}합니다."),
    ),
    "points": _s(
        "count",
        "",
        ("direct", "{e_eun} 몇 포인트인가요?", "{e_eun} {v}입니다."),
        ("how_to", "{e_eul} 받으려면 몇 포인트가 필요한가요?", "{e_eul} 받으려면 {v}가 필요합니다."),
    ),
    "label": _s(
        "text",
        "",
        ("direct", "{e}의 {x_eun} 어떻게 되나요?", "{e}의 {x_eun} {v_ida}"),
        ("polite", "{e}의 {x}에 대해 알려주시겠어요?", "{e}의 {x_eun} {v_ida}"),
    ),
    "festival": _s(
        "date",
        "",
        ("when", "{e_eun} 언제 열리나요?", "{e_eun} {v}에 열립니다."),
        ("colloquial", "{e} 몇 월에 해요?", "{e_eun} {v}에 열립니다."),
    ),
    "course_first": _s(
        "name",
        "",
        ("direct", "{e}의 첫 번째 방문지는 어디인가요?", "{e}의 첫 번째 방문지는 {v}입니다."),
        ("colloquial", "{e_eun} 어디서 시작해요?", "{e_eun} {v}에서 시작합니다."),
    ),
    "course_last": _s(
        "name",
        "",
        ("direct", "{e}의 마지막 방문지는 어디인가요?", "{e}의 마지막 방문지는 {v}입니다."),
        ("colloquial", "{e_eun} 어디서 끝나요?", "{e_eun} {v}에서 끝납니다."),
    ),
    "course_next": _s(
        "name",
        "",
        ("direct", "{e}에서 {x} 다음에 가는 곳은 어디인가요?", "{e}에서 {x} 다음에는 {v_ro} 갑니다."),
        ("colloquial", "{e}에서 {x_eul} 보고 나면 어디로 가요?", "{e}에서 {x} 다음에는 {v_ro} 갑니다."),
    ),
    "course_stops": _s(
        "list",
        "",
        ("direct", "{e}에서는 어떤 곳들을 들르나요?", "{e_eun} {steps} 순서로 둘러봅니다."),
        ("recommendation", "{e_ro} 여행하면 어디어디를 가게 되나요?", "{e_eun} {steps} 순서로 둘러봅니다."),
        ("yes_no", "{e}에 {item}도 들르나요?", "네, {e_eun} {steps} 순서로 둘러봅니다."),
    ),
    # table cells, phrased by the shape of the value and the column header
    "table_price": _s(
        "price",
        "",
        ("direct", "{e} {x_eun} 얼마인가요?", "{e} {x_eun} {v}입니다."),
        ("colloquial", "{e} {x} 얼마예요?", "{e} {x_eun} {v}입니다."),
    ),
    "table_time": _s(
        "time",
        "",
        ("direct", "{e} {x_eun} 몇 시인가요?", "{e} {x_eun} {v}입니다."),
        ("when", "{e} {x_eun} 언제인가요?", "{e} {x_eun} {v}입니다."),
    ),
    "table_hours": _s(
        "time",
        "",
        ("direct", "{e} {x_eun} 어떻게 되나요?", "{e} {x_eun} {v}입니다."),
        ("when", "{e}에는 몇 시부터 몇 시까지인가요?", "{e} {x_eun} {v}입니다."),
    ),
    "table_count": _s(
        "count",
        "",
        ("direct", "{e} {x_eun} 얼마인가요?", "{e} {x_eun} {v}입니다."),
        ("polite", "{e} {x}{x_q} 알려주시겠어요?", "{e} {x_eun} {v}입니다."),
    ),
    "table_text": _s(
        "text",
        "",
        ("direct", "{e}의 {x_eun} 무엇인가요?", "{e}의 {x_eun} {v_ida}"),
        ("polite", "{e}의 {x}{x_q} 알려주시겠어요?", "{e}의 {x_eun} {v_ida}"),
    ),
    "table_name": _s(
        "name",
        "",
        ("direct", "{e}의 {x_eun} 어디인가요?", "{e}의 {x_eun} {v}입니다."),
        ("polite", "{e}의 {x}{x_q} 알려주시겠어요?", "{e}의 {x_eun} {v}입니다."),
    ),
}

# facts.SENTENCE_FACTS names ('activity2': the '... 가능' pattern) -> (answer_kind, [(style, question, answer)]).
SENTENCE_SPECS: dict[str, Spec] = {
    "activity": _s(
        "text",
        "",
        ("direct", "{e}에서는 무엇을 {x} 수 있나요?", "{e}에서는 {v_eul} {x} 수 있습니다."),
        ("recommendation", "{e}에 가면 뭘 하면 좋을까요?", "{e}에서는 {v_eul} {x} 수 있습니다."),
        ("colloquial", "{e} 가면 뭐 할 수 있어요?", "{e}에서는 {v_eul} {x} 수 있습니다."),
    ),
    "activity2": _s(
        "text",
        "",
        ("direct", "{e}에서는 어떤 활동을 할 수 있나요?", "{e}에서는 {v_ga} 가능합니다."),
        ("recommendation", "{e}에 가면 어떤 체험을 해 볼 수 있을까요?", "{e}에서는 {v_ga} 가능합니다."),
    ),
    "famous": _s(
        "text",
        "",
        ("direct", "{e_eun} 무엇으로 유명한가요?", "{e_eun} {v_ro} 유명합니다."),
        ("colloquial", "{e_eun} 뭐로 유명해요?", "{e_eun} {v_ro} 유명합니다."),
    ),
    "selected": _s(
        "name",
        "",
        ("direct", "{e_eun} 어떤 명소 목록에 선정되었나요?", "{e_eun} {v}에 선정되었습니다."),
        ("polite", "{e_ga} 어디에 선정된 곳인지 알려주시겠어요?", "{e_eun} {v}에 선정되었습니다."),
    ),
    "event": _s(
        "name",
        "",
        ("direct", "{e}에서는 매년 어떤 행사가 열리나요?", "{e}에서는 매년 {v_ga} 열립니다."),
        ("colloquial", "{e}에서 해마다 하는 행사가 뭐예요?", "{e}에서는 매년 {v_ga} 열립니다."),
    ),
    "operator": _s(
        "name",
        "",
        ("direct", "{e_eun} 어느 기관이 운영하나요?", "{e_eun} {v_ga} 운영합니다."),
        ("polite", "{e}의 운영 주체가 어디인지 알려주시겠어요?", "{e_eun} {v_ga} 운영합니다."),
    ),
    "designated": _s(
        "date",
        "",
        ("when", "{e_eun} 언제 보물로 지정되었나요?", "{e_eun} {v}에 보물로 지정되었습니다."),
        ("direct", "{e_eun} 몇 년에 보물로 지정되었나요?", "{e_eun} {v}에 보물로 지정되었습니다."),
    ),
    "certified": _s("date", "", ("when", "{e_eun} 몇 년에 인증을 받았나요?", "{e_eun} {v}에 인증을 받았습니다.")),
    "built": _s(
        "date",
        "",
        ("when", "{e_eun} 언제 만들어졌나요?", "{e_eun} {v}에 만들어졌습니다."),
        ("colloquial", "{e} 언제 생긴 곳이에요?", "{e_eun} {v}에 만들어졌습니다."),
    ),
    "founded": _s(
        "date",
        "",
        ("when", "{e_eun} 언제 창건되었나요?", "{e_eun} {v}에 창건되었습니다."),
        ("direct", "{e_eun} 언제 세워진 절인가요?", "{e_eun} {v}에 창건되었습니다."),
    ),
    "species": _s(
        "count",
        "",
        ("direct", "{e}에는 몇 종의 식물이 있나요?", "{e}에는 {v}의 식물이 있습니다."),
        ("colloquial", "{e}에 식물이 몇 종이나 있어요?", "{e}에는 {v}의 식물이 있습니다."),
    ),
    "exhibits": _s(
        "count",
        "",
        ("direct", "{e}에는 유물이 몇 점 전시되어 있나요?", "{e}에는 유물 {v_ga} 전시되어 있습니다."),
        ("colloquial", "{e}에 유물이 얼마나 있어요?", "{e}에는 유물 {v_ga} 전시되어 있습니다."),
    ),
    "parking": _s(
        "count",
        "",
        ("yes_no", "{e}에 주차할 수 있나요? 몇 대나 댈 수 있나요?", "네, {e}에는 {v} 규모의 주차장이 있습니다."),
        ("direct", "{e}에는 차를 몇 대 댈 수 있나요?", "{e}에는 {v} 규모의 주차장이 있습니다."),
    ),
    "seats": _s(
        "count",
        "",
        ("direct", "{e_eun} 좌석이 몇 석 규모인가요?", "{e_eun} {v} 규모입니다."),
        ("recommendation", "단체로 가려는데 {e}에 자리가 넉넉한가요?", "네, {e_eun} {v} 규모입니다."),
    ),
    "length": _s(
        "count",
        "",
        ("direct", "{e}의 길이는 얼마나 되나요?", "{e}의 길이는 {v}입니다."),
        ("colloquial", "{e} 길이가 얼마나 돼요?", "{e}의 길이는 {v}입니다."),
    ),
    "period": _s(
        "date",
        "운영기간",
        ("when", "{e_eun} 언제 운영하나요?", "{e_eui} 운영기간은 {v}입니다."),
        ("direct", "{e_eui} 운영기간은 어떻게 되나요?", "{e_eui} 운영기간은 {v}입니다."),
        ("colloquial", "{e} 언제 가야 이용할 수 있어요?", "{e_eui} 운영기간은 {v}입니다."),
    ),
    "closed": SPECS["closed"],
    "capacity": _s(
        "count",
        "",
        ("direct", "{e_eun} 몇 명까지 입장할 수 있나요?", "{e_eun} {v}까지 입장할 수 있습니다."),
        ("yes_no", "{e}에 인원 제한이 있나요?", "네, {e_eun} {v}까지 입장할 수 있습니다."),
    ),
    "filming": _s(
        "name",
        "",
        ("direct", "{e_eun} 어떤 작품의 촬영지인가요?", "{e_eun} {v} 촬영지입니다."),
        ("colloquial", "{e} 어디 촬영지로 유명해요?", "{e_eun} {v} 촬영지입니다."),
    ),
    "booking": _s(
        "url",
        "",
        ("where_to_book", "{e_eun} 어디에서 예매하나요?", "{e_eun} {v}에서 예매할 수 있습니다."),
        ("how_to", "{e_eul} 예매하려면 어떻게 해야 하나요?", "{v}에서 예매하시면 됩니다."),
    ),
    "nearby": _s(
        "name",
        "",
        ("direct", "{e_eun} 어디 근처에 있나요?", "{e_eun} {v} 인근에 있습니다."),
        ("colloquial", "{e} 어디 쪽에 있어요?", "{e_eun} {v} 인근에 있습니다."),
    ),
    "fee": SPECS["fee"],
}

# Yes/no phrasings whose answer is "네, ..." (or "아니요, ...") with the value, asked only by the yes/no pass
# (``synthesize.mix.yes_no``), on top of the spec's own styles: without them the rules generator's yes/no questions
# are mostly the unanswerable ones ("...에 화장실이 있나요?"), so the question form alone predicts an abstention.
# Each holds whenever the fact exists (the brochure lists a phone, so one can call); the spec's own yes_no styles
# are candidates too. (spec name) -> ((question, answer), ...)
YES_NO: dict[str, tuple[tuple[str, str], ...]] = {
    "activity": (
        ("{e}에서 해 볼 만한 체험이 있나요?", "네, {e}에서는 {v_eul} {x} 수 있습니다."),
        ("{e} 가면 할 거리가 있어요?", "네, {e}에서는 {v_eul} {x} 수 있습니다."),
    ),
    "activity2": (("{e}에서 체험 활동을 할 수 있나요?", "네, {e}에서는 {v_ga} 가능합니다."),),
    "phone": (
        ("{e}에 전화로 문의할 수 있나요?", "네, {e_eui} 전화번호는 {v}입니다."),
        ("{e}에 전화로 물어볼 수 있어요?", "네, {e_eui} 전화번호는 {v}입니다."),
    ),
    "booking_phone": (("{e_eun} 전화로 예약할 수 있나요?", "네, {e} 예약은 {v_ro} 전화하시면 됩니다."),),
    "booking_url": (
        ("{e_eun} 온라인으로 예약할 수 있나요?", "네, {e_eun} {v}에서 예약할 수 있습니다."),
        ("{e} 인터넷으로 예약돼요?", "네, {e_eun} {v}에서 예약할 수 있습니다."),
    ),
    "homepage": (("{e} 홈페이지가 있나요?", "네, {e} 홈페이지 주소는 {v}입니다."),),
    "price": (
        ("{e_eun} 유료인가요? 얼마예요?", "네, {e_eui} 요금은 {v}입니다."),
        ("{e} 이용하려면 돈을 내야 하나요?", "네, {e_eui} 요금은 {v}입니다."),
    ),
    "discount": (("{x_ro}도 {e} 할인돼요?", "네, {x_ga} 있으면 {e} 요금을 {v} 할인받을 수 있습니다."),),
    "discount_plain": (("{e} 할인받을 수 있나요?", "네, {e_eun} {v} 할인됩니다."),),
    "rooms": (
        ("{e}에서 숙박할 수 있나요?", "네, {e}에는 객실이 {v} 있습니다."),
        ("{e}에서 묵을 수 있어요?", "네, {e}에는 객실이 {v} 있습니다."),
    ),
    "closed": (
        ("{e}도 쉬는 날이 있나요?", "네, {e_eun} {v}에 쉽니다."),
        ("{e} 쉬는 날 있어요?", "네, {e_eun} {v}에 쉽니다."),
    ),
    "hours": (("{e_eun} 아무 때나 이용할 수 있나요?", "아니요, {e_eui} 운영시간은 {v}입니다."),),
    "period": (("{e_eun} 일 년 내내 운영하나요?", "아니요, {e_eui} 운영기간은 {v}입니다."),),
    "amenities": (("{e}에 편의시설이 있나요?", "네, {e}에는 {v_ga} 있습니다."),),
    "nearby_list": (("{e} 근처에 같이 가 볼 만한 곳이 있나요?", "네, {e} 주변에는 {v_ga} 있습니다."),),
    "nearby": (("{e_eun} 다른 명소와 가까운가요?", "네, {e_eun} {v} 인근에 있습니다."),),
    "event": (("{e}에서 해마다 열리는 행사가 있나요?", "네, {e}에서는 매년 {v_ga} 열립니다."),),
    "famous": (("{e_eun} 유명한 곳인가요?", "네, {e_eun} {v_ro} 유명합니다."),),
    "selected": (("{e_eun} 명소로 선정된 적이 있나요?", "네, {e_eun} {v}에 선정되었습니다."),),
    "designated": (("{e_eun} 보물로 지정된 문화재인가요?", "네, {e_eun} {v}에 보물로 지정되었습니다."),),
    "certified": (("{e_eun} 인증을 받은 곳인가요?", "네, {e_eun} {v}에 인증을 받았습니다."),),
    "filming": (("{e}에서 촬영한 작품이 있나요?", "네, {e_eun} {v} 촬영지입니다."),),
    "species": (("{e}에 식물이 많이 있나요?", "네, {e}에는 {v}의 식물이 있습니다."),),
    "exhibits": (("{e}에 전시된 유물이 많나요?", "네, {e}에는 유물 {v_ga} 전시되어 있습니다."),),
    "booking": (("{e_eun} 미리 예매할 수 있나요?", "네, {e_eun} {v}에서 예매할 수 있습니다."),),
    "operator": (("{e_eun} 운영하는 기관이 따로 있나요?", "네, {e_eun} {v_ga} 운영합니다."),),
}
# A value for which the fact's YES_NO answer would be false: a year-round 'period', 24-hour 'hours'. ('price'
# needs none: every price fact is an amount in won, never '무료'.)
YES_NO_UNLESS: dict[str, re.Pattern[str]] = {
    "period": re.compile(r"연중|상시|1월\s*~\s*12월"),
    "hours": re.compile(r"24시간|00:00\s*~\s*24:00"),
}

# Two slot facts of one subject in one question ({a1}, {a2}: the facts' Spec.attr); the answer is built in code.
MULTI_PART = (
    ("multi_part", "{e_eui} {a1_wa} {a2_eul} 알려주세요."),
    ("multi_part", "{e} {a1_ga} 어떻게 되나요? {a2}도 알려주세요."),
)
# Two rows of one price column ({k1} the cheaper, {k2} the dearer row, {col} the column).
DIFFERENCE = (
    ("difference", "{e} {k1_wa} {k2}의 {col} 차이는 얼마인가요?"),
    ("difference", "{e} {k2_eun} {k1}보다 {col}이 얼마나 더 비싼가요?"),
)

# A value must have its fact's shape to be asked (the type/shape filter).
SHAPES: dict[str, re.Pattern[str]] = {
    "phone": re.compile(r"^0\d{1,2}[-.]\s?\d{3,4}[-.]\s?\d{4}$"),
    "time": re.compile(r"\d{1,2}:\d{2}|\d\s*(?:시간|분)|\d+시"),
    "price": re.compile(r"\d[\d,.]*\s*(?:만|천)?\s*원|\d+%|무료"),
    "address": re.compile(r"[가-힣]+(?:시|군|구)\s.*(?:\d|일원)"),
    "count": re.compile(r"\d"),
    "date": re.compile(r"\d{4}년|\d{1,2}월|[월화수목금토일]요일|\d{1,2}일|\d{4}\.\s?\d"),
    "url": re.compile(r"^(?:https?://)?[\w.-]+\.[a-z]{2,}(?:/\S*)?$", re.I),
    "name": re.compile(r"^[^\d].{0,40}$|^\d+[^\d\s:]"),
    "list": re.compile(r"\S"),
    "text": re.compile(r"[가-힣]"),
}


def has_shape(value: str, kind: str) -> bool:
    """True when a value looks like an answer of this kind (a price answer is money, a time a time ...)."""
    pattern = SHAPES.get(kind)
    if pattern is None:
        return False
    if kind == "name" and re.search(r"\d{1,2}:\d{2}|\d[\d,]*원", value):
        return False  # a time or a price is not a name
    if kind == "text" and re.fullmatch(r"[\d\s,.:~\-/원%]+", value):
        return False
    return bool(pattern.search(value))


def ro(word: str) -> str:
    """Particle (으)로: '전화번호 043-647-2121' -> '...2121로' (1 reads 일: ㄹ takes 로)."""
    w = word.strip()
    if not w:
        return w
    last = w[-1]
    if "가" <= last <= "힣":
        coda = (ord(last) - 0xAC00) % 28
        return w + ("로" if coda in (0, 8) else "으로")
    if last.isdigit():
        return w + ("로" if last in "1245789" else "으로")  # 영 삼 육 end in a consonant other than ㄹ
    return w + ("으로" if has_batchim(w) else "로")


def ida(word: str) -> str:
    """'… 상품' -> '… 상품입니다.'; a value that already ends a sentence keeps it."""
    w = word.strip().rstrip(".")
    if re.search(r"(다|요|니다)$", w):
        return w + "."
    if re.search(r"(적합|가능)$", w):
        return w + "합니다."
    return w + "입니다."
