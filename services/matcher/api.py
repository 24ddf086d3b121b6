from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from shared.auth import CurrentPrincipal
from shared.db import after_commit
from shared.registry import IdempotencyKey, create_idempotently
from shared.service import runtime_of

from .events import CONSUMER_GROUP, Matcher
from .feedback import feedback_of, feedback_view, give_feedback, readable_pairing
from .models import FeedbackCreate, FeedbackPublic, PairingRecord, RankedPairing

router = APIRouter(prefix="/v1", tags=["pairings"])


def _matcher(request: Request) -> Matcher:
    return runtime_of(request).extras["matcher"]


class IndexStats(BaseModel):
    seeds: int = Field(description="Open seeds in this replica's index.")
    needs: int = Field(description="Open needs in this replica's index.")
    replica_id: str | None = Field(None, description="MATCHNET_MATCHER_REPLICA_ID (None: a single matcher).")
    events_handled: int = Field(description="Seed and need events this replica ranked since it started.")
    ranking_partitions: list[str] = Field(
        description="The partitions whose events this replica ranks (its share of the consumer group)."
    )


@router.get("/index", response_model=IndexStats,
            summary="How many open seeds and needs the index holds, and this replica's share of the work")
def index_stats(principal: CurrentPrincipal, request: Request) -> IndexStats:
    matcher = _matcher(request)
    partitions = [
        f"{tp.topic}[{tp.partition}]"
        for consumer in runtime_of(request).consumers
        if consumer.group_id == CONSUMER_GROUP and consumer.consumer is not None
        for tp in sorted(consumer.consumer.assignment())
    ]
    return IndexStats(**matcher.index.counts(), replica_id=matcher.settings.replica_id,
                      events_handled=matcher.events_handled, ranking_partitions=partitions)


def _ranked(records: list[PairingRecord]) -> list[RankedPairing]:
    return [
        RankedPairing.model_validate({**r.pairing, "rank": rank, "verdict": r.verdict})
        for rank, r in enumerate(records, start=1)
    ]


@router.get("/needs/{need_id}/pairings", response_model=list[RankedPairing],
            summary="A need's current top list: its best seeds, ranked")
def pairings_for_need(need_id: str, principal: CurrentPrincipal, request: Request) -> list[RankedPairing]:
    with runtime_of(request).db.session() as session:
        statement = (
            select(PairingRecord).where(PairingRecord.need_id == need_id, col(PairingRecord.in_need_list))
            .order_by(col(PairingRecord.score).desc(), col(PairingRecord.seed_id))
        )
        return _ranked(list(session.exec(statement).all()))


@router.get("/seeds/{seed_id}/pairings", response_model=list[RankedPairing],
            summary="Where a seed is proposed now: its own list and the needs' lists it is in, best first")
def pairings_for_seed(seed_id: str, principal: CurrentPrincipal, request: Request) -> list[RankedPairing]:
    with runtime_of(request).db.session() as session:
        statement = (
            select(PairingRecord)
            .where(PairingRecord.seed_id == seed_id, col(PairingRecord.in_seed_list) | col(PairingRecord.in_need_list))
            .order_by(col(PairingRecord.score).desc(), col(PairingRecord.need_id))
        )
        return _ranked(list(session.exec(statement).all()))


@router.post(
    "/pairings/{pairing_id}/feedback", status_code=201, response_model=FeedbackPublic,
    summary="Give a verdict on a pairing: accepted, or dismissed (never proposed again)",
    description="By the office of the pairing's need or seed, or an admin. Emits "
    "`jp.matchnet.pairing.feedback.v1`. A dismissed pairing leaves its need's and its seed's lists at "
    "once and is never ranked again; a dismissal is final (409 for any later verdict). "
    "`Idempotency-Key` makes a retry return the first answer.",
    responses={404: {"description": "No such pairing, or one the caller may not see."},
               409: {"description": "The pairing was dismissed before."}},
)
def post_feedback(
    pairing_id: str, body: FeedbackCreate, principal: CurrentPrincipal, request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    matcher = _matcher(request)
    route = f"/v1/pairings/{pairing_id}/feedback"

    def write(session: Session) -> tuple[dict[str, Any], str]:
        feedback = give_feedback(session, principal, pairing_id, body)
        if body.verdict == "dismissed":
            after_commit(session, lambda: matcher.dismissed.add((feedback.seed_id, feedback.need_id)))
        return feedback_view(feedback).model_dump(mode="json"), route

    return create_idempotently(
        runtime_of(request).db, principal=principal, route=route, idempotency_key=idempotency_key,
        request_body=body, write=write,
    )


@router.get("/pairings/{pairing_id}/feedback", response_model=list[FeedbackPublic],
            summary="Every verdict given on a pairing, oldest first")
def list_feedback(pairing_id: str, principal: CurrentPrincipal, request: Request) -> list[FeedbackPublic]:
    with runtime_of(request).db.session() as session:
        readable_pairing(session, principal, pairing_id)
        return [feedback_view(f) for f in feedback_of(session, pairing_id)]
