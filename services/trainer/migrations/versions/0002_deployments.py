"""deployments: completed jobs' adapters served under model names

Revision ID: 0002_deployments
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from services.trainer.orm import UTCDateTime

revision = "0002_deployments"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("base_model", sa.String(300), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_deployments_job_id", "deployments", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_deployments_job_id", table_name="deployments")
    op.drop_table("deployments")
