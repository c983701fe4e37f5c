"""Korean text helpers: morpheme tokens (Kiwi), particle choice, normalisation."""

from __future__ import annotations

import functools
import re
import unicodedata

# Kiwi POS tags kept as content tokens for search and token-F1: nouns, verb/adjective
# stems, adverbs, roots, foreign words, numbers, hanja, and Kiwi's web/serial tokens.
# Particles (J*), endings (E*) and punctuation (S* except SL/SN/SH) carry no meaning
# for matching. W_SERIAL is how Kiwi tags times, phone numbers and dotted dates
# ('09:00', '043-652-9222', '2025.10.1.'): without it such answers had no content
# tokens at all and every token F1 compared two empty lists. W_URL/W_EMAIL are
# booking sites and contact addresses, facts in their own right.
_CONTENT_TAGS = ("NN", "NR", "NP", "VV", "VA", "MAG", "XR", "SL", "SN", "SH", "MM", "W_SERIAL", "W_URL", "W_EMAIL")


@functools.lru_cache(maxsize=1)
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi()


def normalize(text: str) -> str:
    """NFC, unify whitespace."""
    text = unicodedata.normalize("NFC", text)
    return re.sub(r"\s+", " ", text).strip()


def morphemes(text: str) -> list[str]:
    """Content morphemes of ``text`` (lower-cased), e.g. '케이블카의 주소는' -> ['케이블카', '주소']."""
    text = normalize(text)
    if not text:
        return []
    return [tok.form.lower() for tok in _kiwi().tokenize(text) if tok.tag.startswith(_CONTENT_TAGS)]


def search_tokens(text: str) -> list[str]:
    """BM25 tokens: content morphemes plus the character bigrams of longer ones.

    Kiwi segments compounds differently by context ('제천한방엑스포공원' stays one
    token in a passage but splits into 제천/한방/엑스포/공원 before a particle in a
    question); the shared bigrams let the two forms still match.
    """
    tokens = morphemes(text)
    grams = [tok[i : i + 2] for tok in tokens if len(tok) > 2 and not tok.isascii() for i in range(len(tok) - 1)]
    return tokens + grams


def search_tokens_batch(texts: list[str]) -> list[list[str]]:
    return [search_tokens(t) for t in texts]


def has_batchim(word: str) -> bool:
    """True when the last Hangul syllable ends in a consonant (받침); digits read as Korean."""
    word = word.strip()
    if not word:
        return False
    last = word[-1]
    if "가" <= last <= "힣":
        return (ord(last) - 0xAC00) % 28 != 0
    # 0 영, 1 일, 3 삼, 6 육, 7 칠, 8 팔 end in a consonant.
    if last.isdigit():
        return last in "013678"
    # Latin words as Koreans read them: Premium -> 프리미엄, Hotel -> 호텔, Spring -> 스프링 end in a consonant;
    # Cafe -> 카페, Tour -> 투어, Park -> 파크 do not.
    if last.isascii() and last.isalpha():
        tail = word.lower()
        return tail.endswith(("m", "n", "l", "ng")) and not tail.endswith("le")
    return False


def josa(word: str, pair: str) -> str:
    """Attach the right particle: josa('케이블카', '은/는') -> '케이블카는'."""
    with_batchim, without = pair.split("/")
    return word + (with_batchim if has_batchim(word) else without)


# Negation carriers: prefixes 불/비/미/무 (불가능, 비회원), 없다, 아니다, 않다/못하다, adverbs 안/못.
_NEGATIONS = {
    ("XPN", "불"),
    ("XPN", "비"),
    ("XPN", "미"),
    ("XPN", "무"),
    ("VA", "없"),
    ("VCN", "아니"),
    ("VX", "않"),
    ("VX", "못하"),
    ("MAG", "안"),
    ("MAG", "못"),
}


def negations(text: str) -> frozenset[str]:
    """Negation morphemes in ``text`` ('주차가 불가능합니다' -> {'불'}): a bag of content
    morphemes cannot tell '주차 가능' from '주차 불가능', this can."""
    return _negations(normalize(text))


# Cached: the dataset's truth check asks this of the same ground-truth page for every key fact on it (2,400 Kiwi
# runs of ~20 ms each, 44 of the synthesize stage's 52 s).
@functools.lru_cache(maxsize=4096)
def _negations(text: str) -> frozenset[str]:
    if not text:
        return frozenset()
    return frozenset(tok.form for tok in _kiwi().tokenize(text) if (tok.tag, tok.form) in _NEGATIONS)
