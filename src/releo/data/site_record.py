"""``site.json`` of a site built from real products: what it holds, as a pydantic model.

The simulator writes its own, richer ``site.json`` (its configuration and truth, no ``kind``);
a real site's is validated against :class:`SiteRecord` by ``releo validate site``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Bounds = tuple[float, float, float, float]


class Period(BaseModel):
    """Dates from ``start`` to ``end``, both included."""

    start: dt.date
    end: dt.date


class SourceRecord(BaseModel):
    """Where one sensor's cube came from and what was done to it."""

    model_config = ConfigDict(extra="allow")

    reader: str = Field(description="the reader used: stac, safe, theia, cube or files")
    sources: list[str] = Field(description="the paths or URLs given to --s2/--s1")
    acquisitions: int = Field(description="time steps in the site's cube")
    first: dt.datetime
    last: dt.datetime
    attrs: dict[str, Any] = Field(
        default_factory=dict,
        description="what the reader recorded: product ids, processing baselines, conversions",
    )


class IncidenceRecord(BaseModel):
    """Where an S1 cube's incidence angle came from: its product, or the user."""

    source: Literal["product", "user"]
    value_deg: float | None = Field(None, description="the stated angle, when source is user")


class SiteRecord(BaseModel):
    """``site.json`` of a site built from real products."""

    kind: Literal["real"] = "real"
    name: str
    crs: str
    bounds: Bounds = Field(description="(xmin, ymin, xmax, ymax) of the S2 grid, site CRS")
    pixel_size_m: float = 10.0
    period: Period
    s2: SourceRecord
    s1: SourceRecord
    s1_incidence: IncidenceRecord
    s1_stated: dict[str, Any] = Field(
        default_factory=dict,
        description="S1 quantity, units, orbit direction or relative orbit stated by the user",
    )
    s2_platform_stated: str | None = Field(
        None, description="platform stated by the user where the products do not say it"
    )
    reference: dict[str, str] = Field(
        default_factory=lambda: {"product": "SNAP biophysical processor LAI", "version": ""}
    )
    surveys: str | None = None
    meteo: str | None = None
    built: dt.datetime
