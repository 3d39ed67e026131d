"""Argument checks shared by every public entry point, with nilearn-style messages."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["check_choice"]


def check_choice(name: str, value, allowed: Iterable):
    """Return ``value`` if it is one of ``allowed``, else raise a ``ValueError`` that says so.

    >>> check_choice("axis", "sagittal", ("sagittal", "coronal", "axial"))
    'sagittal'

    The message reads ``'axis' must be one of ['sagittal', ...]; 'oblique' was provided.``
    """
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"'{name}' must be one of {allowed}; {value!r} was provided.")
    return value
