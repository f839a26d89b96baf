"""jobs.worker_attempt / worker_seq: the remote worker stream's position (executor "ray")

Revision ID: 0004_worker_stream
Revises: 0003_job_owner
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_worker_stream"
down_revision = "0003_job_owner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("worker_attempt", sa.String(64), nullable=True))
        batch.add_column(sa.Column("worker_seq", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("worker_seq")
        batch.drop_column("worker_attempt")
