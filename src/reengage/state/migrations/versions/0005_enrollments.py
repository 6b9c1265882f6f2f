"""enrollments, enrollment steps, journey cursors

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "enrollments",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("journey", sa.String(length=100), nullable=False),
        sa.Column("contact_id", ID, nullable=False),
        sa.Column("trigger_key", sa.String(length=200), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("variants", sa.String(length=500), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("steps_run", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_enrollments_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollments")),
        sa.UniqueConstraint("journey", "contact_id", "trigger_key", name="uq_enrollments_trigger"),
    )
    op.create_index("ix_enrollments_status_due", "enrollments", ["status", "due_at", "id"])
    op.create_index("ix_enrollments_contact", "enrollments", ["contact_id", "journey"])
    op.create_table(
        "enrollment_steps",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("enrollment_id", ID, nullable=False),
        sa.Column("journey", sa.String(length=100), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=False),
        sa.Column("message_id", ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
            name=op.f("fk_enrollment_steps_enrollment_id_enrollments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_enrollment_steps_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_steps")),
    )
    op.create_index("ix_enrollment_steps_enrollment", "enrollment_steps", ["enrollment_id"])
    op.create_index("ix_enrollment_steps_journey_step", "enrollment_steps", ["journey", "step"])
    op.create_index("ix_enrollment_steps_message_id", "enrollment_steps", ["message_id"])
    op.create_table(
        "journey_cursors",
        sa.Column("journey", sa.String(length=100), nullable=False),
        sa.Column("scanned_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("journey", name=op.f("pk_journey_cursors")),
    )


def downgrade() -> None:
    op.drop_table("journey_cursors")
    op.drop_index("ix_enrollment_steps_message_id", table_name="enrollment_steps")
    op.drop_index("ix_enrollment_steps_journey_step", table_name="enrollment_steps")
    op.drop_index("ix_enrollment_steps_enrollment", table_name="enrollment_steps")
    op.drop_table("enrollment_steps")
    op.drop_index("ix_enrollments_contact", table_name="enrollments")
    op.drop_index("ix_enrollments_status_due", table_name="enrollments")
    op.drop_table("enrollments")
