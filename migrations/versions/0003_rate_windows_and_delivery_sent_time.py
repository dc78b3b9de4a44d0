"""Per-application rate windows for the send API, and the time each delivery was sent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 12:28:59.450067
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_windows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('api_app_id', sa.Integer(), nullable=False),
    sa.Column('window_start', sa.DateTime(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['api_app_id'], ['api_apps.id'], name=op.f('fk_rate_windows_api_app_id_api_apps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rate_windows')),
    sa.UniqueConstraint('api_app_id', 'window_start', name='uq_rate_windows_app_window')
    )
    with op.batch_alter_table('rate_windows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rate_windows_window_start'), ['window_start'], unique=False)

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sent_at', sa.DateTime(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('sent_at')

    with op.batch_alter_table('rate_windows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rate_windows_window_start'))

    op.drop_table('rate_windows')
