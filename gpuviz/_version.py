"""The package version, in one place (the tracer records it in every rank's metadata)."""

__version__ = "0.1.0"
