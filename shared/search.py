"""Free-text search terms for the registries, the same on SQLite and PostgreSQL.

A profile's text (title, summary, their translations, description, keywords) is cut into terms
stored one row each in the service's term table, with an index on the term; a query matches the
profiles that hold every term of the query. Text is NFKC-normalised (full-width letters and digits,
half-width katakana fold) and lower-cased, then:

- Japanese, which has no spaces, is cut into runs of one script (kanji, katakana, hiragana); each
  run gives its character bigrams and its single characters, so "熱電変換" finds "熱電変換材料" (its
  bigrams 熱電, 電変, 変換 are all there) and a one-character query such as "鉄" finds "鉄鋼";
- other text is cut into words (letters and digits), so "Thermoelectric" finds "thermoelectric".

A query is cut the same way, except that a run of two or more characters gives only its bigrams,
and hiragana and English stop words are left out of a query that has other terms (so "排熱の利用"
and "waste heat for power" do not demand the particle or the stop word).

Facet terms (``field:energy``, ``form:license``) share the table: the list filters on technology
fields and collaboration forms use them. No text term contains ':' so the two never meet.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

MAX_TERM_LENGTH = 64
MAX_QUERY_LENGTH = 200

# One run per script: kanji (with 々), katakana (with ー), hiragana; and runs of other letters/digits.
_KANJI = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3005"
_KANA = "\u3040-\u30ff"
_RUNS = re.compile(
    rf"(?P<kanji>[{_KANJI}]+)"
    r"|(?P<katakana>[\u30a0-\u30ff]+)"
    r"|(?P<hiragana>[\u3040-\u309f]+)"
    rf"|(?P<word>[^\W_{_KANJI}{_KANA}]+)"
)
_STOP_WORDS = frozenset(
    "a an and are as at be by for from in into is it of on or that the this to with".split()
)


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def document_terms(texts: Iterable[str | None]) -> set[str]:
    """Every term of a profile's texts: CJK bigrams and single characters, words."""
    terms: set[str] = set()
    for text in texts:
        if not text:
            continue
        for match in _RUNS.finditer(normalise(text)):
            run = match.group()
            if match.lastgroup == "word":
                terms.add(run[:MAX_TERM_LENGTH])
                continue
            terms.update(run)
            terms.update(run[i : i + 2] for i in range(len(run) - 1))
    return terms


def query_terms(query: str) -> set[str]:
    """The terms a profile must all hold to match ``query`` (empty: the query has no searchable text)."""
    essential: set[str] = set()
    optional: set[str] = set()  # hiragana and stop words: kept only if nothing else is asked
    for match in _RUNS.finditer(normalise(query)):
        run = match.group()
        if match.lastgroup == "word":
            (optional if run in _STOP_WORDS else essential).add(run[:MAX_TERM_LENGTH])
            continue
        grams = {run} if len(run) == 1 else {run[i : i + 2] for i in range(len(run) - 1)}
        (optional if match.lastgroup == "hiragana" else essential).update(grams)
    return essential or optional


def facet_term(facet: str, value: str) -> str:
    """A filterable attribute as a term, e.g. ``field:energy``."""
    return f"{facet}:{value}"
