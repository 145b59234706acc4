"""Sentence splitting and chunking of text for synthesis.

Texts over the plan's character limit are sent in several requests; cutting
them at sentence boundaries keeps the prosody natural. The same boundary
rules drive :class:`SentenceBuffer`, which turns text arriving in pieces (an
LLM response) into whole sentences that can be synthesised one at a time.
"""

from __future__ import annotations

import re

_TERMINATORS = ".!?…"
# CJK full-width terminators end a sentence without a following space.
_CJK_TERMINATORS = "\u3002\uff01\uff1f"  # ideographic full stop, ! and ?
# Closing and opening quotes and brackets, typographic and CJK ones included.
_CLOSERS = "\"')]}\u201d\u2019\u00bb\u300d\u300f"
_OPENERS = "\"'([{\u201c\u2018\u00ab"
_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "mt", "ft",
        "vs", "etc", "e.g", "i.e", "cf", "al", "inc", "ltd", "co", "corp",
        "no", "nos", "vol", "fig", "approx", "dept", "est", "gen", "gov",
        "sen", "rep", "rev", "capt", "col", "lt", "sgt", "jan", "feb", "mar",
        "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
        "u.s", "u.k", "a.m", "p.m", "ph.d",
    }
)  # fmt: skip
_CLAUSE_BREAK = re.compile(r"(?<=[,;:])\s+")
# C0 and C1 control characters (newline kept: it ends a sentence), DEL and
# lone surrogates: a speech engine gets nothing from them, espeak-ng's C API
# stops at a NUL, and a surrogate cannot even be encoded to UTF-8.
_UNSPEAKABLE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Replace control characters and lone surrogates in ``text`` by spaces."""
    return _UNSPEAKABLE.sub(" ", text)


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into stripped sentences, dropping empty ones.

    A sentence ends at ``.``, ``!``, ``?``, ``…`` (and runs of them, with any
    closing quotes or brackets) followed by whitespace, or at a newline.
    Abbreviations ("Mr."), initials ("J. Smith"), decimals ("3.5") and a
    terminator followed by a lowercase word do not end a sentence.
    """
    sentences, _ = _scan(text, final=True)
    return sentences


def chunk_text(text: str, limit: int) -> list[str]:
    """Pack whole sentences into chunks of at most ``limit`` characters.

    A sentence longer than ``limit`` is cut at clause boundaries (after
    ``,``, ``;`` or ``:``), then between words, and a single word longer than
    the limit is cut into pieces: no text is ever dropped. Whitespace between
    pieces is normalised to single spaces.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1 character")
    chunks: list[str] = []
    short_sentences: list[str] = []
    for sentence in split_sentences(text):
        if len(sentence) <= limit:
            short_sentences.append(sentence)
            continue
        # An over-long sentence gets chunks of its own, so every chunk but
        # its pieces starts at a sentence boundary.
        chunks.extend(_pack(short_sentences, limit))
        short_sentences = []
        chunks.extend(_pack(_split_long_sentence(sentence, limit), limit))
    chunks.extend(_pack(short_sentences, limit))
    return chunks


class SentenceBuffer:
    """Collect streamed text and hand out each sentence once it is complete.

    A sentence is complete when the text after its terminator shows that it
    really ended (whitespace then a non-lowercase character, or a newline),
    so a sentence is released one token late; :meth:`finish` releases the rest.
    """

    def __init__(self) -> None:
        """Start with nothing buffered."""
        self._pending = ""

    def add(self, chunk: str) -> list[str]:
        """Add a piece of text; return the sentences it completed."""
        self._pending += chunk
        sentences, consumed = _scan(self._pending, final=False)
        self._pending = self._pending[consumed:]
        return sentences

    def finish(self) -> str | None:
        """Return whatever is left (the last sentence), or None if nothing."""
        rest = " ".join(self._pending.split())
        self._pending = ""
        return rest or None


def _scan(text: str, *, final: bool) -> tuple[list[str], int]:
    """Find complete sentences in ``text``.

    Returns the sentences and how many characters they consumed. When not
    ``final``, scanning stops where more text is needed to decide.
    """
    sentences: list[str] = []
    start = index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char == "\n":
            _append(sentences, text[start:index])
            start = index = index + 1
            continue
        if char in _CJK_TERMINATORS:
            end = _skip(text, index + 1, _CJK_TERMINATORS + _CLOSERS)
            _append(sentences, text[start:end])
            start = index = end
            continue
        if char in _TERMINATORS:
            run_end = _skip(text, index, _TERMINATORS)
            end = _skip(text, run_end, _CLOSERS)
            verdict = _ends_sentence(text, index, run_end, end, final=final)
            if verdict is None:
                return sentences, start
            if verdict:
                _append(sentences, text[start:end])
                start = end
            index = end
            continue
        index += 1
    if final:
        _append(sentences, text[start:])
        start = length
    return sentences, start


def _ends_sentence(
    text: str, run_start: int, run_end: int, end: int, *, final: bool
) -> bool | None:
    """Decide whether the terminator run at ``run_start`` ends a sentence.

    None means the text stops too early to tell (only when not ``final``).
    """
    length = len(text)
    if end == length:
        return True if final else None
    if not text[end].isspace():
        return False  # "3.5", "example.com", "?!" inside a word
    following = end
    while following < length and text[following].isspace():
        if text[following] == "\n":
            return True
        following += 1
    if following == length:
        return True if final else None
    if text[run_start:run_end] == "." and _is_abbreviation(text, run_start):
        return False
    # "e.g. this", "Wait... what": a lowercase word continues the sentence.
    return not text[following].islower()


def _is_abbreviation(text: str, period: int) -> bool:
    """Whether the word before the period at ``period`` is an abbreviation."""
    word_start = period
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:period].lstrip(_OPENERS).lower()
    if len(word) == 1 and word.isalpha():
        return True  # an initial, as in "J. Smith"
    return word in _ABBREVIATIONS


def _skip(text: str, index: int, characters: str) -> int:
    """Return the first index at or after ``index`` not in ``characters``."""
    while index < len(text) and text[index] in characters:
        index += 1
    return index


def _append(sentences: list[str], sentence: str) -> None:
    """Append a stripped sentence unless it is blank."""
    sentence = sentence.strip()
    if sentence:
        sentences.append(sentence)


def _split_long_sentence(sentence: str, limit: int) -> list[str]:
    """Cut an over-long sentence at clauses, then words, then characters."""
    pieces: list[str] = []
    for clause in _CLAUSE_BREAK.split(sentence):
        if len(clause) <= limit:
            pieces.append(clause)
            continue
        for word in clause.split():
            pieces.extend(word[i : i + limit] for i in range(0, len(word), limit))
    return pieces


def _pack(pieces: list[str], limit: int) -> list[str]:
    """Greedily join pieces with single spaces into chunks within ``limit``."""
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if not current:
            current = piece
        elif len(current) + 1 + len(piece) <= limit:
            current = f"{current} {piece}"
        else:
            chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks
