"""Binding: people connect their WeChat (Official Account QR scan, or WeCom login) to their account here."""
