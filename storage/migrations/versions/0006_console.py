"""web console: one-time login links and sessions

Revision ID: 0006_console
Revises: 0005_p_postgres
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006_console'
down_revision = '0005_p_postgres'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'console_login',
        sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('used_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['member_id'], ['member.id']),
        sa.PrimaryKeyConstraint('token_hash'),
    )
    with op.batch_alter_table('console_login', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_login_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_console_login_expires_at'), ['expires_at'], unique=False)

    op.create_table(
        'console_session',
        sa.Column('id_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['member.id']),
        sa.PrimaryKeyConstraint('id_hash'),
    )
    with op.batch_alter_table('console_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_session_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_console_session_last_seen_at'), ['last_seen_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('console_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_session_last_seen_at'))
        batch_op.drop_index(batch_op.f('ix_console_session_member_id'))
    op.drop_table('console_session')
    with op.batch_alter_table('console_login', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_login_expires_at'))
        batch_op.drop_index(batch_op.f('ix_console_login_member_id'))
    op.drop_table('console_login')
