"""Text analysis for Japanese and English: the index terms of a text, with where each comes from.

Normalisation: NFKC (full-width/half-width forms, compatibility characters), lower case. Then per
run of one script:

- kanji: character bigrams (a run of one kanji is one term). Japanese has no spaces and bigrams
  match compounds in both business and technical wording (排熱 in 排熱回収 and 工場の排熱);
- katakana: whole words, never bigrams: katakana words are loanwords, and bigrams inside them make
  false matches (ジュ+ュー shared by ジュース and モジュール). A run is also split into the known
  words of the lexicon (ガスセンサー → ガス, センサー), and folded: a trailing long vowel mark is
  dropped (モーター = モータ, JIS Z 8301 spelling) and ヴ is read as ブ;
- hiragana: grammar mostly (を, している), not indexed; hiragana spellings of lexicon words are
  (かび = カビ);
- Latin: words, light-stemmed (batteries = battery, -isation = -ization), stopwords and bare
  numbers dropped.

On top, every form of a lexicon concept (services/matcher/lexicon.py) adds the concept term
``~name``: センサー, 検出器 and "sensor" all add ``~sensor``, which is how a Japanese need meets an
English seed without translated fields.

Why not a morphological analyser, measured on bench/quality (``bench/matcher_quality.py
--ablation``, 59 needs) and on this machine: fugashi + unidic-lite words (nouns, verbs, adjectives,
suffixes) in place of the kanji bigrams reach nDCG@10 0.886 against 0.876 for bigrams, everything
else equal: +0.01, about one need's worth and within the set's noise (about 0.02-0.03). Tagging alone
takes 2.7-3.7 ms per 1,000 characters against 0.35-0.65 ms for this whole analysis, which would
spend most of the 5 ms budget for ranking one need at 100k seeds, and unidic-lite is a 50 MB
dictionary. unidic's short units also split technical compounds (熱 / 電 / 変換) that bigrams keep
overlapping with business wording (排熱 ↔ 排熱回収). So: bigrams, with katakana words and the lexicon.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain, repeat
from operator import getitem, itemgetter
from typing import TYPE_CHECKING

import numpy as np

from . import kernels
from .lexicon import TECHNICAL_TERMS

if TYPE_CHECKING:
    import numpy.typing as npt

CONCEPT_PREFIX = "~"
PHRASE_OCCURRENCES = 3  # an explanation quotes a term from its first few places in the text
_FIRST_OCCURRENCES = slice(PHRASE_OCCURRENCES)
_START = itemgetter(1)
_END = itemgetter(2)
_BOUNDS = itemgetter(1, 2)

# Runs of one script, found in one pass each. Katakana excludes the middle dot ・ (a word separator)
# and includes ー. Hiragana runs are not searched: they are grammar, and the lexicon finds its forms.
_KANJI_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3005\u3006]+")
_KATAKANA_RUN = re.compile(r"[\u30a1-\u30fa\u30fc]+")
_LATIN_RUN = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    (
        "a an and are as at be by for from has have in into is it its of on or our that the their this to "
        "was we were which with can will using use used based new not no than then there these those they "
        "so such also may more most other over per very when where while who how what all any each both"
    ).split()
)
_KATAKANA_FOLDS = (
    ("ヴァ", "バ"), ("ヴィ", "ビ"), ("ヴェ", "ベ"), ("ヴォ", "ボ"), ("ヴ", "ブ"), ("ヵ", "カ"), ("ヶ", "ケ")
)
_KATAKANA_TO_HIRAGANA = {code + 0x60: code for code in range(0x3041, 0x3097)}
# British and American spellings meet (colour/color); plural and -ise/-ize folds are in _stem.
_SPELLINGS = {
    "colour": "color", "fibre": "fiber", "mould": "mold", "moulding": "molding", "moulded": "molded",
    "odour": "odor", "aluminium": "aluminum", "centre": "center", "metre": "meter", "litre": "liter",
    "sulphur": "sulfur", "labour": "labor", "grey": "gray", "tyre": "tire", "behaviour": "behavior",
}


def normalise(text: str) -> str:
    """NFKC folds full-width/half-width forms and compatibility characters; then lower case.

    Lower-casing keeps every character's position (a character whose lower case is longer stays as
    it is), so spans found in the normalised text point into ``unicodedata.normalize('NFKC', text)``.
    """
    folded = unicodedata.normalize("NFKC", text)
    lowered = folded.lower()
    if len(lowered) == len(folded):
        return lowered
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in folded)


def fold_katakana(word: str) -> str:
    """One spelling per katakana word: ヴ read as ブ, small ヵ/ヶ as カ/ケ, no trailing long vowel mark."""
    for variant, plain in _KATAKANA_FOLDS:
        if variant in word:
            word = word.replace(variant, plain)
    return word.rstrip("ー") or word


_STEMS: dict[str, str] = {}


def _stem(word: str) -> str:
    stem = _STEMS.get(word)
    if stem is None:
        if len(_STEMS) > 200_000:
            _STEMS.clear()
        stem = _STEMS[word] = _stem_of(word)
    return stem


def _stem_of(word: str) -> str:
    word = _SPELLINGS.get(word, word)
    if word.endswith("isation"):
        return word[:-7] + "ization"
    if word.endswith(("ising", "ised")) and len(word) > 6:
        return word[:-4] + ("izing" if word.endswith("ising") else "ized")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


# An index term and the span (start, end) of the normalised text it comes from. A plain tuple:
# analysis makes one per term, and a tuple is the cheapest object to make.
Token = tuple[str, int, int]


# ---- the lexicon, compiled once -------------------------------------------------------------------


@dataclass(frozen=True)
class Lexicon:
    katakana_words: dict[str, str]  # folded katakana word -> concept
    substrings: dict[str, list[tuple[str, str]]]  # first two characters -> (form, concept), longest first
    first_characters: re.Pattern[str]  # finds where a substring form may start (a first and a second character)
    whole_runs: dict[str, str]  # a run that must be exactly this text -> concept
    phrases: dict[str, list[tuple[tuple[str, ...], str]]]  # first word -> (words, concept), longest first
    longest_katakana: int
    katakana_runs: dict[str, tuple[Token, ...]] = field(default_factory=dict, compare=False)  # memo per run


def _is_katakana(text: str) -> bool:
    return all("\u30a1" <= c <= "\u30fa" or c == "ー" for c in text)


def _is_latin(text: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in " -.") for c in text)


def _latin_words(text: str) -> list[str]:
    return [_stem(word) for word in re.findall(r"[a-z0-9]+", text)]


def compile_lexicon(*tables: str) -> Lexicon:
    katakana: dict[str, str] = {}
    substrings: dict[str, list[tuple[str, str]]] = defaultdict(list)
    whole_runs: dict[str, str] = {}
    phrases: dict[str, list[tuple[tuple[str, ...], str]]] = defaultdict(list)
    for table in tables:
        for line in table.strip().splitlines():
            concept, _, forms = line.partition(":")
            japanese, _, english = forms.partition("|")
            concept = CONCEPT_PREFIX + concept.strip()
            for written in [*japanese.split(","), *english.split(",")]:
                form = normalise(written.strip())
                if not form:
                    continue
                if form.startswith("=") or (len(form) == 1 and not _is_latin(form)):
                    whole_runs[form.lstrip("=")] = concept
                elif _is_katakana(form):
                    katakana.setdefault(fold_katakana(form), concept)
                    hiragana = form.translate(_KATAKANA_TO_HIRAGANA)
                    if len(hiragana) >= 3 and "ー" not in hiragana:  # かび is listed by hand; short ones clash
                        substrings[hiragana[:2]].append((hiragana, concept))
                elif _is_latin(form):
                    words = tuple(_latin_words(form))
                    if words:
                        phrases[words[0]].append((words, concept))
                else:
                    substrings[form[:2]].append((form, concept))
    for candidates in substrings.values():
        candidates.sort(key=lambda item: -len(item[0]))
    for entries in phrases.values():
        entries.sort(key=lambda item: -len(item[0]))
    first = "".join(sorted({prefix[0] for prefix in substrings}))
    second = "".join(sorted({prefix[1] for prefix in substrings if len(prefix) > 1}))
    # A form starts with one of the first characters followed by one of the second ones (far fewer
    # places to look up than the first character alone: で, た, い start forms, and most of the glue).
    follows = f"[{re.escape(second)}]|\\Z" if second else "\\Z"
    starts = f"[{re.escape(first)}](?={follows})" if first else "(?!)"
    return Lexicon(
        katakana_words=katakana, substrings=dict(substrings), first_characters=re.compile(starts),
        whole_runs=whole_runs, phrases=dict(phrases),
        longest_katakana=max((len(w) for w in katakana), default=0),
    )


LEXICON = compile_lexicon(TECHNICAL_TERMS)


# ---- analysis -------------------------------------------------------------------------------------


def _split_katakana(run: str, lexicon: Lexicon) -> list[tuple[int, int, str]]:
    """Known words inside a katakana run as (start, end, folded word), covering as much as possible.

    Dynamic programming over the run: the split that covers the most characters with known words
    (a known word may be followed by an optional ー), fewer words on a tie.
    """
    n = len(run)
    # best[i] = (covered characters, -words, words) for run[i:]
    best: list[tuple[int, int, list[tuple[int, int, str]]]] = [(0, 0, [])] * (n + 1)
    for i in range(n - 1, -1, -1):
        choice = (best[i + 1][0], best[i + 1][1], best[i + 1][2])
        for length in range(min(lexicon.longest_katakana, n - i), 1, -1):
            word = run[i : i + length]
            if word not in lexicon.katakana_words:
                continue
            end = i + length + (1 if i + length < n and run[i + length] == "ー" else 0)
            covered, words, found = best[end]
            candidate = (covered + end - i, words - 1, [(i, end, word), *found])
            if candidate[:2] > choice[:2]:
                choice = candidate
        best[i] = choice
    return best[0][2]


def tokens(text: str, lexicon: Lexicon | None = None) -> list[Token]:
    """The index terms of ``text``, each as (term, start, end) in the normalised text; grouped by script."""
    lexicon = lexicon or LEXICON
    text = normalise(text)
    out: list[Token] = []
    append = out.append
    whole_runs = lexicon.whole_runs
    # Most kanji runs are 2 characters (one bigram): the cost is per run, and re.split with
    # accumulated offsets instead of the match objects measured no faster.
    for match in _KANJI_RUN.finditer(text):
        run = match.group()
        start = match.start()
        length = len(run)
        if length == 2:  # the commonest run (one word), without a loop
            append((run, start, start + 2))
        elif length == 1:
            append((run, start, start + 1))
        else:  # faster than zip(map(add, run, run[1:]), range, range) at every run length measured, 3 to 20
            out.extend([(run[i : i + 2], start + i, start + i + 2) for i in range(length - 1)])
        if run in whole_runs:
            append((whole_runs[run], start, start + length))
    memo = lexicon.katakana_runs
    for match in _KATAKANA_RUN.finditer(text):
        run = match.group()
        relative = memo.get(run)
        if relative is None:
            if len(memo) > 100_000:
                memo.clear()
            relative = memo[run] = _katakana_terms(run, lexicon)
        start = match.start()
        if len(relative) == 1:  # the commonest run (one word), without a loop
            term, a, b = relative[0]
            append((term, start + a, start + b))
        else:
            out.extend([(term, start + a, start + b) for term, a, b in relative])
    stems = _STEMS
    latin = [
        (stems.get(word) or _stem(word), m.start(), m.end())
        for m in _LATIN_RUN.finditer(text) if (word := m.group())
    ]
    if latin:
        _add_latin(latin, lexicon, out)
    _add_substring_concepts(text, lexicon, out)
    return out


def _katakana_terms(run: str, lexicon: Lexicon) -> tuple[Token, ...]:
    """The terms of one katakana run, spans relative to it: the folded word, its known parts, concepts."""
    out: list[Token] = []
    whole = fold_katakana(run)
    if len(whole) > 1:
        out.append((whole, 0, len(run)))
    if whole in lexicon.katakana_words:
        parts = [(0, len(run), whole)]
    else:
        parts = _split_katakana(run, lexicon) if len(run) > 2 else []
    for start, end, word in parts:
        if end - start < len(run):
            out.append((word, start, end))
        out.append((lexicon.katakana_words[word], start, end))
    return tuple(out)


def _add_latin(words: list[Token], lexicon: Lexicon, out: list[Token]) -> None:
    out.extend(w for w in words if w[0] not in _STOPWORDS and len(w[0]) > 1 and not w[0].isdigit())
    phrases = lexicon.phrases
    i = 0
    while i < len(words):
        for phrase, concept in phrases.get(words[i][0], ()):
            if len(phrase) == 1 or tuple(w[0] for w in words[i : i + len(phrase)]) == phrase:
                out.append((concept, words[i][1], words[i + len(phrase) - 1][2]))
                i += len(phrase) - 1
                break
        i += 1


def _add_substring_concepts(text: str, lexicon: Lexicon, out: list[Token]) -> None:
    """Concept forms with kanji or hiragana, found anywhere (the longest form wins where forms overlap)."""
    covered_until: dict[str, int] = {}
    substrings = lexicon.substrings
    for match in lexicon.first_characters.finditer(text):
        i = match.start()
        forms = substrings.get(text[i : i + 2])
        if forms is None:
            continue
        for form, concept in forms:
            if text.startswith(form, i):
                if covered_until.get(concept, -1) <= i:
                    out.append((concept, i, i + len(form)))
                covered_until[concept] = max(covered_until.get(concept, -1), i + len(form))
                break


def terms(text: str) -> list[str]:
    """The index terms of ``text``, in order, with repeats."""
    return [token[0] for token in tokens(text)]


def weighted_counts_of_parts(
    parts: list[tuple[str, float]], concept_weight: float
) -> tuple[str, Counter[str]]:
    """The parts joined by newlines (the text explanations quote), and its weighted term counts:
    an occurrence counts its part's weight, a concept ``concept_weight`` of that. One analysis."""
    text = "\n".join(part for part, _ in parts)
    # The weight of the part each character of the normalised text belongs to (a part's newline
    # included): one list index per occurrence instead of a search among the parts' starts.
    weight_at: list[float] = []
    for part, weight in parts:
        weight_at += [weight] * (len(unicodedata.normalize("NFKC", part)) + 1)
    # Measured no faster (about 95 terms, 175 occurrences a need): summing the occurrences' weights
    # per term with np.bincount (it adds in order from 0.0, so the same floats) costs in numpy calls
    # what the loop costs.
    counts: Counter[str] = Counter()
    scaled = concept_weight != 1  # x × 1 is x: concepts are told apart only when they weigh otherwise
    for term, occurrences in term_spans(text)[1].items():
        if len(occurrences) == 1:  # most terms, without a loop
            total = 0.0 + weight_at[occurrences[0][1]]
        else:
            total = 0.0
            for _, start, _ in occurrences:
                total += weight_at[start]
        if scaled and term[0] == CONCEPT_PREFIX:
            total *= concept_weight
        counts[term] = total  # type: ignore[assignment]
    return text, counts


# ---- explanations ---------------------------------------------------------------------------------


# Fewer kept texts (32) ran faster alone (less memory held by the kept tokens), not per need at
# 100k seeds with the heap frozen as the service has it: no gain there.
@lru_cache(maxsize=512)
def term_spans(text: str) -> tuple[str, dict[str, list[Token]]]:
    """The NFKC text (case kept) and each term's tokens (term, start, end), in the text's order (the
    last few texts are kept: a profile is analysed when it arrives and explained right after).

    The tokens themselves are kept, not a (start, end) pair made per token: no object is made per
    occurrence, and explanations sort them by start as they are."""
    spans: dict[str, list[Token]] = {}
    known = spans.get
    for token in tokens(text):
        occurrences = known(token[0])
        if occurrences is None:
            spans[token[0]] = [token]
        else:
            occurrences.append(token)
    return unicodedata.normalize("NFKC", text), spans


def matched_phrases(text: str, shared: Iterable[str], rank: dict[str, float] | None = None) -> list[str]:
    """The parts of ``text`` that produced ``shared`` terms, joined into readable phrases.

    Consecutive shared spans read as one phrase (熱電+電変+変換 → 熱電変換; リチウムイオン+電池 →
    リチウムイオン電池; heat + pump → heat pump), in the text's own script and case after NFKC. A
    single kanji explains nothing to a coordinator and is left out. Ordered by ``rank`` (the
    heaviest term of a phrase) when given, else longest first.
    """
    display, where = term_spans(text)
    weights = rank or {}
    # Each shared term's first tokens, gathered and sorted by start without a Python-level loop: a
    # span only needs its start sorted (spans of one start always merge, whatever their order).
    spans = sorted(
        chain.from_iterable(map(getitem, map(where.get, shared, repeat(())), repeat(_FIRST_OCCURRENCES))),
        key=_START,
    )
    if not spans:
        return []
    phrases: dict[str, float] = {}
    known = phrases.get
    weight_of = weights.get
    # One pass, no function call per span but the slicing and the weight (it runs for every pair explained).
    term, current_start, current_end = spans[0]
    weight = weight_of(term, 0.0)
    for term, start, end in spans:
        if start <= current_end or (start == current_end + 1 and display[current_end] in " -"):
            if end > current_end:
                current_end = end
            if (term_weight := weight_of(term, 0.0)) > weight:
                weight = term_weight
            continue
        phrase = display[current_start:current_end].strip(" -")
        if len(phrase) > 1 and weight >= known(phrase, 0.0):
            phrases[phrase] = weight
        current_start, current_end, weight = start, end, weight_of(term, 0.0)
    phrase = display[current_start:current_end].strip(" -")  # the last one
    if len(phrase) > 1 and weight >= known(phrase, 0.0):
        phrases[phrase] = weight
    longest_first = sorted(phrases, key=len, reverse=True)
    if rank is None:
        return longest_first
    # Heaviest first, then longest, then in the text's order: two stable sorts keyed by C functions
    # instead of a Python key making a tuple per phrase (the weights are finite: products of tf and idf).
    return sorted(longest_first, key=phrases.__getitem__, reverse=True)


def matched_phrases_of_rows(
    text: str, term_ids: npt.NDArray[np.int32], counts: npt.NDArray[np.int64], weights: npt.NDArray[np.float64],
    terms: list[str], limit: int,
) -> list[list[str]]:
    """``matched_phrases(text, shared, rank=shared)[:limit]`` for each row of shared terms at once
    (one text explained with several profiles): row ``r`` shares the terms ``terms[i]`` of its
    first ``counts[r]`` ids of ``term_ids[r]``, of ``weights[r]`` (``shared`` in the row's order).

    The text's spans are gathered once for the rows' terms, and one compiled pass
    (kernels.phrase_spans, around kernels.phrases' loop) merges, de-duplicates and orders each
    row's phrases as matched_phrases does, as (start, end) pairs: only the phrases kept are sliced
    out of the text.
    """
    display, where = term_spans(text)
    counts = np.asarray(counts, dtype=np.int64)  # (no copy: as _shared_term_rows gives them)
    ids, local = kernels.row_terms(term_ids, counts)
    # Each term's first tokens, as matched_phrases gathers them (a term the text lacks has none).
    firsts = [where.get(term, ())[:PHRASE_OCCURRENCES] for term in map(terms.__getitem__, ids.tolist())]
    lengths = np.fromiter(map(len, firsts), dtype=np.int64, count=len(firsts))
    spans = list(chain.from_iterable(firsts))
    bounds = np.fromiter(chain.from_iterable(map(_BOUNDS, spans)), dtype=np.int64, count=2 * len(spans))
    # The code points (only compared with each other and with " " and "-"): utf-32, lone surrogates kept.
    code_points = np.frombuffer(display.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    found, kept = kernels.phrase_spans(code_points, bounds, lengths, local, counts,
                                       np.asarray(weights, dtype=np.float64), limit)
    flat = kept.tolist()
    phrases = list(map(display.__getitem__, map(slice, flat[0::2], flat[1::2])))
    out: list[list[str]] = []
    first = 0
    for count in found.tolist():
        out.append(phrases[first : first + count])
        first += count
    return out
