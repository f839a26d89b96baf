"""jobs.owner: the name of the API key that created the job (users see their own jobs only); job names unique
per owner (a name another user took must not tell that their job exists)

Revision ID: 0003_job_owner
Revises: 0002_deployments
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_job_owner"
down_revision = "0002_deployments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(100), nullable=True))
        batch.create_index("ix_jobs_owner", ["owner"])
        batch.drop_constraint("uq_jobs_name", type_="unique")
        batch.create_unique_constraint("uq_jobs_owner_name", ["owner", "name"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_owner_name", type_="unique")
        batch.create_unique_constraint("uq_jobs_name", ["name"])
        batch.drop_index("ix_jobs_owner")
        batch.drop_column("owner")
