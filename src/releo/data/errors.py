"""Errors raised by releo's data layer."""

from __future__ import annotations


class DataError(ValueError):
    """Input or stored data is missing, malformed or corrupt; the message names the file."""
