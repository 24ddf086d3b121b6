"""Text analysis for Japanese and English: NFKC, then character bigrams for CJK runs and words for
Latin runs.

Why bigrams: Japanese has no spaces, and a dictionary tokenizer (SudachiPy, fugashi) costs a model
download and milliseconds per document, while bigrams match compounds such as 排熱/熱電 in both
business and technical wording. Latin words keep English technical terms intact. (The issue on
ranking quality will choose by measurement; this is the honest first analyser.)
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

# Runs of one script: kanji, or katakana (with the prolonged sound mark), or hiragana.
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3005]+|[\u30a0-\u30ff]+|[\u3040-\u309f]+")
_LATIN_RUN = re.compile(r"[a-z0-9][a-z0-9\-\+\.]*[a-z0-9+]|[a-z0-9]")
_STOPWORDS = frozenset(
    (
        "a an and are as at be by for from has have in into is it its of on or our that the their this to "
        "was we were which with can will using use used based new"
    ).split()
)
# Hiragana runs are mostly grammar (を, している), not substance: they are not indexed.
_HIRAGANA = re.compile(r"^[\u3040-\u309f]+$")


def normalise(text: str) -> str:
    """NFKC folds full-width/half-width forms and compatibility characters; then lower case."""
    return unicodedata.normalize("NFKC", text).lower()


def terms(text: str) -> list[str]:
    """The index terms of ``text``, in order, with repeats."""
    text = normalise(text)
    out: list[str] = []
    for run in _CJK_RUN.findall(text):
        if _HIRAGANA.match(run):
            continue
        if len(run) == 1:
            out.append(run)
            continue
        out.extend(run[i : i + 2] for i in range(len(run) - 1))
    for word in _LATIN_RUN.findall(_CJK_RUN.sub(" ", text)):
        if word not in _STOPWORDS and (len(word) > 1 or word.isdigit()):
            out.append(word)
    return out


def term_counts(*weighted_texts: tuple[str, int]) -> Counter[str]:
    """Term frequencies of several texts, each counted ``weight`` times (titles weigh more)."""
    counts: Counter[str] = Counter()
    for text, weight in weighted_texts:
        for term in terms(text):
            counts[term] += weight
    return counts


def shared_phrases(text: str, shared: set[str]) -> list[str]:
    """Join consecutive shared bigrams of ``text`` into readable phrases (熱電+電変+変換 → 熱電変換).

    Latin terms come back as they are; a single shared character (変, 使) explains nothing to a
    coordinator and is left out. Longest phrases first.
    """
    text = normalise(text)
    phrases: list[str] = []
    for run in _CJK_RUN.findall(text):
        start: int | None = None
        for i in range(len(run)):
            inside = len(run) > 1 and i < len(run) - 1 and run[i : i + 2] in shared
            if inside and start is None:
                start = i
            if not inside and start is not None:
                phrases.append(run[start : i + 1])
                start = None
    phrases.extend(w for w in _LATIN_RUN.findall(_CJK_RUN.sub(" ", text)) if w in shared)
    unique = list(dict.fromkeys(phrases))
    return sorted(unique, key=len, reverse=True)
