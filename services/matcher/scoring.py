"""The score of a (seed, need) pair: every weight in one place, every component in [0, 1].

    relevance = TEXT_WEIGHT × text + CLASSIFICATION_WEIGHT × classification + FIELD_WEIGHT × fields
    score     = relevance × form × stage × region × freshness

- text: cosine of the two profiles' TF-IDF vectors (sublinear tf; terms and concepts of
  services/matcher/analysis.py; title, keywords and summary weigh more than the description).
- classification: shared IPC/CPC codes: the same main group (H10N 10) 1.0, only the same subclass
  (H10N) 0.5. Only a profile that carries codes can score here; most needs do not.
- fields: Dice overlap of the technology fields.
- form: what the seed offers against what the need wants. A wanted form on offer: 1.0. A neighbouring
  form (assignment for a licence, consulting for joint research): below 1. Nothing close (a licence
  wanted, only consulting offered): ``FORM_MISMATCH``, a hard demotion: such a seed never heads a
  list above a seed that fits.
- stage: the seed's TRL against the TRL the need's timeline asks for (a 6-month timeline needs a
  technology near use, TRL 7); each missing level costs a share. Unknown TRL or timeline: neutral.
- region: for the company size of the need, a multiplier near 1 that favours the same prefecture,
  then the same regional block; the rest of the country is only slightly lower, never excluded. A
  weak local seed stays below a strong distant one (the whole bonus is ``REGION_WEIGHT``).
- freshness: recently updated profiles first among equals; half-life ``FRESHNESS_HALF_LIFE_DAYS``.

The relevance weights were chosen on bench/quality by a coarse grid (fields 0 / 0.05 / 0.1,
classification 0.1 / 0.2 / 0.3) and rounded; differences below about 0.02 nDCG@10 there are noise.
Form, stage and region follow the grading rules of bench/quality/README.md (policy, not fitting):
region is worth at most 15% for an SME. ``bench/matcher_quality.py --ablation`` shows what each
component adds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shared.reference import REGIONAL_BLOCKS, CollaborationForm, CompanySize

# ---- weights: the one place ------------------------------------------------------------------------

TEXT_WEIGHT = 0.75
CLASSIFICATION_WEIGHT = 0.20
FIELD_WEIGHT = 0.05  # small: a shared broad field alone must not lift a seed above the text matches
SAME_SUBCLASS_CREDIT = 0.5  # a shared subclass (G01M) against a shared main group (G01M 13)

FORM_MISMATCH = 0.25  # nothing the need wants is on offer, nor anything close
# (wanted, offered) -> credit when the wanted form itself is not on offer
FORM_NEIGHBOURS: dict[tuple[CollaborationForm, CollaborationForm], float] = {
    (CollaborationForm.license, CollaborationForm.assignment): 0.85,
    (CollaborationForm.assignment, CollaborationForm.license): 0.8,
    (CollaborationForm.license, CollaborationForm.research_use_free): 0.5,
    (CollaborationForm.license, CollaborationForm.joint_research): 0.5,
    (CollaborationForm.joint_research, CollaborationForm.license): 0.7,
    (CollaborationForm.joint_research, CollaborationForm.technical_consulting): 0.6,
    (CollaborationForm.technical_consulting, CollaborationForm.joint_research): 0.8,
    (CollaborationForm.research_use_free, CollaborationForm.license): 0.6,
    (CollaborationForm.spin_off, CollaborationForm.license): 0.6,
    (CollaborationForm.license, CollaborationForm.spin_off): 0.6,
    (CollaborationForm.spin_off, CollaborationForm.joint_research): 0.5,
}

# Timeline (months, at most) -> the TRL a seed needs to be usable in it.
TRL_FOR_TIMELINE = ((6, 7), (12, 6), (24, 5), (36, 4))
TRL_FOR_LONG_TIMELINES = 3
STAGE_CREDIT_BY_MISSING_LEVELS = (1.0, 0.8, 0.5, 0.3)  # 0, 1, 2, 3+ levels short

REGION_WEIGHT: dict[CompanySize, float] = {CompanySize.sme: 0.15, CompanySize.venture: 0.08, CompanySize.large: 0.0}
SAME_BLOCK_CREDIT = 0.5
FRESHNESS_WEIGHT = 0.05
FRESHNESS_HALF_LIFE_DAYS = 365.0

# ---- codes of the closed vocabularies, for arrays -------------------------------------------------

FORMS = tuple(CollaborationForm)
FORM_BIT = {form: 1 << i for i, form in enumerate(FORMS)}
FORM_BIT_BY_VALUE: dict[str, int] = {form.value: bit for form, bit in FORM_BIT.items()}  # a StrEnum hashes as its value
SIZES = tuple(CompanySize)
SIZE_CODE = {size: i + 1 for i, size in enumerate(SIZES)}  # 0: not a need
BLOCK_CODE = {block: i + 1 for i, block in enumerate(REGIONAL_BLOCKS)}


def forms_mask(forms: list[CollaborationForm] | list[str]) -> int:
    bits = FORM_BIT_BY_VALUE
    return sum(bits[form] for form in set(forms))


def _form_table() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
    """(offered mask, wanted mask) -> form credit, and the index of the form that fits (-1: none)."""
    size = 1 << len(FORMS)
    credit = np.zeros((size, size), dtype=np.float32)
    fitting = np.full((size, size), -1, dtype=np.int8)
    for offered in range(size):
        for wanted in range(size):
            if not wanted or not offered:
                credit[offered, wanted] = 1.0  # nothing stated: nothing to hold against the pair
                continue
            best, best_form = FORM_MISMATCH, -1
            for i, want in enumerate(FORMS):
                if not wanted & FORM_BIT[want]:
                    continue
                for j, offer in enumerate(FORMS):
                    if not offered & FORM_BIT[offer]:
                        continue
                    value = 1.0 if i == j else FORM_NEIGHBOURS.get((want, offer), 0.0)
                    if value > best:
                        best, best_form = value, j
            credit[offered, wanted] = best
            fitting[offered, wanted] = best_form
    return credit, fitting


FORM_CREDIT, FITTING_FORM = _form_table()


def required_trl(timeline_months: int) -> int:
    for months, trl in TRL_FOR_TIMELINE:
        if timeline_months <= months:
            return trl
    return TRL_FOR_LONG_TIMELINES


def _stage_table() -> npt.NDArray[np.float32]:
    """(trl 0..9, timeline months 0..120) -> stage credit; 0 means unknown."""
    table = np.ones((10, 121), dtype=np.float32)
    for trl in range(1, 10):
        for months in range(1, 121):
            missing = max(0, required_trl(months) - trl)
            table[trl, months] = STAGE_CREDIT_BY_MISSING_LEVELS[min(missing, len(STAGE_CREDIT_BY_MISSING_LEVELS) - 1)]
    return table


STAGE_CREDIT = _stage_table()
_REGION_WEIGHT_BY_SIZE = np.array([0.0, *(REGION_WEIGHT[size] for size in SIZES)], dtype=np.float32)
_LN2 = float(np.log(2.0))


# ---- components over arrays (one entry per candidate; a query's scalars broadcast) ----------------

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.integer]


def field_overlap(a: Ints | int, b: Ints | int) -> Floats:
    """Dice overlap of two technology-field bit masks."""
    shared = np.bitwise_count(np.bitwise_and(a, b)).astype(np.float32)
    total = (np.bitwise_count(a) + np.bitwise_count(b)).astype(np.float32)
    return np.where(total > 0, 2 * shared / np.maximum(total, 1), 0).astype(np.float32)


def classification_overlap(
    groups: Ints, subclasses: Ints, query_groups: Ints, query_subclasses: Ints
) -> Floats:
    """Per candidate row of code ids (0 = none): 1.0 for a shared main group, else the subclass credit."""
    if not len(query_groups) and not len(query_subclasses):
        return np.zeros(len(groups), dtype=np.float32)
    group_hit = (np.isin(groups, query_groups) & (groups > 0)).any(axis=1)
    subclass_hit = (np.isin(subclasses, query_subclasses) & (subclasses > 0)).any(axis=1)
    return np.where(group_hit, 1.0, np.where(subclass_hit, SAME_SUBCLASS_CREDIT, 0.0)).astype(np.float32)


def form_credit(offered: Ints | int, wanted: Ints | int) -> Floats:
    return FORM_CREDIT[offered, wanted]


def stage_credit(trl: Ints | int, timeline_months: Ints | int) -> Floats:
    return STAGE_CREDIT[trl, timeline_months]


def region_relation(prefecture_a: Ints | int, prefecture_b: Ints | int, block_a: Ints | int,
                    block_b: Ints | int) -> Floats:
    """1.0 same prefecture, SAME_BLOCK_CREDIT same regional block, 0 elsewhere."""
    same_block = np.equal(block_a, block_b)
    return np.where(np.equal(prefecture_a, prefecture_b), 1.0, np.where(same_block, SAME_BLOCK_CREDIT, 0.0)).astype(
        np.float32
    )


def region_factor(relation: Floats, size_code: Ints | int) -> Floats:
    weight = _REGION_WEIGHT_BY_SIZE[size_code]
    return (1.0 - weight * (1.0 - relation)).astype(np.float32)


def freshness(age_days: Ints | int) -> Floats:
    return np.exp(-_LN2 * np.maximum(age_days, 0) / FRESHNESS_HALF_LIFE_DAYS).astype(np.float32)


def freshness_factor(fresh: Floats) -> Floats:
    return (1.0 - FRESHNESS_WEIGHT * (1.0 - fresh)).astype(np.float32)


def relevance(text: Floats, classification: Floats, fields: Floats) -> Floats:
    return (TEXT_WEIGHT * text + CLASSIFICATION_WEIGHT * classification + FIELD_WEIGHT * fields).astype(np.float32)
