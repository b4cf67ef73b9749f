"""Data: contracts, storage, readers of real data, the simulated default site, chunks."""
