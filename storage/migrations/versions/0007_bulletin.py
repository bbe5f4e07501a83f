"""county bulletin: issues and their pieces

Revision ID: 0007_bulletin
Revises: 0006_console
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007_bulletin'
down_revision = '0006_console'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'bulletin_issue',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('year', sa.Integer(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('printed_at', sa.DateTime(), nullable=True),
        sa.Column('printed_by', sa.Integer(), nullable=True),
        sa.Column('file_path', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('corrected_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['created_by'], ['member.id']),
        sa.ForeignKeyConstraint(['printed_by'], ['member.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('year', 'kind', 'number'),
    )
    with op.batch_alter_table('bulletin_issue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bulletin_issue_status'), ['status'], unique=False)

    op.create_table(
        'bulletin_entry',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('issue_id', sa.Integer(), nullable=False),
        sa.Column('draft_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('form', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('added_at', sa.DateTime(), nullable=False),
        sa.Column('added_by', sa.Integer(), nullable=True),
        sa.Column('replaced_at', sa.DateTime(), nullable=True),
        sa.Column('replaced_by', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['issue_id'], ['bulletin_issue.id']),
        sa.ForeignKeyConstraint(['draft_id'], ['draft.id']),
        sa.ForeignKeyConstraint(['added_by'], ['member.id']),
        sa.ForeignKeyConstraint(['replaced_by'], ['draft.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('issue_id', 'draft_id'),
    )
    with op.batch_alter_table('bulletin_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bulletin_entry_issue_id'), ['issue_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_bulletin_entry_draft_id'), ['draft_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('bulletin_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bulletin_entry_draft_id'))
        batch_op.drop_index(batch_op.f('ix_bulletin_entry_issue_id'))
    op.drop_table('bulletin_entry')
    with op.batch_alter_table('bulletin_issue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bulletin_issue_status'))
    op.drop_table('bulletin_issue')
