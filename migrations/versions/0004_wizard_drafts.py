"""The set-up wizard's drafts: one per administrator, secrets encrypted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('wizard_drafts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('step', sa.String(length=16), nullable=False),
    sa.Column('wx_type', sa.String(length=8), nullable=True),
    sa.Column('answers', sa.JSON(), nullable=True),
    sa.Column('secrets_enc', sa.Text(), nullable=True),
    sa.Column('checks', sa.JSON(), nullable=True),
    sa.Column('prefilled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_wizard_drafts_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wizard_drafts')),
    sa.UniqueConstraint('user_id', name=op.f('uq_wizard_drafts_user_id'))
    )
    with op.batch_alter_table('wizard_drafts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wizard_drafts_state'), ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('wizard_drafts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_wizard_drafts_state'))

    op.drop_table('wizard_drafts')
