"""The ScalableBackend API: pydantic models that are the single source for the CRD schema."""
