"""Matching quality on the labelled set: nDCG@10 and recall@20 of the matcher and of a TF-IDF baseline.

    .venv/bin/python bench/matcher_quality.py                 # bench/quality/: a table per system and tag
    .venv/bin/python bench/matcher_quality.py --json          # the same figures, machine-readable
    .venv/bin/python bench/matcher_quality.py --per-need      # each need's figures and top seeds
    .venv/bin/python bench/matcher_quality.py --data DIR      # another labelled set of the same shape
    .venv/bin/python bench/matcher_quality.py --ablation      # the matcher with one part at a time left out

For every need, each system ranks the open seeds of the pool (status ``open``; an expired but open
seed stays in the pool, the ranker has to leave it out). Systems:

- ``matcher``: ``services.matcher.domain.ProfileIndex`` as it is, fed every open seed and every need
  as their events carry them (every schema field: summary, translations, classification codes,
  TRL, timeline, expiry).
- ``tfidf``: the baseline the issue asks for, character-bigram TF-IDF cosine over title + summary +
  description and nothing else (NFKC, lower case, bigrams inside runs of letters and digits).

Both rank with no score threshold; a seed sharing nothing with the need is not ranked at all.
Timings are wall-clock on this machine, in one process, for information only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import statistics
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol
from unittest import mock

import numpy as np
from quality_metrics import RECALL_MIN_GRADE, judged_useless_at, mean, ndcg_at, recall_at

from services.matcher import analysis, domain, scoring
from services.matcher import index as index_module
from services.matcher.domain import ProfileIndex
from shared.events import NeedProfile, SeedProfile
from shared.reference import (
    PREFECTURES,
    TECHNOLOGY_FIELDS,
    CollaborationForm,
    CompanySize,
    Confidentiality,
    Language,
    OwnerType,
    ProfileStatus,
)

DEFAULT_DATA = Path(__file__).resolve().parent / "quality"
NDCG_K = 10
RECALL_K = 20
RANK_DEPTH = max(NDCG_K, RECALL_K)
MAX_GRADE = 3
GRADED_PER_NEED = range(1, 6)  # each need has 1..5 seeds of grade >= 1

# The hard cases a need can exercise; bench/quality/README.md tags every need with some of these.
TAGS: dict[str, str] = {
    "vocabulary_mismatch": "business words in the need, technical words in the seed",
    "cross_language_translated": "need and best seeds in different languages, one side carries translated fields",
    "cross_language_untranslated": "need and best seeds in different languages, no translation of the seed",
    "surface_trap": "a seed shares many words but is useless (form, TRL, status, expiry, other domain)",
    "katakana_english": "katakana / English technical terms and katakana spelling variants",
    "ipc_only": "the best seed is linked to the need only through classification codes",
    "region_sme": "an SME for which a same-prefecture or same-block seed goes first",
    "plain": "no hard case: a control",
}

# Field names of the profile schema agreed for issue 3, in the order the records are written.
SEED_FIELDS = (
    "external_id", "language", "title", "summary", "title_translated", "summary_translated", "description",
    "keywords", "fields", "classification_codes", "owner_org", "owner_type", "prefecture", "ip_status",
    "patent_numbers", "offers", "trl", "contact_name", "contact_email", "status", "expires_on",
)
NEED_FIELDS = (
    "external_id", "language", "title", "summary", "title_translated", "summary_translated", "description",
    "keywords", "fields", "classification_codes", "company_name", "company_size", "industry", "prefecture",
    "wanted_forms", "budget_min_jpy", "budget_max_jpy", "timeline_months", "confidentiality",
    "redacted_summary", "status", "expires_on",
)
# Not in shared.reference until issue 3 adds the IP status to the profiles.
IP_STATUSES = frozenset({"granted_patent", "patent_application", "know_how", "software", "none"})
JSIC_MAJOR_GROUPS = frozenset("ABCDEFGHIJKLMNOPQRST")

Record = dict[str, Any]


class InvalidSet(ValueError):
    """The labelled set does not follow the profile schema or the labelling rules."""


@dataclass
class LabelledSet:
    seeds: list[Record]
    needs: list[Record]
    grades: dict[str, dict[str, int]]  # need id -> seed id -> grade (explicit zeros included)
    tags: dict[str, list[str]]

    @property
    def pool(self) -> list[Record]:
        """The seeds every system ranks: the open ones."""
        return [seed for seed in self.seeds if seed["status"] == ProfileStatus.open]


# ---- loading and checking ---------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[Record]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise InvalidSet(f"{path.name}:{number}: not JSON: {error}") from error
    return records


def _read_qrels(path: Path) -> list[tuple[str, str, int]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        cells = line.split("\t")
        if not line.strip() or cells[0] == "need_external_id":
            continue
        if len(cells) != 3 or not cells[2].isdigit() or int(cells[2]) > MAX_GRADE:
            raise InvalidSet(f"{path.name}:{number}: expected need id, seed id and a grade 0..{MAX_GRADE}")
        rows.append((cells[0], cells[1], int(cells[2])))
    return rows


def _read_tags(path: Path) -> dict[str, list[str]]:
    """The tags table of the README: the row after a header naming the ``need`` and ``tags`` columns."""
    tags: dict[str, list[str]] = {}
    columns: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            if tags:
                break  # the end of the tags table
            columns = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if columns is None:
            if "need" in cells and "tags" in cells:
                columns = cells
            continue
        if set(cells[0]) <= set("-: "):
            continue  # the separator row
        row = dict(zip(columns, cells, strict=False))
        tags[row["need"]] = [tag.strip() for tag in row["tags"].split(",") if tag.strip()]
    if not tags:
        raise InvalidSet(f"{path.name}: no table with 'need' and 'tags' columns")
    return tags


def _problems_of(record: Record, kind: str) -> list[str]:
    """What breaks the profile schema in one record (field names exact, closed value sets)."""
    expected = SEED_FIELDS if kind == "seed" else NEED_FIELDS
    problems = []
    if missing := [name for name in expected if name not in record]:
        problems.append(f"missing {', '.join(missing)}")
    if extra := sorted(set(record) - set(expected)):
        problems.append(f"unknown {', '.join(extra)}")
    if problems:
        return problems

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    check(record["language"] in Language._value2member_map_, "language must be ja or en")
    check(1 <= len(record["title"]) <= 300, "title must have 1..300 characters")
    check(1 <= len(record["summary"]) <= 2000, "summary must have 1..2000 characters")
    check(1 <= len(record["description"]) <= 20000, "description must have 1..20000 characters")
    check(len(record["keywords"]) <= 30 and all(1 <= len(k) <= 60 for k in record["keywords"]),
          "keywords: at most 30, each 1..60 characters")
    check(1 <= len(record["fields"]) <= 8 and set(record["fields"]) <= set(TECHNOLOGY_FIELDS),
          "fields: 1..8 known technology fields")
    check(record["prefecture"] in PREFECTURES, "prefecture must be a JIS X 0401 code")
    check(record["status"] in ProfileStatus._value2member_map_, "unknown status")
    if record["expires_on"] is not None:
        try:
            date.fromisoformat(record["expires_on"])
        except (TypeError, ValueError):
            problems.append("expires_on must be YYYY-MM-DD or null")
    forms = record["offers"] if kind == "seed" else record["wanted_forms"]
    check(1 <= len(forms) <= 6 and set(forms) <= set(CollaborationForm._value2member_map_),
          "collaboration forms: 1..6 known forms")
    if kind == "seed":
        check(record["owner_type"] in OwnerType._value2member_map_, "unknown owner_type")
        check(record["ip_status"] in IP_STATUSES, "unknown ip_status")
        check(isinstance(record["trl"], int) and 1 <= record["trl"] <= 9, "trl must be 1..9")
    else:
        check(record["company_size"] in CompanySize._value2member_map_, "unknown company_size")
        check(record["industry"] in JSIC_MAJOR_GROUPS, "industry must be a JSIC major group A..T")
        check(record["confidentiality"] in Confidentiality._value2member_map_, "unknown confidentiality")
        check(record["confidentiality"] != Confidentiality.confidential or bool(record["redacted_summary"]),
              "a confidential need needs a redacted_summary")
        timeline = record["timeline_months"]
        check(timeline is None or 1 <= timeline <= 120, "timeline_months must be 1..120")
    return problems


def _expired(record: Record, today: date) -> bool:
    return record["expires_on"] is not None and date.fromisoformat(record["expires_on"]) < today


def load_set(data: Path, today: date | None = None) -> LabelledSet:
    """Read and check ``seeds.jsonl``, ``needs.jsonl``, ``qrels.tsv`` and the README tags of ``data``."""
    today = today or date.today()
    seeds = _read_jsonl(data / "seeds.jsonl")
    needs = _read_jsonl(data / "needs.jsonl")
    problems: list[str] = []
    for kind, records in (("seed", seeds), ("need", needs)):
        seen: set[str] = set()
        for number, record in enumerate(records, start=1):
            name = record.get("external_id") or f"{kind} #{number}"
            problems.extend(f"{name}: {problem}" for problem in _problems_of(record, kind))
            if name in seen:
                problems.append(f"{name}: external_id used twice")
            seen.add(name)
    if problems:
        raise InvalidSet("; ".join(problems[:20]))

    seeds_by_id = {seed["external_id"]: seed for seed in seeds}
    need_ids = {need["external_id"] for need in needs}
    grades: dict[str, dict[str, int]] = defaultdict(dict)
    for need_id, seed_id, grade in _read_qrels(data / "qrels.tsv"):
        if need_id not in need_ids or seed_id not in seeds_by_id:
            problems.append(f"qrels: unknown need or seed in {need_id} {seed_id}")
            continue
        if seed_id in grades[need_id]:
            problems.append(f"qrels: {need_id} {seed_id} judged twice")
        seed = seeds_by_id[seed_id]
        if grade > 0 and (seed["status"] != ProfileStatus.open or _expired(seed, today)):
            problems.append(f"qrels: {need_id} grades {seed_id} {grade} but that seed may not be proposed")
        grades[need_id][seed_id] = grade
    for need in needs:
        graded = sum(1 for grade in grades[need["external_id"]].values() if grade > 0)
        if graded not in GRADED_PER_NEED:
            problems.append(f"qrels: {need['external_id']} has {graded} graded seeds, expected 1..5")

    tags = _read_tags(data / "README.md")
    for need_id in need_ids - tags.keys():
        problems.append(f"README: {need_id} has no row in the tags table")
    for need_id, need_tags in tags.items():
        if need_id not in need_ids:
            problems.append(f"README: the tags table names an unknown need {need_id}")
        if unknown := set(need_tags) - TAGS.keys():
            problems.append(f"README: {need_id} has unknown tags {', '.join(sorted(unknown))}")
        if not need_tags:
            problems.append(f"README: {need_id} has no tag (use 'plain')")
    if problems:
        raise InvalidSet("; ".join(problems[:20]))
    return LabelledSet(seeds=seeds, needs=needs, grades=dict(grades), tags=tags)


# ---- the two systems --------------------------------------------------------------------------


class Ranker(Protocol):
    def rank(self, need: Record, depth: int) -> list[str]:
        """Seed ids, best first, at most ``depth``."""
        ...


# Profiles need timestamps; one fixed instant keeps every run identical.
_PROFILE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def seed_profile_of(record: Record) -> SeedProfile:
    """The seed as its events carry it: every schema field the profile event has."""
    return SeedProfile(
        id=record["external_id"], version=1, created_at=_PROFILE_TIME, updated_at=_PROFILE_TIME,
        **{name: record[name] for name in SEED_FIELDS},
    )


def need_profile_of(record: Record) -> NeedProfile:
    """The need as its events carry it (the matcher sees the full text even of a confidential need)."""
    return NeedProfile(
        id=record["external_id"], version=1, created_at=_PROFILE_TIME, updated_at=_PROFILE_TIME,
        **{name: record[name] for name in NEED_FIELDS},
    )


class MatcherRanker:
    """The current matcher's index with every pool seed and every need, as in production."""

    def __init__(self, pool: Sequence[Record], needs: Sequence[Record]) -> None:
        self.index = ProfileIndex()
        for seed in pool:
            self.index.upsert(seed_profile_of(seed))
        for need in needs:
            self.index.upsert(need_profile_of(need))

    def rank(self, need: Record, depth: int) -> list[str]:
        return [candidate.seed_id for candidate in self.index.rank(need["external_id"], depth, min_score=0.0)]


_LETTER_RUN = re.compile(r"[^\W_]+")  # spaces and punctuation separate runs; kana, kanji, latin, digits stay


def char_bigrams(text: str) -> Counter[str]:
    """Character bigrams inside each run of letters and digits, after NFKC and lower-casing."""
    counts: Counter[str] = Counter()
    for run in _LETTER_RUN.findall(unicodedata.normalize("NFKC", text).lower()):
        counts.update(run[i : i + 2] for i in range(len(run) - 1))
    return counts


def _baseline_text(record: Record) -> str:
    return f"{record['title']}\n{record['summary']}\n{record['description']}"


class TfidfRanker:
    """Plain TF-IDF over character bigrams, cosine similarity; IDF from the seed pool (smoothed)."""

    def __init__(self, pool: Sequence[Record]) -> None:
        counts = {seed["external_id"]: char_bigrams(_baseline_text(seed)) for seed in pool}
        document_frequency: Counter[str] = Counter()
        for bigrams in counts.values():
            document_frequency.update(bigrams.keys())
        self.idf: dict[str, float] = defaultdict(lambda: math.log(1 + len(counts)) + 1)
        self.idf.update({t: math.log((1 + len(counts)) / (1 + df)) + 1 for t, df in document_frequency.items()})
        self.postings: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for seed_id, bigrams in counts.items():
            for term, weight in self._unit_vector(bigrams).items():
                self.postings[term].append((seed_id, weight))

    def _unit_vector(self, bigrams: Counter[str]) -> dict[str, float]:
        weights = {term: tf * self.idf[term] for term, tf in bigrams.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {term: w / norm for term, w in weights.items()}

    def rank(self, need: Record, depth: int) -> list[str]:
        scores: dict[str, float] = defaultdict(float)
        for term, weight in self._unit_vector(char_bigrams(_baseline_text(need))).items():
            for seed_id, seed_weight in self.postings.get(term, ()):
                scores[seed_id] += weight * seed_weight
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        return [seed_id for seed_id, score in ranked[:depth] if score > 0]


@dataclass(frozen=True)
class System:
    name: str
    description: str
    build: Callable[[LabelledSet], Ranker]


SYSTEMS = (
    System("matcher", "the matcher's ranker (services/matcher/domain.py ProfileIndex)",
           lambda labelled: MatcherRanker(labelled.pool, labelled.needs)),
    System("tfidf", "char-bigram TF-IDF cosine, title+summary+description",
           lambda labelled: TfidfRanker(labelled.pool)),
)


# ---- evaluation -------------------------------------------------------------------------------


@dataclass
class NeedResult:
    need_id: str
    ndcg: float
    recall: float | None
    traps: int
    ranked: list[str]


@dataclass
class SystemResult:
    system: System
    per_need: dict[str, NeedResult]
    build_ms: float
    rank_ms: list[float] = field(default_factory=list)


def evaluate(system: System, labelled: LabelledSet) -> SystemResult:
    started = time.perf_counter()
    ranker = system.build(labelled)
    result = SystemResult(system, {}, build_ms=(time.perf_counter() - started) * 1000)
    for need in labelled.needs:
        need_id = need["external_id"]
        started = time.perf_counter()
        ranked = ranker.rank(need, RANK_DEPTH)
        result.rank_ms.append((time.perf_counter() - started) * 1000)
        grades = labelled.grades.get(need_id, {})
        result.per_need[need_id] = NeedResult(
            need_id, ndcg=ndcg_at(ranked, grades, NDCG_K), recall=recall_at(ranked, grades, RECALL_K),
            traps=judged_useless_at(ranked, grades, NDCG_K), ranked=ranked,
        )
    return result


def groups_of(labelled: LabelledSet) -> dict[str, list[str]]:
    """``all`` and every tag that some need carries, each with its need ids."""
    groups = {"all": [need["external_id"] for need in labelled.needs]}
    for tag in TAGS:
        members = [need_id for need_id in groups["all"] if tag in labelled.tags.get(need_id, [])]
        if members:
            groups[tag] = members
    return groups


def _summary(result: SystemResult, need_ids: list[str]) -> dict[str, Any]:
    rows = [result.per_need[need_id] for need_id in need_ids]
    ndcg = mean(row.ndcg for row in rows)
    recall = mean(row.recall for row in rows)
    return {
        "needs": len(rows),
        f"ndcg@{NDCG_K}": None if ndcg is None else round(ndcg, 4),
        f"recall@{RECALL_K}": None if recall is None else round(recall, 4),
        "recall_needs": sum(1 for row in rows if row.recall is not None),
        f"traps@{NDCG_K}": sum(row.traps for row in rows),
    }


def _timing(result: SystemResult) -> dict[str, float]:
    return {
        "build_ms": round(result.build_ms, 2),
        "rank_mean_ms": round(statistics.fmean(result.rank_ms), 3),
        "rank_p50_ms": round(statistics.median(result.rank_ms), 3),
        "rank_max_ms": round(max(result.rank_ms), 3),
    }


def report(labelled: LabelledSet, results: list[SystemResult], data: Path, per_need: bool) -> dict[str, Any]:
    groups = groups_of(labelled)
    pool_ids = {seed["external_id"] for seed in labelled.pool}
    judged_useless_in_pool = sum(
        1 for grades in labelled.grades.values() for seed_id, grade in grades.items()
        if grade == 0 and seed_id in pool_ids
    )
    out: dict[str, Any] = {
        "data": str(data),
        "needs": len(labelled.needs),
        "seeds": len(labelled.seeds),
        "pool": len(labelled.pool),
        "judgements": sum(len(grades) for grades in labelled.grades.values()),
        "judged_useless_in_pool": judged_useless_in_pool,
        "ndcg_k": NDCG_K,
        "recall_k": RECALL_K,
        "recall_min_grade": RECALL_MIN_GRADE,
        "systems": {},
    }
    for result in results:
        entry: dict[str, Any] = {
            "description": result.system.description,
            "groups": {name: _summary(result, need_ids) for name, need_ids in groups.items()},
            "timing": _timing(result),
        }
        if per_need:
            entry["per_need"] = {
                need_id: {
                    f"ndcg@{NDCG_K}": round(row.ndcg, 4), f"recall@{RECALL_K}": row.recall,
                    f"traps@{NDCG_K}": row.traps, "top": row.ranked[:NDCG_K],
                }
                for need_id, row in result.per_need.items()
            }
        out["systems"][result.system.name] = entry
    return out


def _figure(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def print_table(figures: dict[str, Any], labelled: LabelledSet, per_need: bool) -> None:
    systems = figures["systems"]
    print(f"Matching quality on {figures['data']}: {figures['needs']} needs, {figures['seeds']} seeds "
          f"({figures['pool']} open in the pool), {figures['judgements']} judgements")
    print(f"nDCG@{NDCG_K}: gain 2^grade-1, log2 discount | R@{RECALL_K}: recall of seeds graded >= "
          f"{RECALL_MIN_GRADE} | traps@{NDCG_K}: seeds judged useless (grade 0) in the top {NDCG_K}, "
          f"summed ({figures['judged_useless_in_pool']} in the pool)")
    for name, system in systems.items():
        print(f"  {name}: {system['description']}")
    print()
    header = f"{'group':<28}{'needs':>6}"
    for name in systems:
        header += f"  | {f'{name} nDCG@{NDCG_K}':>16} {f'R@{RECALL_K}':>6} {'traps':>5}"
    print(header)
    for group in next(iter(systems.values()))["groups"]:
        first = next(iter(systems.values()))["groups"][group]
        line = f"{group:<28}{first['needs']:>6}"
        for system in systems.values():
            row = system["groups"][group]
            line += (f"  | {_figure(row[f'ndcg@{NDCG_K}']):>16} {_figure(row[f'recall@{RECALL_K}']):>6}"
                     f" {row[f'traps@{NDCG_K}']:>5}")
        print(line)
    print()
    for name, system in systems.items():
        timing = system["timing"]
        print(f"timing {name}: build {timing['build_ms']:.1f} ms; rank per need mean {timing['rank_mean_ms']:.2f} ms, "
              f"p50 {timing['rank_p50_ms']:.2f} ms, max {timing['rank_max_ms']:.2f} ms")
    if per_need:
        print()
        for need in labelled.needs:
            need_id = need["external_id"]
            grades = labelled.grades.get(need_id, {})
            print(f"{need_id} [{', '.join(labelled.tags.get(need_id, []))}] {need['title']}")
            for name, system in systems.items():
                row = system["per_need"][need_id]
                top = " ".join(f"{seed_id}:{grades.get(seed_id, '-')}" for seed_id in row["top"][:5])
                recall = _figure(row[f"recall@{RECALL_K}"])
                print(f"    {name:<8} nDCG {row[f'ndcg@{NDCG_K}']:.3f}  R@{RECALL_K} {recall}  top5 {top}")


# ---- ablations: what each part of the matcher adds ------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    patches: Callable[[], list[Any]]  # unittest.mock patchers, active while the variant builds and ranks


def _lexicon_patches(*tables: str) -> list[Any]:
    lexicon = analysis.compile_lexicon(*tables)
    return [mock.patch.object(analysis, "LEXICON", lexicon)]


def _neutral_fit() -> list[Any]:
    return [
        mock.patch.object(scoring, "FORM_CREDIT", np.ones_like(scoring.FORM_CREDIT)),
        mock.patch.object(scoring, "STAGE_CREDIT", np.ones_like(scoring.STAGE_CREDIT)),
    ]


def _no_region() -> list[Any]:
    return [mock.patch.object(scoring, "_REGION_WEIGHT_BY_SIZE", np.zeros_like(scoring._REGION_WEIGHT_BY_SIZE))]


def _fast_path(depth: int, postings_budget: int | None = None) -> list[Any]:
    patches = [
        mock.patch.object(index_module, "FAST_PATH_FROM", 0), mock.patch.object(index_module, "RESCORE_DEPTH", depth)
    ]
    if postings_budget is not None:
        patches.append(mock.patch.object(index_module, "POSTINGS_BUDGET", postings_budget))
    return patches


def _fugashi() -> list[Any]:
    """Kanji bigrams replaced by fugashi + unidic-lite words (nouns, verbs, adjectives, suffixes)."""
    import fugashi  # type: ignore[import-not-found]  # only for this measurement: pip install fugashi unidic-lite

    tagger = fugashi.Tagger()
    plain_tokens = analysis.tokens
    content = ("名詞", "動詞", "形容詞", "接尾辞")

    def tokens(text: str, lexicon: Any = None) -> list[Any]:
        kept = [t for t in plain_tokens(text, lexicon) if not _KANJI_TERM.match(t[0])]
        normalised = analysis.normalise(text)
        position = 0
        for word in tagger(normalised):
            surface = word.surface
            start = normalised.find(surface, position)
            if start < 0:
                continue
            position = start + len(surface)
            if word.feature.pos1 in content and _KANJI_TERM.search(surface):
                kept.append((surface, start, position))
        return kept

    return [mock.patch.object(analysis, "tokens", tokens)]


_KANJI_TERM = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3005]")

VARIANTS = (
    Variant("matcher", "everything", lambda: []),
    Variant("no_lexicon", "without any lexicon (no concepts: no katakana/English or bridge terms)",
            lambda: _lexicon_patches()),
    Variant("no_translations", "translated title and summary not indexed", lambda: [
        mock.patch.object(domain, "TRANSLATED_TITLE_WEIGHT", 0.0),
        mock.patch.object(domain, "TRANSLATED_SUMMARY_WEIGHT", 0.0),
    ]),
    Variant("no_classification", "classification codes not scored",
            lambda: [mock.patch.object(scoring, "CLASSIFICATION_WEIGHT", 0.0)]),
    Variant("no_fields", "technology fields not scored", lambda: [mock.patch.object(scoring, "FIELD_WEIGHT", 0.0)]),
    Variant("no_form_stage", "collaboration form and TRL against timeline neutral", _neutral_fit),
    Variant("no_region", "region neutral", _no_region),
    Variant("text_only", "text relevance alone", lambda: [
        mock.patch.object(scoring, "CLASSIFICATION_WEIGHT", 0.0), mock.patch.object(scoring, "FIELD_WEIGHT", 0.0),
        *_neutral_fit(), *_no_region(),
    ]),
    Variant("fast_path_300", "fast path forced (48 query terms, 300 rescored)", lambda: _fast_path(300)),
    Variant("fast_path_30", "fast path forced with only 30 rescored", lambda: _fast_path(30)),
    # Here a query's postings hold 70-290 entries (median 150): a budget of 40 sums about a quarter
    # of them, the heaviest terms' (at 1M seeds the budget covers a smaller share still).
    Variant("fast_path_budget", "fast path forced, 30 rescored, a postings budget of 40 entries",
            lambda: _fast_path(30, postings_budget=40)),
    Variant("fugashi", "kanji bigrams replaced by fugashi + unidic-lite words", _fugashi),
)


def evaluate_variant(variant: Variant, labelled: LabelledSet) -> SystemResult:
    system = System(variant.name, variant.description, lambda labelled: MatcherRanker(labelled.pool, labelled.needs))
    with contextlib.ExitStack() as stack:
        for patcher in variant.patches():
            stack.enter_context(patcher)
        analysis.term_spans.cache_clear()
        return evaluate(system, labelled)


def print_ablation(labelled: LabelledSet, results: list[SystemResult]) -> None:
    groups = groups_of(labelled)
    print(f"{'variant':<18}" + "".join(f"{name[:12]:>13}" for name in groups))
    for result in results:
        line = f"{result.system.name:<18}"
        for need_ids in groups.values():
            line += f"{_figure(_summary(result, need_ids)[f'ndcg@{NDCG_K}']):>13}"
        print(line)
    print()
    for result in results:
        print(f"  {result.system.name}: {result.system.description}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled set directory (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--per-need", action="store_true", help="add each need's figures and top seeds")
    parser.add_argument("--ablation", action="store_true",
                        help="nDCG@10 per tag of the matcher with one part at a time left out")
    args = parser.parse_args(argv)
    try:
        labelled = load_set(args.data)
    except (InvalidSet, OSError) as error:
        print(f"matcher_quality: {args.data}: {error}", file=sys.stderr)
        return 2
    if args.ablation:
        results = []
        for variant in VARIANTS:
            try:
                results.append(evaluate_variant(variant, labelled))
            except ImportError as error:  # the fugashi variant needs: pip install fugashi unidic-lite
                print(f"{variant.name}: skipped ({error})", file=sys.stderr)
        print_ablation(labelled, results)
        return 0
    results = [evaluate(system, labelled) for system in SYSTEMS]
    figures = report(labelled, results, args.data, args.per_need)
    if args.json:
        print(json.dumps(figures, ensure_ascii=False, indent=2))
    else:
        print_table(figures, labelled, args.per_need)
    return 0


if __name__ == "__main__":
    sys.exit(main())
