"""The send API for calling programs, and the applications allowed to call it."""
