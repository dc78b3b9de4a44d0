"""Delivery: storing accepted messages, sending them to WeChat exactly once, retrying what failed for a while."""
