"""Namespace-agnostic look-ups in product metadata XML, with errors naming file and element."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from releo.data.errors import DataError


def parse(file: Path) -> ET.Element:
    """Root of a metadata file (local product metadata, not untrusted network input)."""
    if not file.is_file():
        raise DataError(f"{file}: metadata file not found")
    try:
        return ET.parse(file).getroot()
    except ET.ParseError as err:
        raise DataError(f"{file}: malformed XML: {err}") from err


def find(node: ET.Element, path: str, file: Path) -> ET.Element:
    """First element at ``path`` (``a/b``, any depth below ``node``, any namespace) or error."""
    found = node.find(_xpath(path))
    if found is None:
        raise DataError(f"{file}: missing element {path}")
    return found


def find_all(node: ET.Element, path: str) -> list[ET.Element]:
    return node.findall(_xpath(path))


def text(node: ET.Element, path: str, file: Path) -> str:
    value = (find(node, path, file).text or "").strip()
    if not value:
        raise DataError(f"{file}: element {path} is empty")
    return value


def number(node: ET.Element, path: str, file: Path) -> float:
    value = text(node, path, file)
    try:
        return float(value)
    except ValueError as err:
        raise DataError(f"{file}: element {path} is not a number: {value!r}") from err


def optional_text(node: ET.Element, path: str) -> str | None:
    found = node.find(_xpath(path))
    return (found.text or "").strip() or None if found is not None else None


def _xpath(path: str) -> str:
    # {*} matches the tag with or without a namespace (ESA prefixes only the top elements)
    steps = "/".join(
        step if step.startswith(("[", ".")) else "{*}" + step for step in path.split("/")
    )
    return ".//" + steps


def utc_time(node: ET.Element, path: str, file: Path) -> pd.Timestamp:
    """A time element as a naive UTC timestamp (ns)."""
    value = text(node, path, file)
    try:
        time = pd.Timestamp(value)
    except ValueError as err:
        raise DataError(f"{file}: element {path} is not a time: {value!r}") from err
    if time.tzinfo is not None:
        time = time.tz_convert("UTC").tz_localize(None)
    return time.as_unit("ns")
