"""Reporting: FHIR version history, search index tables, critical-result tracking.

Existing ``fhir_resources`` rows get their current version copied into the history and their
search values indexed, so resources stored before this revision are found by search too.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fhir_resource_versions",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("resource_type", "id", "version_id"),
    )
    op.create_table(
        "fhir_search_tokens",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("system", sa.String(256), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_index("ix_fhir_search_tokens_lookup", "fhir_search_tokens", ["resource_type", "param", "value", "system"])
    op.create_index("ix_fhir_search_tokens_resource", "fhir_search_tokens", ["resource_type", "resource_id"])
    op.create_table(
        "fhir_search_references",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("target", sa.String(160), nullable=False),
    )
    op.create_index("ix_fhir_search_references_lookup", "fhir_search_references", ["resource_type", "param", "target"])
    op.create_index("ix_fhir_search_references_resource", "fhir_search_references", ["resource_type", "resource_id"])
    op.create_table(
        "fhir_search_dates",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("low", sa.DateTime(timezone=True), nullable=False),
        sa.Column("high", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_fhir_search_dates_low", "fhir_search_dates", ["resource_type", "param", "low"])
    op.create_index("ix_fhir_search_dates_high", "fhir_search_dates", ["resource_type", "param", "high"])
    op.create_index("ix_fhir_search_dates_resource", "fhir_search_dates", ["resource_type", "resource_id"])
    op.create_table(
        "critical_result_alerts",
        sa.Column("communication_id", sa.String(64), primary_key=True),
        sa.Column("diagnostic_report_id", sa.String(64), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(256), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalation_communication_id", sa.String(64), nullable=True),
    )
    op.create_index(
        "ix_critical_result_alerts_diagnostic_report_id", "critical_result_alerts", ["diagnostic_report_id"]
    )
    op.create_index("ix_critical_result_alerts_sent_at", "critical_result_alerts", ["sent_at"])
    _backfill()


def _backfill() -> None:
    """History and index rows for the resources stored before this revision. (Frozen with the shared chain: the
    tables and the indexer it needs are reporting's now, imported only when there are rows to backfill.)"""
    conn = op.get_bind()
    stored = sa.table(
        "fhir_resources",
        sa.column("resource_type", sa.String),
        sa.column("id", sa.String),
        sa.column("version_id", sa.Integer),
        sa.column("last_updated", sa.DateTime(timezone=True)),
        sa.column("content", sa.Text),
    )
    t = stored.c
    rows = conn.execute(sa.select(t.resource_type, t.id, t.version_id, t.last_updated, t.content)).all()
    if not rows:
        return
    from radcds_reporting.adapters.fhir.search import index_rows
    from radcds_reporting.db.tables import (
        fhir_resource_versions,
        fhir_search_dates,
        fhir_search_references,
        fhir_search_tokens,
    )

    for rtype, rid, version, last_updated, content in rows:
        conn.execute(
            fhir_resource_versions.insert().values(
                resource_type=rtype, id=rid, version_id=version, last_updated=last_updated, content=content
            )
        )
        idx = index_rows(json.loads(content))
        base = {"resource_type": rtype, "resource_id": rid}
        if idx.tokens:
            conn.execute(
                fhir_search_tokens.insert(), [{**base, "param": p, "system": s, "value": v} for p, s, v in idx.tokens]
            )
        if idx.references:
            conn.execute(
                fhir_search_references.insert(), [{**base, "param": p, "target": t} for p, t in idx.references]
            )
        if idx.dates:
            conn.execute(
                fhir_search_dates.insert(), [{**base, "param": p, "low": lo, "high": hi} for p, lo, hi in idx.dates]
            )


def downgrade() -> None:
    op.drop_table("critical_result_alerts")
    op.drop_table("fhir_search_dates")
    op.drop_table("fhir_search_references")
    op.drop_table("fhir_search_tokens")
    op.drop_table("fhir_resource_versions")
