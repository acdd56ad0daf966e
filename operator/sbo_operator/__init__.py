"""scalable-backend-operator: one ScalableBackend manifest becomes a production-grade backend stack."""

__version__ = "0.1.0"
