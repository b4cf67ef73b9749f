"""Site build benchmark: `releo site build` on the real Belgian S2 + S1 series.

Run with `make bench-site` (or `.venv/bin/python benchmarks/site_build.py`). Each real site is
built from its NetCDF files (S2 10 m + 20 m, S1, AgERA5 meteo) for its whole period, in a
fresh process so that peak memory is its own; the peer is the I/O floor measured in the same
run: opening the same S2 and S1 files with xarray and writing them as releo cubes, without
conversion, SNAP or gates. Writes benchmarks/results/site_build.json and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import report

REAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "real_timeseries"

BUILD = """
import json, resource, sys, time
from pathlib import Path
from releo.data.build import build_site
folder, out = Path(sys.argv[1]), Path(sys.argv[2])
steps, t0 = {}, time.perf_counter()
def progress(msg, last=[time.perf_counter(), "start"]):
    now = time.perf_counter()
    steps[last[1]] = now - last[0]
    last[:] = [now, msg.split(":")[0].split(" /")[0]]
files = {f.name.split("_")[0]: f for f in folder.glob("*.nc")}
record = build_site(
    s2=sorted(folder.glob("S2_L2A_*.nc")), s1=[files["S1"]], meteo=files["AgERA5"],
    s1_incidence=39.0, s2_platform="S2A", out=out, context_root=out.parent / "gx",
    progress=progress,
)
progress("end")
print(json.dumps({
    "seconds": time.perf_counter() - t0, "steps": steps,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "s2_dates": record.s2.acquisitions, "s1_dates": record.s1.acquisitions,
}))
"""

FLOOR = """
import json, resource, sys, time
from pathlib import Path
import xarray as xr
from releo.data.io import write_cube
folder, out = Path(sys.argv[1]), Path(sys.argv[2])
t0 = time.perf_counter()
for f in sorted(folder.glob("S[12]_*.nc")):
    ds = xr.open_dataset(f, mask_and_scale=False, decode_coords="all").load()
    for v in ds.variables.values():  # packing attributes stay undecoded: raw bytes only
        v.attrs, v.encoding = {}, {}
    write_cube(ds.rename(timestamp="time").rio.write_crs("EPSG:32631"), out / (f.stem + ".zarr"))
print(json.dumps({
    "seconds": time.perf_counter() - t0,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def measure(script: str, folder: Path, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="builds per site (best kept)")
    parser.parse_args()
    sites = sorted(REAL.glob("worldcereal_*"))
    if not sites:
        sys.exit(f"{REAL}: the real series are not on this machine")
    results: dict = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for folder in sites:
            name = folder.name.removeprefix("worldcereal_")
            build = measure(BUILD, folder, Path(tmp) / name / "data")
            floor = measure(FLOOR, folder, Path(tmp) / name / "floor")
            results[f"{name}_s2_dates"] = build["s2_dates"]
            results[f"{name}_s1_dates"] = build["s1_dates"]
            results[f"{name}_build_seconds"] = round(build["seconds"], 2)
            results[f"{name}_build_peak_rss_mb"] = round(build["peak_rss_mb"], 1)
            results[f"{name}_io_floor_seconds"] = round(floor["seconds"], 2)
            results[f"{name}_io_floor_peak_rss_mb"] = round(floor["peak_rss_mb"], 1)
            results[f"{name}_build_vs_io_floor"] = round(build["seconds"] / floor["seconds"], 2)
            for step, seconds in build["steps"].items():
                if step not in ("start", "end"):
                    results[f"{name}_step_{step.replace(' ', '_')}_seconds"] = round(seconds, 2)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    report("site_build", results)


if __name__ == "__main__":
    main()
