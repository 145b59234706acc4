"""Word error rate with the normalisation a listener would accept as "the same words".

Case and punctuation are ignored, common contractions are expanded, and
numbers are compared as words: "21", "twenty-one" and "twenty one" all read
"twenty one", so a transcript that writes digits where the text spelt the
number out (or the other way round) is not counted wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
import re

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
    "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
    "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = (
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
    "ninety",
)  # fmt: skip
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1000, "thousand"))
_NUMBER_WORDS = frozenset(
    [*_ONES, *_TENS[2:], "hundred", *(name for _, name in _SCALES)]
)
_CONTRACTIONS = {
    "it's": "it is",
    "that's": "that is",
    "there's": "there is",
    "here's": "here is",
    "what's": "what is",
    "don't": "do not",
    "doesn't": "does not",
    "isn't": "is not",
    "aren't": "are not",
    "can't": "cannot",
    "won't": "will not",
    "you're": "you are",
    "we're": "we are",
    "they're": "they are",
    "i'm": "i am",
    "let's": "let us",
}
_THOUSANDS_SEPARATOR = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NOT_WORD = re.compile(r"[^a-z0-9']+")


def number_to_words(number: int) -> list[str]:
    """Spell a non-negative integer in English words, without "and"."""
    if number < 0:
        raise ValueError("only non-negative numbers are spelt")
    if number < 20:
        return [_ONES[number]]
    if number < 100:
        tens, ones = divmod(number, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return [_ONES[hundreds], "hundred"] + (number_to_words(rest) if rest else [])
    for scale, name in _SCALES:
        if number >= scale:
            high, rest = divmod(number, scale)
            words = [*number_to_words(high), name]
            return words + (number_to_words(rest) if rest else [])
    raise AssertionError("unreachable")  # pragma: no cover


def normalise(text: str) -> list[str]:
    """The words of ``text`` in the form they are compared in."""
    text = text.lower().replace("\u2019", "'")
    text = _THOUSANDS_SEPARATOR.sub("", text)
    text = text.replace("%", " percent ").replace("\u00b0", " degrees ")
    words: list[str] = []
    for raw_token in _NOT_WORD.split(text):
        token = raw_token.strip("'")
        if not token:
            continue
        expanded = _CONTRACTIONS.get(token, token).replace("'", "")
        for word in expanded.split():
            if word.isdigit():
                words.extend(number_to_words(int(word)))
            else:
                words.append(word)
    return _tidy_spoken_numbers(words)


def _tidy_spoken_numbers(words: list[str]) -> list[str]:
    """Make spelt-out numbers match ``number_to_words``.

    "a hundred" becomes "one hundred", and "and" inside a number ("one
    hundred and eighty") is dropped.
    """
    tidy: list[str] = []
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        if word == "a" and following in {"hundred", "thousand", "million"}:
            tidy.append("one")
        elif (
            word == "and"
            and tidy
            and tidy[-1] in _NUMBER_WORDS
            and following in _NUMBER_WORDS
        ):
            continue
        else:
            tidy.append(word)
    return tidy


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance: substitutions + deletions + insertions."""
    previous = list(range(len(hypothesis) + 1))
    for row, ref_word in enumerate(reference, start=1):
        current = [row]
        for column, hyp_word in enumerate(hypothesis, start=1):
            current.append(
                min(
                    previous[column] + 1,  # the reference word was dropped
                    current[column - 1] + 1,  # an extra word was heard
                    previous[column - 1] + (ref_word != hyp_word),
                )
            )
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class WordErrors:
    """Word errors summed over several sentences."""

    errors: int
    reference_words: int

    @property
    def rate_percent(self) -> float:
        """Word error rate in percent (0 for no reference words)."""
        if self.reference_words == 0:
            return 0.0
        return 100.0 * self.errors / self.reference_words


def word_errors(pairs: list[tuple[str, str]]) -> WordErrors:
    """Sum the errors of (reference, transcript) pairs after normalising both."""
    errors = 0
    reference_words = 0
    for reference, hypothesis in pairs:
        ref_words = normalise(reference)
        errors += edit_distance(ref_words, normalise(hypothesis))
        reference_words += len(ref_words)
    return WordErrors(errors=errors, reference_words=reference_words)
