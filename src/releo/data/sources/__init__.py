"""Readers of real product formats (ESA SAFE, Theia/MAJA, …) into releo's contract cubes."""

from releo.data.sources.safe import read_safe
from releo.data.sources.theia import read_theia

__all__ = ["read_safe", "read_theia"]
