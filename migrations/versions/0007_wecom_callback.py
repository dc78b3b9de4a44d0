"""The WeCom application's callback: its Token and EncodingAESKeys, and whose callback each attempt was.

- ``channel_config.wx_qy_token_enc``, ``wx_qy_encoding_aes_key_enc``,
  ``wx_qy_previous_encoding_aes_key_enc``: the application's 接收消息 server settings, encrypted;
  the previous key is the one in use before the last change (messages under it are still read).
- ``callback_attempts.channel``: ``mp`` (the Official Account's callback) or ``qywx`` (the WeCom
  application's); the rows already there are the Official Account's.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 12:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('channel_config', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wx_qy_token_enc', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('wx_qy_encoding_aes_key_enc', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('wx_qy_previous_encoding_aes_key_enc', sa.Text(), nullable=True))
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sa.String(length=8), nullable=False, server_default='mp'))


def downgrade() -> None:
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.drop_column('channel')
    with op.batch_alter_table('channel_config', schema=None) as batch_op:
        batch_op.drop_column('wx_qy_previous_encoding_aes_key_enc')
        batch_op.drop_column('wx_qy_encoding_aes_key_enc')
        batch_op.drop_column('wx_qy_token_enc')
