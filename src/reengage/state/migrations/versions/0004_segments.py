"""segments, segment members, segment transitions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("entered", sa.Integer(), nullable=False),
        sa.Column("exited", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_segments")),
    )
    op.create_table(
        "segment_members",
        sa.Column("segment", sa.String(length=100), nullable=False),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_segment_members_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("segment", "contact_id", name=op.f("pk_segment_members")),
    )
    op.create_index(
        "ix_segment_members_contact_id", "segment_members", ["contact_id"], unique=False
    )
    op.create_table(
        "segment_transitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("segment", sa.String(length=100), nullable=False),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_segment_transitions_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_transitions")),
    )
    op.create_index(
        "ix_segment_transitions_contact_id", "segment_transitions", ["contact_id"], unique=False
    )
    op.create_index(
        "ix_segment_transitions_segment_at", "segment_transitions", ["segment", "at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_segment_transitions_segment_at", table_name="segment_transitions")
    op.drop_index("ix_segment_transitions_contact_id", table_name="segment_transitions")
    op.drop_table("segment_transitions")
    op.drop_index("ix_segment_members_contact_id", table_name="segment_members")
    op.drop_table("segment_members")
    op.drop_table("segments")
