"""The administrators' users page: who may sign in, with which role, and whether they bound WeChat."""
