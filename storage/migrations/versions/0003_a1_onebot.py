"""event keys that expire; outbox priority

Revision ID: 0003_a1_onebot
Revises: 0002_b_hostile
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_a1_onebot'
down_revision = '0002_b_hostile'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('processed_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_processed_event_expires_at'), ['expires_at'], unique=False)
    # Message keys of the old form (self_id and message id only) can never match a new
    # key: let the next prune remove them. Every other key stays for ever.
    op.execute("UPDATE processed_event SET expires_at = created_at WHERE key LIKE 'msg:%'")

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index('ix_outbox_status_priority', ['status', 'priority', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_status_priority')
        batch_op.drop_column('priority')

    with op.batch_alter_table('processed_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_processed_event_expires_at'))
        batch_op.drop_column('expires_at')
