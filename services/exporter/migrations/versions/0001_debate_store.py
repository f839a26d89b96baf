"""The debate store: debates, proposals, critiques, votes, derived per-agent outcomes, gauntlet runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 13:35:05.601064
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('debates',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('task', sa.Text(), nullable=False),
    sa.Column('vertical', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('split', sa.String(length=16), nullable=False),
    sa.Column('num_rounds', sa.Integer(), nullable=False),
    sa.Column('consensus_reached', sa.Boolean(), nullable=False),
    sa.Column('final_answer', sa.Text(), nullable=False),
    sa.Column('consensus_confidence', sa.Float(), nullable=False),
    sa.Column('winner', sa.String(length=100), nullable=False),
    sa.Column('dissenting_views', sa.Text(), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('debates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_debates_split'), ['split'], unique=False)
        batch_op.create_index(batch_op.f('ix_debates_vertical'), ['vertical'], unique=False)

    op.create_table('gauntlet_runs',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('response', sa.Text(), nullable=False),
    sa.Column('attack_type', sa.String(length=100), nullable=False),
    sa.Column('severity', sa.Float(), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('findings', sa.Text(), nullable=False),
    sa.Column('persona', sa.String(length=100), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('gauntlet_runs', schema=None) as batch_op:
        batch_op.create_index('ix_gauntlet_runs_attack_type', ['attack_type'], unique=False)

    op.create_table('critiques',
    sa.Column('debate_id', sa.String(length=200), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('agent', sa.String(length=100), nullable=False),
    sa.Column('target_agent', sa.String(length=100), nullable=False),
    sa.Column('issues', sa.Text(), nullable=False),
    sa.Column('suggestions', sa.Text(), nullable=False),
    sa.Column('severity', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['debate_id'], ['debates.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('debate_id', 'position')
    )
    op.create_table('debate_agents',
    sa.Column('debate_id', sa.String(length=200), nullable=False),
    sa.Column('agent', sa.String(length=100), nullable=False),
    sa.Column('final_round', sa.Integer(), nullable=False),
    sa.Column('vote_share', sa.Float(), nullable=False),
    sa.Column('is_winner', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['debate_id'], ['debates.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('debate_id', 'agent')
    )
    op.create_table('proposals',
    sa.Column('debate_id', sa.String(length=200), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('agent', sa.String(length=100), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['debate_id'], ['debates.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('debate_id', 'round', 'agent')
    )
    op.create_table('votes',
    sa.Column('debate_id', sa.String(length=200), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('agent', sa.String(length=100), nullable=False),
    sa.Column('choice', sa.String(length=100), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['debate_id'], ['debates.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('debate_id', 'position')
    )


def downgrade() -> None:
    op.drop_table('votes')
    op.drop_table('proposals')
    op.drop_table('debate_agents')
    op.drop_table('critiques')
    with op.batch_alter_table('gauntlet_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_gauntlet_runs_attack_type')

    op.drop_table('gauntlet_runs')
    with op.batch_alter_table('debates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_debates_vertical'))
        batch_op.drop_index(batch_op.f('ix_debates_split'))

    op.drop_table('debates')
