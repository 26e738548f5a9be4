"""Words of raw text and their substitution, shared by the word-level attacks (``audit.text_attacks``) and
the counterfactual identity-term swaps (``fairness.counterfactual_text``).

A word is a run of letters with an optional apostrophe suffix (``don't``, ``film's``); everything else
(spaces, punctuation, digits) is kept byte for byte when words are replaced, and a replacement takes the
case of the word it replaces.
"""

from __future__ import annotations

import re

import numpy as np

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


def insert_words(text: str, words: str, slot: int) -> str:
    """``text`` with ``words`` inserted as whole words before its ``slot``-th word (0: first; a slot at or
    past the number of words appends). One space separates the inserted words from their neighbours;
    nothing else of ``text`` changes. The trigger insertion of the text backdoor checks."""
    spans = word_spans(text)
    if slot >= len(spans):
        return f"{text.rstrip()} {words}" if text.strip() else words
    at = spans[max(slot, 0)][0]
    return f"{text[:at]}{words} {text[at:]}"


def insert_at_random(texts: list[str], words: str, rng: np.random.Generator) -> list[str]:
    """Every text with ``words`` inserted before a seeded, uniformly drawn word slot (end included)."""
    return [insert_words(t, words, int(rng.integers(0, len(word_spans(t)) + 1))) for t in texts]
