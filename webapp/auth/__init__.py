"""Signing in and out, roles, and the throttling of failed sign-ins."""
