"""WeChat's server callback: URL verification and pushed events, in plaintext, compatible and safe mode."""
