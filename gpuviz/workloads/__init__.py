"""Instrumented training entry points that run under torchrun (``gpuviz.launch``)."""
