"""Ranking-quality metrics over graded relevance: nDCG@k and recall@k.

Standard definitions, so figures compare with the literature: the gain of a seed of grade g is
2^g - 1 and the discount at rank r (1-based) is log2(r + 1); the ideal ranking is every judged
seed sorted by grade. Unjudged seeds have grade 0.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

# Recall counts only the seeds a coordinator would call good (2) or introduce first (3).
RECALL_MIN_GRADE = 2


def _unique(ranked: Sequence[str]) -> Sequence[str]:
    if len(set(ranked)) != len(ranked):
        raise ValueError("a ranking lists a seed twice")
    return ranked


def dcg(grades: Iterable[int]) -> float:
    """Discounted cumulative gain of grades in rank order."""
    return sum((2**grade - 1) / math.log2(rank + 1) for rank, grade in enumerate(grades, start=1))


def ndcg_at(ranked: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    """nDCG of the top ``k`` of ``ranked`` against the judged ``grades`` (0.0 when nothing is relevant)."""
    top = _unique(ranked)[:k]
    ideal = dcg(sorted(grades.values(), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg(grades.get(seed, 0) for seed in top) / ideal


def recall_at(
    ranked: Sequence[str], grades: Mapping[str, int], k: int, min_grade: int = RECALL_MIN_GRADE
) -> float | None:
    """Share of the seeds graded ``min_grade`` or better found in the top ``k``; None if there are none."""
    relevant = {seed for seed, grade in grades.items() if grade >= min_grade}
    if not relevant:
        return None
    return len(relevant.intersection(_unique(ranked)[:k])) / len(relevant)


def judged_useless_at(ranked: Sequence[str], grades: Mapping[str, int], k: int) -> int:
    """How many seeds explicitly judged useless (grade 0 in the qrels, the traps) are in the top ``k``."""
    return sum(1 for seed in _unique(ranked)[:k] if grades.get(seed) == 0)


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the defined values; None when no value is defined."""
    defined = [value for value in values if value is not None]
    return statistics.fmean(defined) if defined else None
