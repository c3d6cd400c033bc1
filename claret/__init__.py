"""Claret: an open, Clara Deploy-compatible platform that runs GPU pipelines of containers."""

__version__ = "0.1.0"
