"""Idempotency records for the send API and the alert webhooks; where each message came from.

- ``idempotency_records``: per calling application, a hash of the caller's ``Idempotency-Key`` (or of
  a webhook notification's identity), a fingerprint of the request body, and the message it made.
  Unique per (application, key): of two identical requests only one is accepted. Kept until
  ``expires_at`` (a day for keys, minutes for webhook notifications), then pruned.
- ``messages.source``: how the message came in (``api``, ``alertmanager``, ``grafana``, ``wizard``);
  empty for messages accepted before it was recorded.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('idempotency_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('api_app_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['api_app_id'], ['api_apps.id'], name=op.f('fk_idempotency_records_api_app_id_api_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_idempotency_records_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_records')),
    sa.UniqueConstraint('api_app_id', 'key_hash', name='uq_idempotency_records_app_key')
    )
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_records_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_idempotency_records_message_id'), ['message_id'], unique=False)
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('source')
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_records_message_id'))
        batch_op.drop_index(batch_op.f('ix_idempotency_records_expires_at'))
    op.drop_table('idempotency_records')
