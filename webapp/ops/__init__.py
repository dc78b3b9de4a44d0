"""Operations endpoints for monitoring systems (``/metrics``)."""
