"""Storage: cubes as sharded Zarr v3, tables as CSV/Parquet, every write atomic.

On-disk layout of a cube ``<name>.zarr/`` (two files per variable, so DVC stays fast)::

    zarr.json          root group: dataset attrs + the integrity manifest (``releo_manifest``)
    <var>/zarr.json    array metadata, one per data variable and coordinate
    <var>/c/0/0/0      one shard holding the whole (..., y, x) variable; split into rows, then
                       columns of releo chunks only above 64 MiB
    <coord>/c/0        1-D coordinates and per-date variables: a single chunk

Inner chunks of a ``(..., y, x)`` variable are one releo chunk window (``chunk_m``, 1 km = 100
px at 10 m by default) x all dates, so reading one chunk reads only its own inner chunks (a
byte range of the shard each). S2 reflectance and S1 backscatter are compressed with Blosc
LZ4 + shuffle (~15 % fewer bytes than zstd on such noisy data, 2-3x faster to read), the
rest with zstd.

S2 reflectance bands are stored like real L2A products (processing baseline >= 04.00):
uint16 with ``scale_factor`` 1e-4, ``add_offset`` -0.1 and ``_FillValue`` 65535 for NaN, so
the quantisation error is at most 5e-5. Other float data variables are float32 (float16 ones,
e.g. embeddings, stay float16); coordinates keep their dtype. Georeferencing is CF (a
``spatial_ref`` grid-mapping coordinate written by rioxarray). Output bytes are a pure
function of the input: no timestamps, no random names, no consolidated metadata.

The manifest lists every file of the store (except the root ``zarr.json``) with its size and
SHA-256; :func:`open_cube` checks it because Zarr silently reads a deleted shard as fill values.
``open_cube(path, lazy=True)`` gives a dask-backed cube (dask chunks = inner chunks) whose
reads touch only the inner chunks they need: for streaming a cube larger than memory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from releo.data.contracts import S1_POLARISATIONS, S2_BANDS
from releo.data.errors import DataError

__all__ = ["open_cube", "read_table", "write_cube", "write_table"]

MANIFEST_ATTR = "releo_manifest"
"""Root attribute of a cube: ``{"version": 1, "files": {relative path: [size, sha256]}}``."""

REFLECTANCE_SCALE = 1e-4
REFLECTANCE_OFFSET = -0.1
"""L2A packing since processing baseline 04.00 (BOA_ADD_OFFSET = -1000 DN)."""
_UINT16_FILL = 65535
_UINT16_MAX_VALUE = REFLECTANCE_OFFSET + (_UINT16_FILL - 1) * REFLECTANCE_SCALE

DEFAULT_CHUNK_M = 1000.0
"""Side of releo's chunks (``params.yaml: chunks.size_m``) that inner chunks follow by default."""
_MAX_SHARD_BYTES = 64 * 2**20  # a shard is written whole: the memory of writing one
_MAX_INNER_BYTES = 64 * 2**20
_INNER_CHUNK_PX = 256
_MIN_CHUNK_PX = 16
_ZSTD_LEVEL = 5
_READ_THREADS = 4
_GRID_MAPPING = "spatial_ref"


# --------------------------------------------------------------------------------------- cubes


def write_cube(
    ds: xr.Dataset, path: str | os.PathLike[str], *, chunk_m: float = DEFAULT_CHUNK_M
) -> Path:
    """Write ``ds`` to a sharded Zarr v3 cube at ``path``, atomically; return the path.

    The cube is written to a temporary sibling directory and renamed over ``path`` only once
    complete, so a failure leaves any previous cube intact. A dataset with ``x``/``y`` dims
    must carry a CRS (``ds.rio.write_crs``). Inner chunks of ``(..., y, x)`` variables are
    ``chunk_m`` x ``chunk_m`` windows (the pipeline's chunk size) x all dates.
    """
    target = Path(path)
    prepared, encoding = prepare_cube(ds, target, chunk_m)
    with atomic_dir(target) as tmp, warnings.catch_warnings():
        # zarr warns that its "string" dtype has no final v3 spec yet; the platform
        # coordinate needs it and zarr-python reads it back, so the warning is noise here.
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        # dask-backed variables: one shard at a time (each is encoded in float64 by xarray)
        with dask.config.set(scheduler="synchronous"):
            prepared.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False, encoding=encoding)
        write_manifest(tmp)
    return target


def open_cube(
    path: str | os.PathLike[str], *, verify_checksums: bool = False, lazy: bool = False
) -> xr.Dataset:
    """Open a cube written by :func:`write_cube`, eagerly into memory unless ``lazy``.

    Eager by default because :func:`write_cube` may later replace the directory under a lazy
    reader. Reflectance comes back as float32 with NaN, the CRS via ``ds.rio.crs``. With
    ``lazy`` the data variables are dask arrays chunked like the stored inner chunks (the
    same values once computed): for streaming cubes larger than memory, chunk by chunk.
    Every file is checked against the manifest (presence and size; SHA-256 too with
    ``verify_checksums``): a missing, truncated or corrupt cube raises :class:`DataError`
    naming the path and the problem.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no Zarr cube here (missing directory)")
    manifest = _read_manifest(root)
    problems = _check_manifest(root, manifest, verify_checksums)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DataError(f"{root}: cube is incomplete or corrupt: {'; '.join(problems[:5])}{more}")
    try:
        if lazy:
            ds = xr.open_zarr(
                root, consolidated=False, decode_coords="all", chunks={}, zarr_format=3
            )
        else:
            with xr.open_zarr(
                root, consolidated=False, decode_coords="all", chunks=None, zarr_format=3
            ) as backed:
                ds = _load(root, backed)
    except Exception as err:  # corrupt bytes surface as many zarr/numcodecs/json error types
        raise DataError(f"{root}: cannot read cube: {type(err).__name__}: {err}") from err
    return _decode_cube(ds)


def _load(root: Path, backed: xr.Dataset) -> xr.Dataset:
    """Load ``backed`` (lazily opened by xarray) into memory, the large arrays fast.

    xarray decodes uint16 reflectance to float64 in several full passes (mask, scale, offset,
    then the cast to float32): 5x slower than reading the shards. Here the S2 bands are
    decoded in float32 by steps checked, for all 65,536 stored values, to give bit-identical
    results; other numeric arrays that need no decoding are read straight from Zarr. Arrays
    are read in a few threads (decompression and numpy release the GIL).
    """
    group = zarr.open_group(root, mode="r", zarr_format=3)
    direct = [
        name
        for name, var in backed.data_vars.items()
        if isinstance(name, str) and _direct_read(name, var)
    ]

    def read(name: str) -> np.ndarray:
        stored = group[name]
        if not isinstance(stored, zarr.Array):
            raise DataError(f"{root}: {name} is a Zarr group, not an array")
        raw = np.asarray(stored[...])
        var = backed[name]
        if "scale_factor" in var.encoding:
            return _decode_reflectance(raw, var.encoding)
        return raw

    with ThreadPoolExecutor(min(_READ_THREADS, max(1, len(direct)))) as pool:
        arrays = dict(zip(direct, pool.map(read, direct), strict=True))
    loaded = backed.assign({n: backed[n].variable.copy(data=a) for n, a in arrays.items()})
    return loaded.load()


def _direct_read(name: str, var: xr.DataArray) -> bool:
    """Whether ``var`` can bypass xarray's decoding (same values, same dtype)."""
    if var.ndim < 2:
        return False
    enc = var.encoding
    if "scale_factor" in enc or "add_offset" in enc:
        # S2 reflectance only: xarray's decoding is then cast to float32 by _decode_cube
        return (
            name in S2_BANDS
            and np.dtype(enc.get("dtype")) == np.uint16
            and enc.get("_FillValue") == _UINT16_FILL
        )
    if any(k in enc for k in ("units", "calendar")):  # CF times/durations: xarray decodes them
        return False
    fill = enc.get("_FillValue")
    # NaN fill values decode to NaN (a no-op); an integer one would turn the array to float
    no_mask = fill is None or (var.dtype.kind == "f" and np.isnan(fill))
    return no_mask and var.dtype.kind in "fiub" and np.dtype(enc.get("dtype")) == var.dtype


@functools.cache
def _lut(scale: float, offset: float) -> np.ndarray:
    # Exactly xarray's CF decoding: mask the fill, x * scale + offset in float64, then float32.
    values = np.arange(2**16, dtype=np.float64)
    values *= scale
    values += offset
    table = values.astype(np.float32)
    table[_UINT16_FILL] = np.float32(np.nan)
    table.setflags(write=False)
    return table


@functools.cache
def _float32_steps(scale: float, offset: float) -> tuple[np.float32, np.float32] | None:
    """``(shift, divisor)`` that decode stored values in two float32 passes, or None.

    ``(v - shift) / divisor`` in float32 must equal the decoding table for every stored value (true
    for L2A's 1e-4 and -0.1: integers and one rounded division); None where no such pair exists. Two
    float32 passes are 3x faster than a table look-up.
    """
    if scale <= 0:
        return None
    shift, divisor = np.float32(round(-offset / scale)), np.float32(round(1 / scale))
    values = np.arange(_UINT16_FILL, dtype=np.uint16)
    steps = np.subtract(values, shift, dtype=np.float32) / divisor
    return (shift, divisor) if np.array_equal(steps, _lut(scale, offset)[:_UINT16_FILL]) else None


def _decode_reflectance(raw: np.ndarray, encoding: dict) -> np.ndarray:
    """float32 reflectance of stored uint16, bit-identical to xarray's decoding + cast."""
    scale = float(encoding.get("scale_factor", 1.0))
    offset = float(encoding.get("add_offset", 0.0))
    steps = _float32_steps(scale, offset)
    if steps is None:
        return _lut(scale, offset)[raw]
    out = np.subtract(raw, steps[0], dtype=np.float32)
    np.divide(out, steps[1], out=out)
    np.copyto(out, np.float32(np.nan), where=raw == _UINT16_FILL)
    return out


def prepare_cube(
    ds: xr.Dataset, target: Path, chunk_m: float = DEFAULT_CHUNK_M
) -> tuple[xr.Dataset, dict[str, dict]]:
    """Return the dataset as it will be stored and its per-variable Zarr encoding."""
    if not isinstance(ds, xr.Dataset):
        raise DataError(f"{target}: write_cube needs an xarray.Dataset, got {type(ds).__name__}")
    # Encodings inherited from a source file (scale factors, chunks, shards) would clash with
    # the layout chosen here; drop them so the output depends on the values only.
    out = ds.drop_encoding()
    out.attrs.pop(MANIFEST_ATTR, None)
    spatial = "x" in out.dims and "y" in out.dims
    if spatial:
        crs = out.rio.crs
        if crs is None:
            raise DataError(f"{target}: the dataset has x/y dims but no CRS (ds.rio.write_crs)")
        out = out.rio.write_crs(crs, grid_mapping_name=_GRID_MAPPING)
        out = out.rio.write_transform(out.rio.transform(recalc=True))
        out = out.rio.write_coordinate_system()
        for var in out.data_vars.values():
            var.encoding.pop("grid_mapping", None)
            if "x" in var.dims and "y" in var.dims:
                var.attrs["grid_mapping"] = _GRID_MAPPING

    chunk_px = _chunk_px(out, chunk_m)
    encoding: dict[str, dict] = {}
    for name in list(out.variables):
        if not isinstance(name, str):
            raise DataError(f"{target}: variable names must be strings, got {name!r}")
        var = out.variables[name]
        enc: dict = {"compressors": _compressors(name)}
        if var.dtype.kind in "UT" or (var.dtype.kind == "O" and _all_str(var.values)):
            # object strings map to zarr's variable-length "string" dtype
            var = var.astype(object)
            out[name] = var
        is_coord = name in out.coords
        if name in S2_BANDS and var.dtype.kind == "f" and not is_coord:
            if _fits_uint16(var):
                enc.update(
                    dtype="uint16",
                    scale_factor=REFLECTANCE_SCALE,
                    add_offset=REFLECTANCE_OFFSET,
                    _FillValue=_UINT16_FILL,
                )
            else:
                # Wrapping or clipping would hide bad input from the quality gates.
                warnings.warn(
                    f"{target}: {name} has values outside the uint16 reflectance range "
                    f"[{REFLECTANCE_OFFSET}, {_UINT16_MAX_VALUE:.4f}]; stored as float32",
                    stacklevel=3,
                )
                enc.update(dtype="float32", _FillValue=np.float32(np.nan))
        elif var.dtype == np.float16 and not is_coord:
            # half precision is a deliberate choice (e.g. embeddings): keep it
            enc.update(dtype="float16", _FillValue=np.float16(np.nan))
        elif var.dtype.kind == "f" and not is_coord:
            enc.update(dtype="float32", _FillValue=np.float32(np.nan))
        itemsize = np.dtype(enc.get("dtype", var.dtype)).itemsize if var.dtype.kind != "O" else 8
        if var.ndim == 1:
            enc["chunks"] = var.shape
        elif var.ndim >= 2 and var.dims[-2:] == ("y", "x"):
            enc["chunks"], enc["shards"] = _window_chunks_and_shards(var.shape, itemsize, chunk_px)
        elif var.ndim >= 2:
            enc["chunks"], enc["shards"] = _chunks_and_shards(var.shape, itemsize)
        blocks = enc.get("shards", enc.get("chunks"))
        if var.chunks is not None and blocks:
            # dask-backed (lazy) data is written one shard per task: memory holds one
            out[name] = var.chunk(dict(zip(var.dims, blocks, strict=True)))
        encoding[name] = enc
    return out, encoding


def _compressors(name: str) -> list:
    """Zarr compressors of variable ``name``: Blosc LZ4 for noisy observations, else zstd.

    Blosc LZ4 + shuffle suits noisy observations (S2 reflectance, S1 backscatter): ~15 % fewer bytes
    than zstd and 2-3x faster to read. zstd packs the rest (masks, truth fields, products), smooth
    fields, 3-7x better.
    """
    if name in S2_BANDS:  # uint16: bit shuffle groups the noisy low bits apart
        return [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")]
    if name in S1_POLARISATIONS:
        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
    return [ZstdCodec(level=_ZSTD_LEVEL)]


def _chunk_px(ds: xr.Dataset, chunk_m: float) -> int:
    """Pixels per side of a ``chunk_m`` chunk on the grid of ``ds``.

    A generic tile size where the chunk is not a whole number of (at least 16) pixels.
    """
    if "x" not in ds.coords or ds.sizes.get("x", 0) < 2:
        return _INNER_CHUNK_PX
    res = abs(float(ds.x.values[1] - ds.x.values[0]))
    n = chunk_m / res if res > 0 else 0.0
    if abs(n - round(n)) > 1e-6 or round(n) < _MIN_CHUNK_PX:
        return _INNER_CHUNK_PX
    return round(n)


def _window_chunks_and_shards(
    shape: tuple[int, ...], itemsize: int, chunk_px: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Inner chunks of all dates x one chunk window; one shard for the variable if it fits.

    Leading dims (time) are halved only if an inner chunk would exceed 64 MiB; shards split
    into rows of windows, then columns, so a shard is a band of whole chunks.
    """
    spatial = [max(1, min(n, chunk_px)) for n in shape[-2:]]
    lead = [max(1, n) for n in shape[:-2]]
    for dim in range(len(lead)):
        while lead[dim] > 1 and math.prod(lead) * math.prod(spatial) * itemsize > _MAX_INNER_BYTES:
            lead[dim] = math.ceil(lead[dim] / 2)
    inner = lead + spatial
    n_chunks = [max(1, math.ceil(n / c)) for n, c in zip(shape, inner, strict=True)]
    chunk_bytes = math.prod(inner) * itemsize
    order = [len(shape) - 2, len(shape) - 1, *range(len(shape) - 2)]
    for dim in order:
        while n_chunks[dim] > 1 and math.prod(n_chunks) * chunk_bytes > _MAX_SHARD_BYTES:
            n_chunks[dim] = math.ceil(n_chunks[dim] / 2)
    shards = [n * c for n, c in zip(n_chunks, inner, strict=True)]
    return tuple(inner), tuple(shards)


def _all_str(values: np.ndarray) -> bool:
    return all(isinstance(v, str) for v in np.asarray(values).ravel())


def _fits_uint16(var: xr.Variable) -> bool:
    finite = var.where(np.isfinite(var))  # streamed over the blocks of dask-backed data
    lo, hi = (float(v) for v in dask.compute(finite.min(), finite.max()))
    if math.isnan(lo):  # no finite value
        return True
    # half a quantum of slack: values that round onto the end points are still representable
    half = REFLECTANCE_SCALE / 2
    return lo >= REFLECTANCE_OFFSET - half and hi <= _UINT16_MAX_VALUE + half


def _chunks_and_shards(
    shape: tuple[int, ...], itemsize: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Inner chunks of one date x 256 x 256; one shard for the whole variable if it fits."""
    inner = [1] * (len(shape) - 2) + [max(1, min(n, _INNER_CHUNK_PX)) for n in shape[-2:]]
    n_chunks = [max(1, math.ceil(n / c)) for n, c in zip(shape, inner, strict=True)]
    chunk_bytes = math.prod(inner) * itemsize
    # Split leading dims (time) first so a shard keeps whole images, then rows, then columns.
    for dim in range(len(shape)):
        while n_chunks[dim] > 1 and math.prod(n_chunks) * chunk_bytes > _MAX_SHARD_BYTES:
            n_chunks[dim] = math.ceil(n_chunks[dim] / 2)
    shards = [n * c for n, c in zip(n_chunks, inner, strict=True)]
    return tuple(inner), tuple(shards)


def _decode_cube(ds: xr.Dataset) -> xr.Dataset:
    """Bring a loaded cube back to the in-memory contract dtypes."""
    ds = ds.drop_encoding()
    ds.attrs.pop(MANIFEST_ATTR, None)
    for name in list(ds.variables):
        var = ds[name]
        if name in S2_BANDS and var.dtype != np.float32 and name not in ds.coords:
            ds[name] = var.astype(np.float32)
        elif var.dtype.kind == "T" or (var.dtype.kind == "O" and _all_str(var.values)):
            # zarr returns numpy StringDType; plain unicode arrays are what pandas/GE expect
            ds[name] = var.copy(data=np.array(var.values.tolist(), dtype=str))
        elif var.dtype.kind == "M" and var.dtype != np.dtype("datetime64[ns]"):
            ds[name] = var.astype("datetime64[ns]")
    if _GRID_MAPPING in ds.data_vars:
        ds = ds.set_coords(_GRID_MAPPING)
    return ds


def write_manifest(root: Path) -> None:
    """Record the size and SHA-256 of every file of the Zarr store ``root`` in its attributes."""
    files: dict[str, list[int | str]] = {}
    for file in sorted(root.rglob("*")):
        rel = file.relative_to(root).as_posix()
        if file.is_file() and rel != "zarr.json":
            files[rel] = [file.stat().st_size, file_sha256(file)]
    group = zarr.open_group(root, mode="r+", zarr_format=3)
    group.attrs.update({MANIFEST_ATTR: {"version": 1, "files": files}})


def _read_manifest(root: Path) -> dict:
    meta_path = root / "zarr.json"
    if not meta_path.is_file():
        raise DataError(f"{root}: not a Zarr v3 store (zarr.json is missing)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{root}: root metadata zarr.json is truncated or corrupt ({err})") from err
    manifest = meta.get("attributes", {}).get(MANIFEST_ATTR) if isinstance(meta, dict) else None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise DataError(
            f"{root}: not a releo cube (no {MANIFEST_ATTR} in zarr.json); write it with "
            "releo.data.io.write_cube or read it with releo.data.readers.read_s2_l2a"
        )
    return manifest


def _check_manifest(root: Path, manifest: dict, checksums: bool) -> list[str]:
    problems = []
    for rel, (size, digest) in manifest["files"].items():
        file = root / rel
        if not file.is_file():
            problems.append(f"{rel} is missing")
        elif (actual := file.stat().st_size) != size:
            problems.append(f"{rel} has {actual} bytes, expected {size}")
        elif checksums and file_sha256(file) != digest:
            problems.append(f"{rel} fails its SHA-256 check")
    return problems


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces ``target`` on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        _replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing target is kept aside until the move succeeded."""
    if not target.exists() and not target.is_symlink():
        os.replace(new, target)
        return
    # A directory cannot be renamed over a non-empty one: park the old one, swap, then delete.
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


# -------------------------------------------------------------------------------------- tables

_TABLE_FORMATS = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}


def _table_format(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in sorted(_TABLE_FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise DataError(
        f"{path}: unknown table format {''.join(path.suffixes) or '(no suffix)'}; "
        f"use one of {', '.join(_TABLE_FORMATS)}"
    )


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling file that replaces ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` (without its index) as CSV or Parquet, chosen by suffix, atomically."""
    target = Path(path)
    fmt = _table_format(target)
    with atomic_file(target) as tmp:
        if fmt == "csv":
            compression = "gzip" if target.name.lower().endswith(".gz") else None
            df.to_csv(tmp, index=False, compression=compression)
        else:
            df.to_parquet(tmp, index=False)
    return target


def json_safe(value: Any) -> Any:
    """``value`` in the form strict JSON accepts.

    NaN/inf become null (DVC and browsers reject bare NaN), numpy scalars Python numbers, arrays and
    tuples lists, dict keys strings.
    """
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(obj: object, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented JSON (metrics, metadata), atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False, default=str) + "\n")
    return Path(path)


def read_table(
    path: str | os.PathLike[str],
    *,
    parse_dates: Sequence[str] = ("date", "time"),
    date_format: str | None = None,
) -> pd.DataFrame:
    """Read a CSV or Parquet table; parsable CSV columns in ``parse_dates`` become datetimes.

    ``date_format`` (e.g. ``"%d/%m/%Y"``) names how the dates are written; without it, dates
    whose day/month order the text does not say (``06/01/2025``) are a DataError, never a guess.
    """
    source = Path(path)
    fmt = _table_format(source)
    if not source.is_file():
        raise DataError(f"{source}: table not found")
    try:
        df = pd.read_csv(source) if fmt == "csv" else pd.read_parquet(source)
    except Exception as err:  # pandas/pyarrow raise many types for unreadable files
        raise DataError(f"{source}: cannot read {fmt} table: {type(err).__name__}: {err}") from err
    for col in parse_dates:
        if col not in df.columns:
            continue
        if fmt == "csv" or date_format is not None:
            try:
                df[col] = to_datetimes(df[col], date_format=date_format)
            except AmbiguousDatesError as err:
                raise DataError(f"{source}: column {col!r} {err}") from err
            except (ValueError, TypeError):
                # unparsable dates stay text: the contract readers report them with context
                if date_format is not None:
                    raise DataError(
                        f"{source}: column {col!r} does not follow date_format {date_format!r}"
                    ) from None
        else:
            try:  # Parquet text dates: refuse a guess here too
                ambiguous_dates(df[col])
            except AmbiguousDatesError as err:
                raise DataError(f"{source}: column {col!r} {err}") from err
    return df


AMBIGUOUS_DATE = r"^\s*\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}(?:$|[\sT])"
"""Day and month first, in either order (``06/01/2025``, ``6.1.25``): the text cannot say which
is the month, and pandas guesses month-first (per value under ``format="mixed"``)."""


class AmbiguousDatesError(ValueError):
    """Dates whose day/month order the text does not say, and no ``date_format`` given."""


def ambiguous_dates(values: pd.Series) -> None:
    """Raise AmbiguousDatesError if any text value is ``NN/NN/YYYY``-like (day/month unknown).

    Any such value is refused, even where a part above 12 would decide: one decidable row in a
    thousand does not make the others safe, and a silent month-first read re-sorts a series.
    """
    if values.dtype != object and not isinstance(values.dtype, pd.StringDtype):
        return
    text = values.dropna().astype(str)
    hits = text[text.str.match(AMBIGUOUS_DATE)]
    if len(hits):
        shown = ", ".join(repr(v) for v in hits.unique()[:3])
        raise AmbiguousDatesError(
            f"holds dates whose day/month order is ambiguous ({shown}, {len(hits)} row(s)); "
            "name the format with date_format, e.g. '%d/%m/%Y' (or write ISO 8601 dates)"
        )


def to_datetimes(
    values: pd.Series, *, utc: bool = False, date_format: str | None = None
) -> pd.Series:
    """Parse dates written in one consistent format, or failing that, one per value.

    With ``date_format`` every value must follow it. Without, ISO 8601 and other unambiguous
    text parse; ``NN/NN/YYYY``-like text raises AmbiguousDatesError (a ValueError).
    """
    if date_format is not None:
        return pd.to_datetime(values, utc=utc, format=date_format)
    ambiguous_dates(values)
    try:
        return pd.to_datetime(values, utc=utc)
    except (ValueError, TypeError):
        # real tables mix "2024-05-01" and "2024-05-01 10:56"; "mixed" infers per value
        return pd.to_datetime(values, utc=utc, format="mixed")
