from __future__ import annotations

from fastapi import APIRouter, Request
from sqlmodel import col, select

from shared.auth import CurrentPrincipal
from shared.events import Pairing
from shared.service import runtime_of

from .models import PairingRecord

router = APIRouter(prefix="/v1", tags=["pairings"])


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
