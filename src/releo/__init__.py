"""releo: physics-informed representation learning on Sentinel-2 + Sentinel-1 time series."""

__version__ = "0.1.0"
