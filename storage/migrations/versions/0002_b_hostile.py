"""file_job.attempts: a file job is tried a bounded number of times

Revision ID: 0002_b_hostile
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_b_hostile'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('file_job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('file_job', schema=None) as batch_op:
        batch_op.drop_column('attempts')
