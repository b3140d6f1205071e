"""Referral's consultation events go through the transactional outbox: the legacy shared chain's migration 0008
moved the events not yet published into ``event_outbox`` (a database that chain left at its head is what referral's
own chain adopts, see test_db.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import insert, select

from radcds.adapters.db.engine import make_engine, sqlite_url
from radcds.adapters.db.outbox import pending_count
from radcds.adapters.db.tables import event_outbox
from radcds.domain.events import ORDER_EVALUATED
from radcds_devstack.testing import LEGACY_SHARED_CHAIN
from radcds_referral.db.tables import cds_consultations


def _consultation(cid: str, *, published: bool) -> dict:
    return {
        "consultation_id": cid,
        "service_id": "radcds-imaging-order-sign",
        "hook": "order-sign",
        "hook_instance": "h-" + cid,
        "order_id": "order-" + cid,
        "rule_id": "canadian-ct-head",
        "rule_version": "1",
        "rating": "not-appropriate",
        "card_uuid": None,
        "event_payload": json.dumps({"consultationId": cid}),
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "published_at": datetime(2026, 1, 1, tzinfo=UTC) if published else None,
    }


def test_migration_0008_moves_consultation_events_not_yet_published_into_the_outbox(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "referral.db"))
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files(LEGACY_SHARED_CHAIN).joinpath("migrations")))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007")
        conn.execute(
            insert(cds_consultations), [_consultation("c1", published=True), _consultation("c2", published=False)]
        )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with engine.connect() as conn:
        rows = conn.execute(select(event_outbox.c.event_id, event_outbox.c.event_type, event_outbox.c.subject)).all()
    assert [tuple(r) for r in rows] == [("c2", ORDER_EVALUATED.type, "order-c2")]
    assert pending_count(engine) == 1
