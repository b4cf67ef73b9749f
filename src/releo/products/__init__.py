"""Products of the trained model: embeddings, decoded LAI, its evaluation and registration.

Chunk embeddings, LAI decoded from them on any grid and date, its evaluation against truth,
SNAP and field surveys, and its MLflow registration.

- :mod:`.embed`: the encoder over every chunk → an embeddings cube (time, y, x, feature).
- :mod:`.grid`, :mod:`.decode`: queries (map x, y, day) → chunk, window, relative position →
  LAI mean, σ and interval from the embeddings alone.
- :mod:`.export`, :mod:`.plots`: Zarr, GeoTIFF and PNG products.
- :mod:`.regions`: embedding and decoding by regions of their output cube, as Ray tasks
  (:mod:`releo.distributed`).
- :mod:`.evaluate`: scores per land cover and sky, baseline and SNAP alongside.
- :mod:`.registry`: the decoder as an MLflow pyfunc model; champion/challenger aliases.
- :mod:`.product_gates`: Great Expectations suites of the embeddings and decoded products.
"""
