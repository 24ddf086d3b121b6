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
from services.seeds.app import create_app as create_seeds_app
from services.seeds.models import TABLES as SEEDS_TABLES
from services.seeds.settings import SeedsSettings
from shared.db import make_engine
from shared.migrations import current_revision, head_revision, upgrade
from shared.service import COMMON_TABLES
from tests.api_harness import ADMIN, ADMIN_KEY, route_harness

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


def test_seeds_from_before_the_registry_revision_are_kept_summarised_and_searchable(database_url: str) -> None:
    upgrade("seeds", database_url, target="seeds_0001")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO seed (id, version, title, description, keywords, fields, prefecture, language, status, "
            "created_at, updated_at, owner_org, owner_type, offers) VALUES ('seed_0190aaaaaaaa1234567890abcdef', 1, "
            "'熱電変換シート', '低温の排熱から発電する。', '[\"thermoelectric\"]', '[\"energy\"]', '01', 'ja', 'open', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '北海道工業大学', 'university', '[\"license\"]')"
        ))
    engine.dispose()
    settings = SeedsSettings(database_url=database_url, bootstrap_admin_key=ADMIN_KEY)

    with route_harness(create_seeds_app, settings) as seeds:  # migrates to the newest revision
        [seed] = seeds.client.get("/v1/seeds", headers=ADMIN, params={"q": "排熱 thermoelectric",
                                                                       "fields": "energy", "offers": "license"}
                                  ).json()["items"]
        assert seed["summary"] == "低温の排熱から発電する。" and seed["classification_codes"] == []
        assert seed["trl"] is None and seed["patent_numbers"] == []
        url = f"/v1/seeds/{seed['id']}"
        incomplete = seeds.client.patch(url, headers={**ADMIN, "If-Match": '"1"'}, json={"title": "熱電シート"})
        completed = seeds.client.patch(url, headers={**ADMIN, "If-Match": '"1"'}, json={
            "ip_status": "know_how", "trl": 3, "contact_name": "産学連携本部", "contact_email": "a@example.ac.jp"})

    assert incomplete.status_code == 422
    assert {"ip_status", "trl", "contact_name", "contact_email"} <= {e["field"] for e in incomplete.json()["errors"]}
    assert completed.status_code == 200 and completed.json()["version"] == 2
