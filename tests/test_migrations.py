"""Each service owns its Alembic history; services migrate on start; `matchnet migrate` does it by hand."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from matchnet.cli import build_parser, cmd_migrate
from services.matcher.models import TABLES as MATCHER_TABLES
from services.needs.models import TABLES as NEEDS_TABLES
from services.notifications.models import TABLES as NOTIFICATIONS_TABLES
from services.seeds.models import TABLES as SEEDS_TABLES
from shared.db import make_engine
from shared.migrations import current_revision, head_revision, upgrade
from shared.service import COMMON_TABLES

SERVICE_TABLES: dict[str, list[type[SQLModel]]] = {
    "seeds": SEEDS_TABLES, "needs": NEEDS_TABLES, "matcher": MATCHER_TABLES, "notifications": NOTIFICATIONS_TABLES,
}


def schema_differences(url: str, tables: list[type[SQLModel]]) -> list[object]:
    metadata = sa.MetaData()
    for table in [*COMMON_TABLES, *tables]:
        table.__table__.to_metadata(metadata)  # type: ignore[attr-defined]
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


@pytest.mark.parametrize("service", sorted(SERVICE_TABLES))
def test_a_migrated_database_has_exactly_the_tables_of_the_models(database_url: str, service: str) -> None:
    assert upgrade(service, database_url) == head_revision(service)

    assert current_revision(database_url) == head_revision(service)
    assert schema_differences(database_url, SERVICE_TABLES[service]) == []


def test_migrating_again_changes_nothing(database_url: str) -> None:
    upgrade("seeds", database_url)
    assert upgrade("seeds", database_url) == head_revision("seeds")
    assert schema_differences(database_url, SEEDS_TABLES) == []


def test_a_database_made_before_migrations_is_adopted_and_keeps_its_rows(database_url: str) -> None:
    # What `create_all` made before Alembic: the initial revision's tables, no alembic_version.
    upgrade("matcher", database_url, target="matcher_0001")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE alembic_version"))
        connection.execute(sa.text(
            "INSERT INTO inbox_event (event_id, event_type, processed_at) VALUES ('evt_1', 't', CURRENT_TIMESTAMP)"
        ))
    engine.dispose()

    assert upgrade("matcher", database_url) == head_revision("matcher")

    engine = make_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT event_id FROM inbox_event")).scalars().all() == ["evt_1"]
    engine.dispose()


def test_matchnet_migrate_all_brings_every_service_database_to_its_newest_revision(tmp_path: Path) -> None:
    out = io.StringIO()
    args = build_parser().parse_args(["migrate", "all", "--data-dir", str(tmp_path)])

    assert cmd_migrate(args, out) == 0

    lines = out.getvalue().splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["seeds", "needs", "matcher", "notifications"]
    assert all("(newest)" in line for line in lines)
    for service in SERVICE_TABLES:
        assert current_revision(f"sqlite:///{tmp_path / f'{service}.db'}") == head_revision(service)


def test_matchnet_migrate_names_the_database_it_could_not_migrate(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    missing_dir = tmp_path / "file-not-dir"
    missing_dir.write_text("")
    args = build_parser().parse_args(["migrate", "seeds", "--database-url", f"sqlite:///{missing_dir}/x/seeds.db"])

    assert cmd_migrate(args, io.StringIO()) == 1
    assert "seeds: migration failed on sqlite:///" in capsys.readouterr().err


def test_one_database_url_is_for_one_service() -> None:
    args = build_parser().parse_args(["migrate", "all", "--database-url", "sqlite:///x.db"])
    assert cmd_migrate(args, io.StringIO()) == 2
