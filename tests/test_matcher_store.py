"""The matcher's handler over its real, migrated database (SQLite and PostgreSQL): stored lists make
re-applying a change publish nothing, a dismissal survives a restart, old pairings are kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlmodel import select

from services.matcher.events import Matcher
from services.matcher.feedback import give_feedback
from services.matcher.models import FeedbackCreate, PairingRecord
from services.matcher.publication import pairing_id
from services.matcher.settings import MatcherSettings
from shared.auth import Principal, Role
from shared.db import Database
from shared.events import PROFILE_EVENTS, Envelope, EventType, NeedCreated, NeedUpdated, ProfileAction, SeedCreated
from shared.migrations import upgrade
from shared.outbox import OutboxEvent
from tests.factories import need_profile, seed_profile


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    upgrade("matcher", database_url)
    database = Database(database_url)
    yield database
    database.dispose()


def handle(matcher: Matcher, db: Database, envelope: Envelope) -> None:
    with db.session() as session:
        matcher.handle(session, envelope)


def seed_created(id: str, **overrides: object) -> Envelope:
    return Envelope.wrap(EventType.seed_created, "/matchnet/seeds", id, SeedCreated(seed=seed_profile(id, **overrides)))


def need_created(id: str, **overrides: object) -> Envelope:
    return Envelope.wrap(EventType.need_created, "/matchnet/needs", id, NeedCreated(need=need_profile(id, **overrides)))


def published(db: Database) -> list[tuple[str, str, str]]:
    """(event type, office, trigger id) of every event in the outbox, in order."""
    with db.session() as session:
        rows = session.exec(select(OutboxEvent).order_by(sa.column("seq"))).all()
    out = []
    for row in rows:
        envelope = Envelope.model_validate_json(row.envelope)
        out.append((envelope.type.split(".")[3], envelope.data.get("office_id", ""),
                    envelope.data.get("trigger_id", "")))
    return out


def test_the_same_change_applied_again_stores_and_publishes_nothing_more(db: Database) -> None:
    matcher = Matcher(MatcherSettings())
    handle(matcher, db, seed_created("seed_1"))
    handle(matcher, db, need_created("need_1"))
    handle(matcher, db, seed_created("seed_1", version=2, title="熱電変換シート(改)"))
    first = published(db)
    assert first == [
        ("proposed", "office-13", "need_1"), ("proposed", "office-01", "need_1"),  # the need's list
        ("proposed", "office-01", "seed_1"), ("proposed", "office-13", "seed_1"),  # the seed's, once it changed
    ]

    # The same profiles again, under other event ids (the inbox would not catch them): e.g. seen in
    # the snapshot at start and then in the stream.
    handle(matcher, db, need_created("need_1"))
    handle(matcher, db, seed_created("seed_1", version=2, title="熱電変換シート(改)"))
    restarted = Matcher(MatcherSettings())
    restarted.profiles.apply(seed_profile("seed_1", version=2, title="熱電変換シート(改)"))  # its snapshot
    handle(restarted, db, need_created("need_1"))

    assert published(db) == first
    with db.session() as session:
        [stored] = session.exec(select(PairingRecord)).all()
    assert (stored.seed_id, stored.need_id, stored.office_id, stored.seed_office_id) == (
        "seed_1", "need_1", "office-13", "office-01")
    assert stored.in_need_list and stored.in_seed_list


def test_a_dismissed_pair_stays_dismissed_after_a_restart(db: Database) -> None:
    matcher = Matcher(MatcherSettings())
    handle(matcher, db, seed_created("seed_1"))
    handle(matcher, db, need_created("need_1"))
    office = Principal(role=Role.office, office_id="office-13", key_id="key_office13")
    with db.session() as session:
        give_feedback(session, office, pairing_id("seed_1", "need_1"), FeedbackCreate(verdict="dismissed"))
    before = published(db)
    assert before[-1][0] == "feedback"

    restarted = Matcher(MatcherSettings())
    restarted.profiles.apply(seed_profile("seed_1"))
    restarted.dismissed.load(db)
    assert restarted.dismissed.pairs == {("seed_1", "need_1")}
    update = Envelope.wrap(PROFILE_EVENTS[("need", ProfileAction.updated)], "/matchnet/needs", "need_1",
                           NeedUpdated(need=need_profile("need_1", version=2, title="排熱をもっと活かしたい"),
                                       changed_fields=["title"]))
    handle(restarted, db, update)
    handle(restarted, db, seed_created("seed_1"))

    assert published(db) == before
    with db.session() as session:
        [stored] = session.exec(select(PairingRecord)).all()
    assert stored.verdict == "dismissed" and not stored.in_need_list and not stored.in_seed_list


def test_the_pairings_stored_before_the_upgrade_become_their_needs_lists(database_url: str) -> None:
    upgrade("matcher", database_url, target="matcher_0002")
    engine = sa.create_engine(Database(database_url).url)
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO pairing (pairing_id, seed_id, need_id, office_id, score, pairing, updated_at) "
            "VALUES ('pair_1', 'seed_1', 'need_1', 'office-13', 0.5, '{}', CURRENT_TIMESTAMP)"
        ))
    engine.dispose()

    upgrade("matcher", database_url)

    database = Database(database_url)
    with database.session() as session:
        [stored] = session.exec(select(PairingRecord)).all()
    database.dispose()
    assert stored.in_need_list and not stored.in_seed_list and stored.verdict is None
