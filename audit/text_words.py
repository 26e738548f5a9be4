"""Words of raw text and their substitution, shared by the word-level attacks (``audit.text_attacks``) and
the counterfactual identity-term swaps (``fairness.counterfactual_text``).

A word is a run of letters with an optional apostrophe suffix (``don't``, ``film's``); everything else
(spaces, punctuation, digits) is kept byte for byte when words are replaced, and a replacement takes the
case of the word it replaces.
"""

from __future__ import annotations

import re

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def word_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets of the words of ``text``, in order."""
    return [m.span() for m in WORD.finditer(text)]


def match_case(word: str, like: str) -> str:
    """``word`` in the case of ``like``: all capitals, a capital first letter, or as given."""
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def replace_span(text: str, span: tuple[int, int], word: str) -> str:
    """``text`` with the characters of ``span`` replaced by ``word`` in the case of the word there."""
    return text[: span[0]] + match_case(word, text[span[0] : span[1]]) + text[span[1] :]


def delete_span(text: str, span: tuple[int, int]) -> str:
    """``text`` without the word at ``span`` and one space next to it (no doubled spaces)."""
    start, end = span
    if end < len(text) and text[end] == " ":
        end += 1
    elif start > 0 and text[start - 1] == " ":
        start -= 1
    return text[:start] + text[end:]


def swapper(source: list[str], target: list[str]) -> tuple[re.Pattern[str], dict[str, str]]:
    """A whole-word, case-insensitive pattern of ``source`` words and their replacement map."""
    mapping: dict[str, str] = {}
    for s, t in zip(source, target):
        mapping.setdefault(s.lower(), t)  # the first alignment wins for repeated words
    words = sorted(mapping, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    return pattern, mapping


def swap(text: str, pattern: re.Pattern[str], mapping: dict[str, str]) -> str:
    """``text`` with every word ``pattern`` matches replaced by its ``mapping``, case kept."""
    return pattern.sub(lambda m: match_case(mapping[m.group(0).lower()], m.group(0)), text)


def changed_words(original: str, adversarial: str) -> tuple[int, int]:
    """Words of ``adversarial`` that differ from ``original`` at the same position, and the number of
    words of ``original`` (space-separated tokens; texts whose token counts differ count every
    position past the shorter one as changed)."""
    a, b = original.split(" "), adversarial.split(" ")
    diff = sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))
    return diff, len(a)


def mark_changes(original: str, adversarial: str) -> tuple[str, str]:
    """Both texts with the space-separated tokens that differ wrapped in ``⟦…⟧``."""
    a, b = original.split(" "), adversarial.split(" ")
    if len(a) != len(b):
        return original, adversarial
    ma = [f"⟦{x}⟧" if x != y else x for x, y in zip(a, b)]
    mb = [f"⟦{y}⟧" if x != y else y for x, y in zip(a, b)]
    return " ".join(ma), " ".join(mb)
