"""Readers of real product formats (ESA SAFE, Theia/MAJA, …) into releo's contract cubes."""

from releo.data.sources.s1 import read_s1_files
from releo.data.sources.safe import read_safe
from releo.data.sources.stac import read_stac_s1, read_stac_s2
from releo.data.sources.theia import read_theia

__all__ = ["read_s1_files", "read_safe", "read_stac_s1", "read_stac_s2", "read_theia"]
