"""Tests of the WeChat simulator, over real HTTP against its standalone app."""
