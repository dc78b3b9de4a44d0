"""Callback bookkeeping: messages seen (nonce and identity, against replays and retries) and the outcome of recent requests.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 11:56:24.041036
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('callback_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('remote_addr', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_attempts'))
    )
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_attempts_at'), ['at'], unique=False)

    op.create_table('callback_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('nonce', sa.String(length=128), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('reply', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_events')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_callback_events_dedupe_key')),
    sa.UniqueConstraint('nonce', name=op.f('uq_callback_events_nonce'))
    )
    with op.batch_alter_table('callback_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_events_received_at'), ['received_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('callback_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callback_events_received_at'))

    op.drop_table('callback_events')
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callback_attempts_at'))

    op.drop_table('callback_attempts')
