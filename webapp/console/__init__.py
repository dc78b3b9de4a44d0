"""The administrators' console."""
