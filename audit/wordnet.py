"""A small reader of the WordNet 3.0 database files, for offline synonym candidates.

The files come from the operating system (Debian/Ubuntu: ``apt-get install wordnet-base``, which puts
them in ``/usr/share/wordnet``); nothing is downloaded and NLTK is not needed. The reader follows the
format of ``wndb(5WN)``: ``index.<pos>`` maps a lemma to its synset offsets, sorted by sense frequency;
``data.<pos>`` holds each synset at its byte offset, with its words. Only what a synonym search needs is
read: lemma → synsets → lemmas of one part of speech.

References
----------
Miller, G. A. "WordNet: a lexical database for English", Communications of the ACM 38(11), 1995.
Princeton University, ``wndb(5WN)``: WordNet database file formats (WordNet 3.0).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Literal

Pos = Literal["n", "v", "a", "r"]

#: Where Debian's ``wordnet-base`` installs the database; ``WNSEARCHDIR`` (WordNet's own variable) overrides it.
DEFAULT_DIR = Path("/usr/share/wordnet")
_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # syntactic markers on adjectives in data.adj: "galore(ip)"


def wordnet_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The folder the database is read from: ``path``, else ``$WNSEARCHDIR``, else ``/usr/share/wordnet``."""
    return Path(path or os.environ.get("WNSEARCHDIR") or DEFAULT_DIR)


def missing_reason(path: str | os.PathLike[str] | None = None) -> str | None:
    """``None`` when a complete WordNet database is at :func:`wordnet_dir`, else why not and how to install it."""
    folder = wordnet_dir(path)
    absent = [f"{kind}.{name}" for name in _FILES.values() for kind in ("index", "data")
              if not (folder / f"{kind}.{name}").is_file()]
    if not absent:
        return None
    return (f"no WordNet database in {folder} (missing {', '.join(absent[:3])}{'…' if len(absent) > 3 else ''}); "
            "install it with: apt-get install wordnet-base (or point WNSEARCHDIR at a WordNet 3.0 'dict' folder)")


class WordNet:
    """Synonyms of one part of speech from a WordNet 3.0 database folder.

    Parameters
    ----------
    path : path-like, optional
        The folder holding ``index.noun`` … ``data.adv`` (see :func:`wordnet_dir`).

    Raises
    ------
    FileNotFoundError
        When the folder lacks one of the eight files (the message says how to install them).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        reason = missing_reason(path)
        if reason is not None:
            raise FileNotFoundError(reason)
        self.path = wordnet_dir(path)
        self._index: dict[str, dict[str, tuple[int, list[int]]]] = {}
        self._synsets: dict[tuple[str, int], list[str]] = {}

    def _load_index(self, pos: Pos) -> dict[str, tuple[int, list[int]]]:
        if pos not in self._index:
            table: dict[str, tuple[int, list[int]]] = {}
            with open(self.path / f"index.{_FILES[pos]}", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("  "):  # the licence header
                        continue
                    # lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt synset_offset...
                    parts = line.split()
                    n_synsets, n_ptrs = int(parts[2]), int(parts[3])
                    tagged = int(parts[5 + n_ptrs])
                    offsets = [int(o) for o in parts[6 + n_ptrs : 6 + n_ptrs + n_synsets]]
                    table[parts[0]] = (tagged, offsets)
            self._index[pos] = table
        return self._index[pos]

    def _words(self, pos: Pos, offset: int) -> list[str]:
        key = (pos, offset)
        if key not in self._synsets:
            with open(self.path / f"data.{_FILES[pos]}", "rb") as fh:
                fh.seek(offset)
                parts = fh.readline().decode("utf-8").split()
            # synset_offset lex_filenum ss_type w_cnt(hex) word lex_id [word lex_id...] ...
            n_words = int(parts[3], 16)
            words = [_ADJ_MARKER.sub("", parts[4 + 2 * k]).lower() for k in range(n_words)]
            self._synsets[key] = words
        return self._synsets[key]

    def lemma_pos(self, word: str) -> list[Pos]:
        """The parts of speech ``word`` is a lemma of, most frequent first (by WordNet's tagged sense
        counts from SemCor; ties in the order noun, verb, adjective, adverb)."""
        key = word.lower()
        found = [(self._load_index(p)[key][0], -k, p) for k, p in enumerate(_FILES)  # type: ignore[arg-type]
                 if key in self._load_index(p)]  # type: ignore[arg-type]
        return [p for _, _, p in sorted(found, reverse=True)]

    def synonyms(self, word: str, pos: Pos) -> list[str]:
        """Single-word lemmas sharing a synset with ``word`` as part of speech ``pos``, in the order of
        ``word``'s senses (most frequent first), without ``word`` itself and without repeats.
        Multi-word lemmas (``"in_force"``) are left out: they change the number of words."""
        key = word.lower()
        entry = self._load_index(pos).get(key)
        if entry is None:
            return []
        out: dict[str, None] = {}
        for offset in entry[1]:
            for lemma in self._words(pos, offset):
                if lemma != key and "_" not in lemma and "-" not in lemma and lemma.isalpha():
                    out[lemma] = None
        return list(out)


def shared_wordnet(path: str | os.PathLike[str] | None = None) -> WordNet:
    """The reader of the database at :func:`wordnet_dir`, one per folder and process: its parsed index
    (about 40 MB; a second of CPU to read) is shared by every audit the process runs (``compare``'s
    variants, repeated audits). A folder that cannot be read raises each time; nothing is cached then."""
    return _reader(str(wordnet_dir(path).resolve()))


@functools.lru_cache(maxsize=2)
def _reader(folder: str) -> WordNet:
    return WordNet(folder)
