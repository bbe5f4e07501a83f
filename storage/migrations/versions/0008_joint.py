"""joint adoptions: an adoption credited to another unit's draft merged into it

Revision ID: 0008_joint
Revises: 0007_bulletin
"""
from alembic import op
import sqlalchemy as sa


revision = '0008_joint'
down_revision = '0007_bulletin'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER, no batch rebuild (as in 0004): the reference inline on SQLite.
    if op.get_bind().dialect.name == 'sqlite':
        op.execute("ALTER TABLE adoption ADD COLUMN joint_of INTEGER REFERENCES adoption (id)")
    else:
        op.add_column('adoption', sa.Column('joint_of', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_adoption_joint_of', 'adoption', 'adoption', ['joint_of'], ['id'])
    op.create_index('ix_adoption_joint_of', 'adoption', ['joint_of'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_adoption_joint_of', table_name='adoption')
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint('fk_adoption_joint_of', 'adoption', type_='foreignkey')
    with op.batch_alter_table('adoption', schema=None) as batch_op:
        batch_op.drop_column('joint_of')
