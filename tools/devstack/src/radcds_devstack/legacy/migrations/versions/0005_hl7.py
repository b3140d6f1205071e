"""HL7 v2: the persisted outbound ORU queue and the inbound duplicate (MSH-10) log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hl7_outbound_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("order_key", sa.String(255), nullable=False),
        sa.Column("control_id", sa.String(20), nullable=False),
        sa.Column("message_type", sa.String(16), nullable=False),
        sa.Column("result_status", sa.String(1), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_ack_code", sa.String(2), nullable=True),
        sa.Column("last_error", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("destination", "control_id", name="uq_hl7_outbound_destination_control_id"),
    )
    op.create_index("ix_hl7_outbound_pending", "hl7_outbound_messages", ["destination", "state"])
    op.create_index("ix_hl7_outbound_order", "hl7_outbound_messages", ["destination", "order_key"])
    op.create_table(
        "hl7_inbound_messages",
        sa.Column("sender", sa.String(255), nullable=False),
        sa.Column("control_id", sa.String(199), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sender", "control_id"),
    )


def downgrade() -> None:
    op.drop_table("hl7_inbound_messages")
    op.drop_index("ix_hl7_outbound_order", table_name="hl7_outbound_messages")
    op.drop_index("ix_hl7_outbound_pending", table_name="hl7_outbound_messages")
    op.drop_table("hl7_outbound_messages")
