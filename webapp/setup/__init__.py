"""First-run set-up: until an administrator exists, every page leads here."""
