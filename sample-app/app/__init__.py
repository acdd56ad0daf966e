"""Sample FastAPI backend managed by a ScalableBackend."""
