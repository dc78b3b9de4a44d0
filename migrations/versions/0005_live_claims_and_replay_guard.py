"""Claims with a live owner, token fetches outside transactions, replay keys for the timestamp window only.

- ``channel_config.version``: a counter raised by every save, read by every process per request.
- ``deliveries.claimed_by``: the claim (of a live process) that holds the row until ``claimed_until``.
- ``access_tokens.fetching_by``/``fetching_until``: the caller fetching a new token, for a short lease.
- ``callback_replay_guard``: what WeChat signed (timestamp and nonce) per request, kept for the
  timestamp window; ``callback_events`` keeps only the identity of each event (WeChat's retries).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 11:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('channel_config', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='1'))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_deliveries_claimed_by'), ['claimed_by'], unique=False)
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fetching_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('fetching_until', sa.DateTime(), nullable=True))
    op.create_table('callback_replay_guard',
    sa.Column('replay_key', sa.String(length=200), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('replay_key', name=op.f('pk_callback_replay_guard'))
    )
    with op.batch_alter_table('callback_replay_guard', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_replay_guard_at'), ['at'], unique=False)
    with op.batch_alter_table('callback_events', schema=None) as batch_op:
        batch_op.drop_constraint('uq_callback_events_nonce', type_='unique')
        batch_op.drop_column('nonce')


def downgrade() -> None:
    with op.batch_alter_table('callback_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nonce', sa.String(length=128), nullable=True))
        batch_op.create_unique_constraint('uq_callback_events_nonce', ['nonce'])
    with op.batch_alter_table('callback_replay_guard', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callback_replay_guard_at'))
    op.drop_table('callback_replay_guard')
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.drop_column('fetching_until')
        batch_op.drop_column('fetching_by')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_claimed_by'))
        batch_op.drop_column('claimed_by')
    with op.batch_alter_table('channel_config', schema=None) as batch_op:
        batch_op.drop_column('version')
