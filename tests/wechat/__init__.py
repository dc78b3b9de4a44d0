"""Tests of the WeChat protocol package (webapp/wechat)."""
