from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import select

from services.matcher.domain import ProfileIndex, proposals_for_need
from services.matcher.events import store_pairings
from services.matcher.models import PairingRecord
from shared.db import Database
from tests.factories import need_profile, seed_profile


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url, [PairingRecord])
    database.create_tables()
    yield database
    database.dispose()


def test_storing_a_proposal_again_refreshes_each_pairing_instead_of_duplicating_it(db: Database) -> None:
    index = ProfileIndex()
    index.upsert(seed_profile("seed_1"))
    index.upsert(need_profile("need_1"))
    [first] = proposals_for_need(index, "need_1", limit=10, min_score=0.0)
    with db.session() as session:
        store_pairings(session, first)
    index.upsert(seed_profile("seed_1", version=2, title="熱電変換シート 排熱 工場 電気"))
    [second] = proposals_for_need(index, "need_1", limit=10, min_score=0.0)
    assert second.pairings[0].score != first.pairings[0].score
    with db.session() as session:
        store_pairings(session, second)

    with db.session() as session:
        [stored] = session.exec(select(PairingRecord)).all()
    assert (stored.seed_id, stored.need_id, stored.office_id) == ("seed_1", "need_1", "office-13")
    assert stored.score == second.pairings[0].score
    assert stored.pairing["score"] == second.pairings[0].score
