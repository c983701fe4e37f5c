"""Korean text normalisation for the parse stage: NFC, leader dots, list markers, OCR debris, line joins.

Split from ``stages.parse.layout`` (which re-exports these names); pure functions of strings.
"""

from __future__ import annotations

import re
import unicodedata

_LEADER = re.compile(r"(?:[…‥]+\s*)+[…‥.·]*|\.{3,}|·{3,}|ㆍ{3,}|_{3,}")
_BULLET = re.compile(r"^\s*([•·▪▫◦●○■□◆◇▶►▸‣∙⁃◎❍➤✔✓\-–—])[\s\u00a0]*")
_NUMBERED = re.compile(r"^\s*(?:\d{1,2}[.)]|\(\d{1,2}\)|[①-⑳])\s+")
_SPACES = re.compile(r"\s+")


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def normalise(text: str) -> str:
    """NFC, leader dots removed, whitespace collapsed, stripped."""
    text = nfc(text).replace("\u00ad", "")
    text = _LEADER.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


_ARAEA_DOT = re.compile(r"(?<=\S)\u318d(?=\S)")


def normalise_ocr(text: str) -> str:
    """``normalise`` plus OCR fixes: the araea 'ㆍ' Tesseract reads for a middle dot between words becomes '·'."""
    return _ARAEA_DOT.sub("\u00b7", normalise(text))


def list_marker(text: str) -> tuple[str | None, str]:
    """('bullet'|'number'|None, text without a bullet glyph; numbers are kept)."""
    m = _BULLET.match(text)
    if m and text[m.end() :].strip():
        return "bullet", text[m.end() :]
    if _NUMBERED.match(text):
        return "number", text
    return None, text


def is_hangul(ch: str) -> bool:
    return "\uac00" <= ch <= "\ud7a3" or "\u1100" <= ch <= "\u11ff" or "\u3130" <= ch <= "\u318f"


def is_content(ch: str) -> bool:
    """Hangul syllables, letters and digits; lone jamo (ㅁ, ㅣ: OCR noise from lines and dots) are not."""
    if "\uac00" <= ch <= "\ud7a3":
        return True
    return ch.isalnum() and not is_hangul(ch)


_OCR_JUNK = "|¦‖『』「」【】^~_=`\\<>@{}[]"


def strip_ocr_junk(word: str) -> str:
    """Strip OCR debris from a word's ends: stroke/frame glyphs (``|``, ``「``) and lone jamo (``ㅣ``, ``ㅁ``)."""

    def junk(ch: str) -> bool:
        return ch in _OCR_JUNK or ("\u3131" <= ch <= "\u318e" and ch != "\u318d")  # keep ㆍ (a Korean bullet)

    start, end = 0, len(word)
    while start < end and junk(word[start]):
        start += 1
    while end > start and junk(word[end - 1]):
        end -= 1
    return word[start:end]


def content_share(text: str) -> float:
    """Share of non-space characters that are content characters (``is_content``)."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(1 for c in chars if is_content(c)) / len(chars)


def join_lines(lines: list[str], wrapped: list[bool]) -> str:
    """Join the lines of one paragraph.

    ``wrapped[i]`` says line i was broken by the line width inside a word
    (see ``_wrapped``): then a Hangul-Hangul boundary is joined directly
    (Korean brochures break words anywhere); every other join is a space.
    """
    out = ""
    for i, line in enumerate(lines):
        if not line:
            continue
        if out:
            glue = " "
            if wrapped[i - 1] and is_hangul(out[-1]) and is_hangul(line[0]):
                glue = ""
            out += glue
        out += line
    return out
