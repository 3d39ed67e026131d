"""The package version (one literal, read by setuptools and by saved models)."""

__version__ = "0.1.0"
