"""First-run set-up and the set-up wizard: until an administrator exists, every page leads here."""
