"""Referral publishes through the shared transactional outbox (``event_outbox``).

Consultations stored before this revision whose event was not on Kafka yet
(``cds_consultations.published_at IS NULL``) are copied into ``event_outbox`` so the relay sends them;
``published_at`` is no longer written.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: The event type of ``ORDER_EVALUATED`` when this revision was written (a migration must not import the app).
ORDER_EVALUATED_TYPE = "org.radcds.referral.imaging-order.evaluated.v1"


def upgrade() -> None:
    consultations = sa.table(
        "cds_consultations",
        sa.column("consultation_id", sa.String),
        sa.column("order_id", sa.String),
        sa.column("event_payload", sa.Text),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("published_at", sa.DateTime(timezone=True)),
    )
    outbox = sa.table(
        "event_outbox",
        sa.column("event_id", sa.String),
        sa.column("event_type", sa.String),
        sa.column("subject", sa.String),
        sa.column("payload", sa.Text),
        sa.column("trace_context", sa.Text),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("published_at", sa.DateTime(timezone=True)),
    )
    conn = op.get_bind()
    pending = conn.execute(
        sa.select(
            consultations.c.consultation_id,
            consultations.c.order_id,
            consultations.c.event_payload,
            consultations.c.created_at,
        )
        .where(consultations.c.published_at.is_(None))
        .order_by(consultations.c.created_at)
    ).all()
    if pending:
        op.bulk_insert(
            outbox,
            [
                {
                    "event_id": row.consultation_id,
                    "event_type": ORDER_EVALUATED_TYPE,
                    "subject": row.order_id,
                    "payload": row.event_payload,
                    "trace_context": "{}",
                    "created_at": row.created_at,
                    "published_at": None,
                }
                for row in pending
            ],
        )


def downgrade() -> None:
    outbox = sa.table("event_outbox", sa.column("event_type", sa.String), sa.column("published_at", sa.DateTime))
    op.execute(outbox.delete().where(outbox.c.event_type == ORDER_EVALUATED_TYPE, outbox.c.published_at.is_(None)))
