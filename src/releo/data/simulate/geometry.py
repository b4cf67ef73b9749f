"""Acquisition schedules and viewing geometry of Sentinel-2 and Sentinel-1 over the site.

Sentinel-2: one relative orbit, S2A and S2B alternating (5-day combined revisit), descending
overpass at 10:30 local solar time. Sun position from the solar declination (Spencer 1971,
"Fourier series representation of the position of the sun", Search 2(5), 172) and the hour
angle at the site latitude; the view zenith from the site's across-track distance to the ground
track on a spherical Earth, the view azimuth perpendicular to the track heading.

Sentinel-1: alternating ascending (S1A, relative orbit 30) and descending (S1C, relative orbit
110) IW passes; each orbit revisits every 12 days, the site every 6. The incidence angle grows
across the swath (29–46° over 250 km of IW ground range) in the right-looking direction; it is
computed per pixel from the ground distance to the nadir track, so it varies across the site
and differs between the two orbits (near and far parts of their swaths).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from releo.physics.sun import solar_declination

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class S2Orbit:
    """The S2 orbit that sees the site: its geometry and platforms."""

    relative_orbit: int = 51
    altitude_km: float = 786.0
    inclination_deg: float = 98.62
    across_track_km: float = 60.0  # site east (+) or west (−) of the ground track
    local_solar_time_h: float = 10.5
    platforms: tuple[str, ...] = ("S2A", "S2B")


@dataclass(frozen=True)
class S1Pass:
    """One S1 pass over the site: direction, platform, orbit and incidence."""

    direction: str
    platform: str
    relative_orbit: int
    centre_incidence_deg: float  # incidence at the site centre
    altitude_km: float = 693.0
    inclination_deg: float = 98.18


S2_ORBIT = S2Orbit()
S1_PASSES: tuple[S1Pass, ...] = (
    S1Pass("ascending", "S1A", 30, 41.0),
    S1Pass("descending", "S1C", 110, 33.5),
)


def acquisition_dates(
    anchor: date, revisit_days: int, first: date, last: date
) -> list[tuple[int, date]]:
    """``(k, anchor + k·revisit)`` for every k >= 0 that falls in [first, last].

    ``k`` indexes the acquisition in the site's whole schedule, so platforms alternate across data
    drops too.
    """
    k0 = max(0, -(-(first - anchor).days // revisit_days))
    out = []
    k = k0
    while (day := anchor + timedelta(days=k * revisit_days)) <= last:
        out.append((k, day))
        k += 1
    return out


def solar_position(
    day: date, latitude_deg: float, local_solar_time_h: float
) -> tuple[float, float]:
    """Sun zenith and azimuth (degrees, azimuth clockwise from north) at local solar time."""
    declination = solar_declination(day.timetuple().tm_yday)
    hour_angle = np.deg2rad(15.0 * (local_solar_time_h - 12.0))
    lat = np.deg2rad(latitude_deg)
    cos_zenith = np.sin(lat) * np.sin(declination) + np.cos(lat) * np.cos(declination) * np.cos(
        hour_angle
    )
    zenith = np.arccos(np.clip(cos_zenith, -1, 1))
    azimuth = np.arctan2(
        -np.sin(hour_angle) * np.cos(declination),
        (np.sin(declination) - np.sin(lat) * cos_zenith) / np.cos(lat),
    )
    return float(np.rad2deg(zenith)), float(np.rad2deg(azimuth) % 360)


def track_heading(inclination_deg: float, latitude_deg: float, ascending: bool) -> float:
    """Ground-track heading (degrees clockwise from north), ignoring Earth rotation."""
    offset = np.rad2deg(
        np.arcsin(np.cos(np.deg2rad(inclination_deg)) / np.cos(np.deg2rad(latitude_deg)))
    )
    return float((offset if ascending else 180.0 - offset) % 360)


def zenith_from_ground_distance(distance_km: np.ndarray | float, altitude_km: float) -> np.ndarray:
    """Zenith angle (degrees) of a satellite at ``altitude_km``, seen from the ground.

    The point lies ``distance_km`` (ground arc) from the satellite's nadir, on a spherical Earth.
    """
    gamma = np.asarray(distance_km, dtype=float) / EARTH_RADIUS_KM
    orbit = EARTH_RADIUS_KM + altitude_km
    return np.rad2deg(np.arctan2(orbit * np.sin(gamma), orbit * np.cos(gamma) - EARTH_RADIUS_KM))


def ground_distance_from_zenith(zenith_deg: float, altitude_km: float) -> float:
    """Inverse of :func:`zenith_from_ground_distance` (km)."""
    theta = np.deg2rad(zenith_deg)
    look = np.arcsin(EARTH_RADIUS_KM * np.sin(theta) / (EARTH_RADIUS_KM + altitude_km))
    return float(EARTH_RADIUS_KM * (theta - look))


def s2_acquisitions(
    anchor: date,
    revisit_days: int,
    first: date,
    last: date,
    latitude_deg: float,
    orbit: S2Orbit = S2_ORBIT,
) -> pd.DataFrame:
    """One row per S2 acquisition in [first, last].

    Each row holds the date, platform, relative orbit, sun and view zenith/azimuth and the relative
    azimuth (sun − view, [0, 360), 0 = hot-spot side).
    """
    heading = track_heading(orbit.inclination_deg, latitude_deg, ascending=False)
    view_zenith = float(zenith_from_ground_distance(abs(orbit.across_track_km), orbit.altitude_km))
    # The satellite's right-hand direction is heading + 90°, i.e. (cos h, −sin h) in (east,
    # north): an eastern site is on the right when cos h > 0. From a site on the right the
    # nadir track lies at heading − 90°, from one on the left at heading + 90°.
    right_of_track = (orbit.across_track_km > 0) == (np.cos(np.deg2rad(heading)) > 0)
    view_azimuth = (heading - 90.0) % 360 if right_of_track else (heading + 90.0) % 360
    rows = []
    for k, day in acquisition_dates(anchor, revisit_days, first, last):
        sun_zenith, sun_azimuth = solar_position(day, latitude_deg, orbit.local_solar_time_h)
        rows.append(
            {
                "date": pd.Timestamp(day),
                "index": k,
                "platform": orbit.platforms[k % len(orbit.platforms)],
                "relative_orbit": orbit.relative_orbit,
                "sun_zenith": sun_zenith,
                "sun_azimuth": sun_azimuth,
                "view_zenith": view_zenith,
                "view_azimuth": view_azimuth,
                "relative_azimuth": (sun_azimuth - view_azimuth) % 360,
            }
        )
    return pd.DataFrame(rows, columns=_S2_COLUMNS)


_S2_COLUMNS = (
    "date",
    "index",
    "platform",
    "relative_orbit",
    "sun_zenith",
    "sun_azimuth",
    "view_zenith",
    "view_azimuth",
    "relative_azimuth",
)


def s1_acquisitions(
    anchor: date,
    revisit_days: int,
    first: date,
    last: date,
    latitude_deg: float,
    passes: tuple[S1Pass, ...] = S1_PASSES,
) -> pd.DataFrame:
    """One row per S1 acquisition in [first, last].

    Each row holds the date, platform, orbit direction, relative orbit, centre incidence and the
    look azimuth (direction of increasing incidence).
    """
    rows = []
    for k, day in acquisition_dates(anchor, revisit_days, first, last):
        orbit = passes[k % len(passes)]
        heading = track_heading(orbit.inclination_deg, latitude_deg, orbit.direction == "ascending")
        rows.append(
            {
                "date": pd.Timestamp(day),
                "index": k,
                "platform": orbit.platform,
                "orbit_direction": orbit.direction,
                "relative_orbit": orbit.relative_orbit,
                "centre_incidence": orbit.centre_incidence_deg,
                "look_azimuth": (heading + 90.0) % 360,  # Sentinel-1 looks right
                "altitude_km": orbit.altitude_km,
            }
        )
    return pd.DataFrame(rows, columns=_S1_COLUMNS)


_S1_COLUMNS = (
    "date",
    "index",
    "platform",
    "orbit_direction",
    "relative_orbit",
    "centre_incidence",
    "look_azimuth",
    "altitude_km",
)


def incidence_raster(
    x: np.ndarray,
    y: np.ndarray,
    centre_incidence_deg: float,
    look_azimuth_deg: float,
    altitude_km: float,
) -> np.ndarray:
    """Incidence angle (degrees) of every pixel, (len(y), len(x)).

    The site centre sits at ``centre_incidence_deg``; the ground range grows along the look azimuth.
    """
    centre_distance = ground_distance_from_zenith(centre_incidence_deg, altitude_km)
    look = np.deg2rad(look_azimuth_deg)
    dx = (x - x.mean())[None, :]
    dy = (y - y.mean())[:, None]
    along_look_km = (dx * np.sin(look) + dy * np.cos(look)) / 1000.0
    return zenith_from_ground_distance(centre_distance + along_look_km, altitude_km)
