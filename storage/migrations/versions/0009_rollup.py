"""rollups: per unit and day, month and year, the standings' figures, kept by triggers

Revision ID: 0009_rollup
Revises: 0008_joint
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from storage import rollup


revision = '0009_rollup'
down_revision = '0008_joint'
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        'rollup',
        sa.Column('span', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('bucket', sa.Date(), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=False),
        sa.Column('submitted', sa.Integer(), nullable=False),
        sa.Column('adopted_county', sa.Integer(), nullable=False),
        sa.Column('adopted_city', sa.Integer(), nullable=False),
        sa.Column('adopted_province', sa.Integer(), nullable=False),
        sa.Column('adopted_national', sa.Integer(), nullable=False),
        sa.Column('instructions', sa.Integer(), nullable=False),
        sa.Column('points', sa.Float(), nullable=False),
        sa.Column('points_rows', sa.Integer(), nullable=False),
        sa.Column('topics_missed', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('span', 'bucket', 'unit_id'),
        sqlite_with_rowid=False,
    )
    op.create_index('ix_draft_piece_at', 'draft', ['piece_at'], unique=False)
    op.create_index('ix_adoption_at', 'adoption', ['at'], unique=False)
    # The fill and the triggers are storage.rollup's (one definition of what a rollup
    # holds); a later change of it comes with a migration that drops and recreates them.
    for statement in rollup.rebuild_statements(dialect) + rollup.trigger_statements(dialect):
        op.execute(statement)


def downgrade() -> None:
    for statement in rollup.drop_trigger_statements(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_index('ix_adoption_at', table_name='adoption')
    op.drop_index('ix_draft_piece_at', table_name='draft')
    op.drop_table('rollup')
