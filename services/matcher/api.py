from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlmodel import col, select

from shared.auth import CurrentPrincipal
from shared.events import Pairing
from shared.service import runtime_of

from .domain import ProfileIndex
from .models import PairingRecord

router = APIRouter(prefix="/v1", tags=["pairings"])


class IndexStats(BaseModel):
    seeds: int
    needs: int


@router.get("/index", response_model=IndexStats, summary="How many open seeds and needs the index holds")
def index_stats(principal: CurrentPrincipal, request: Request) -> IndexStats:
    index: ProfileIndex = runtime_of(request).extras["index"]
    return IndexStats(**index.counts())


def _ranked(records: list[PairingRecord]) -> list[Pairing]:
    pairings = [Pairing.model_validate(r.pairing) for r in records]
    return [p.model_copy(update={"rank": rank}) for rank, p in enumerate(pairings, start=1)]


@router.get("/needs/{need_id}/pairings", response_model=list[Pairing], summary="Current ranked seeds for a need")
def pairings_for_need(need_id: str, principal: CurrentPrincipal, request: Request) -> list[Pairing]:
    with runtime_of(request).db.session() as session:
        statement = (
            select(PairingRecord).where(PairingRecord.need_id == need_id)
            .order_by(col(PairingRecord.score).desc()).limit(100)
        )
        return _ranked(list(session.exec(statement).all()))


@router.get("/seeds/{seed_id}/pairings", response_model=list[Pairing], summary="Current ranked needs for a seed")
def pairings_for_seed(seed_id: str, principal: CurrentPrincipal, request: Request) -> list[Pairing]:
    with runtime_of(request).db.session() as session:
        statement = (
            select(PairingRecord).where(PairingRecord.seed_id == seed_id)
            .order_by(col(PairingRecord.score).desc()).limit(100)
        )
        return _ranked(list(session.exec(statement).all()))
