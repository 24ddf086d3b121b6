"""Coordinators' feedback on pairings: who may give it, and what a verdict changes. No HTTP, no Kafka."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, col, select

from shared.auth import Principal, Role
from shared.errors import Problem
from shared.events import Envelope, EventType, Pairing, PairingFeedbackGiven
from shared.ids import new_id
from shared.outbox import record_event

from .events import EVENT_SOURCE
from .models import FeedbackCreate, FeedbackPublic, PairingFeedback, PairingRecord
from .publication import DISMISSED, seed_office_of, visible_to
from .store import lock_lists


def readable_pairing(session: Session, principal: Principal, pairing_id: str, *, for_update: bool = False
                     ) -> PairingRecord:
    """The pairing if the caller may see it: admins and operators any; an office those of its needs and
    seeds (a confidential need's only if it is its own). Others' look like missing ones (404)."""
    record = session.get(PairingRecord, pairing_id, with_for_update=for_update)
    if record is not None and principal.role in (Role.admin, Role.operator):
        return record
    if record is not None and principal.role == Role.office and principal.office_id is not None:
        pairing = Pairing.model_validate(record.pairing)
        if principal.office_id in (pairing.need.office_id, seed_office_of(pairing)) and visible_to(
            pairing, principal.office_id
        ):
            return record
    if record is not None and principal.role == Role.partner:
        raise Problem(403, "Forbidden", "partners read pairings through their subscriptions")
    raise Problem(404, "Not found", f"no pairing {pairing_id}")


def give_feedback(session: Session, principal: Principal, pairing_id: str, body: FeedbackCreate) -> PairingFeedback:
    """Record a verdict and its ``pairing.feedback`` event; a dismissed pair leaves every list for good."""
    lock_lists(session)  # a dismissal changes lists: never beside a reconciliation
    record = readable_pairing(session, principal, pairing_id, for_update=True)
    if principal.role not in (Role.admin, Role.office):
        raise Problem(403, "Forbidden", "feedback is given by the office of the need or of the seed, or an admin")
    if record.verdict == DISMISSED:
        raise Problem(409, "Conflict", "this pairing was dismissed: a dismissal is final",
                      kind="pairing-dismissed", errors=[{"field": "verdict", "message": "already dismissed"}])
    feedback = PairingFeedback(
        id=new_id("fbk"), pairing_id=record.pairing_id, seed_id=record.seed_id, need_id=record.need_id,
        verdict=body.verdict, reason=body.reason, given_by_key_id=principal.key_id,
        given_by_office_id=principal.office_id if principal.role == Role.office else None,
        given_at=datetime.now(UTC),
    )
    record.verdict = body.verdict
    if body.verdict == DISMISSED:
        record.in_need_list = record.in_seed_list = False
    record.updated_at = feedback.given_at
    session.add(record)
    session.add(feedback)
    pairing = Pairing.model_validate(record.pairing)
    event = PairingFeedbackGiven(
        pairing_id=record.pairing_id, seed_id=record.seed_id, need_id=record.need_id,
        office_id=pairing.need.office_id, seed_office_id=seed_office_of(pairing), verdict=body.verdict,
        reason=body.reason, given_by_key_id=principal.key_id, given_by_office_id=feedback.given_by_office_id,
        given_at=feedback.given_at,
    )
    record_event(session, Envelope.wrap(EventType.pairing_feedback, EVENT_SOURCE, record.pairing_id, event))
    return feedback


def feedback_of(session: Session, pairing_id: str) -> list[PairingFeedback]:
    statement = select(PairingFeedback).where(PairingFeedback.pairing_id == pairing_id).order_by(
        col(PairingFeedback.given_at), col(PairingFeedback.id)
    )
    return list(session.exec(statement).all())


def feedback_view(feedback: PairingFeedback) -> FeedbackPublic:
    return FeedbackPublic.model_validate(feedback, from_attributes=True)
