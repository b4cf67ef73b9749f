# One entry point per user action. `make test` and `make run` work on a fresh clone:
# they create the virtual environment, install the pinned dependencies and the project.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup run test lint format bench bench-physics bench-data bench-train bench-products
.PHONY: bench-capacity bench-bound bench-site bench-real bench-scale clean
.PHONY: retrain ui screenshots

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $@

# The main job: bring data/ into being (DVC pull, or simulate the default site), then the
# whole pipeline. A second run with nothing changed skips every stage.
run: setup
	$(BIN)/releo ensure-data
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest

bench: bench-physics bench-data bench-train bench-products

bench-physics: setup
	$(BIN)/python benchmarks/physics.py

bench-data: setup
	$(BIN)/python benchmarks/data.py

# Simulated 2, 8 and 16 km sites (20 days) through simulate, the chunk stage's gates and index,
# and a cube read, each in a subprocess: s/km², peak RSS, 16-vs-2 ratios, Zarr vs numpy (~10 min).
bench-scale: setup
	$(BIN)/python benchmarks/scale.py

# releo site build on the real Belgian series: seconds, peak memory, ratio to the I/O floor.
bench-site: setup
	$(BIN)/python benchmarks/site_build.py

# Label-free checks of models/model.pt (`make run` first) on the real Belgian series: LAI vs
# SNAP on clear pixel-dates, crop-calendar peaks, S2 reconstruction over the L2A noise (~2 min).
bench-real: setup
	$(BIN)/python benchmarks/real_sites.py

# Needs chunks/index.parquet (`make run` first): 1 vs 2 Ray workers, start-up, PROSAIL share.
bench-train: setup
	$(BIN)/python benchmarks/train.py

# What 224 embedding features carry of true LAI maps of unseen places: releo's field slots vs
# the previous global design, next to lattice / bilinear / per-parcel ceilings (~8 min).
bench-capacity: setup
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/embedding_capacity.py

# LAI retrieval bounds at SNAP's held-out pixel-dates: labelled and simulation-trained
# regressors, with oracle prior / exclusive-effect removal, next to SNAP (~2 min).
bench-bound: setup
	$(BIN)/python benchmarks/retrieval_bound.py

# LAI decoding from embeddings (pixel-dates/s, 2 cores) next to SNAP; France weekly 10 m cost.
# Uses models/model.pt and embeddings/ when present (`make run` first), else an untrained model.
bench-products: setup
	$(BIN)/python benchmarks/products.py

# releo lai on campaign-shaped pixel tables (79,296 and 101,244 rows): rows/s, peak memory,
# one fine-tuning epoch, SNAP on the same rows (~5 min).
bench-lai: setup
	$(BIN)/python benchmarks/pixel_table.py

# Retrain on new data as CI's retrain workflow does (pull, dvc repro, registry decision, metrics
# and plots diff against the last commit); DROP=N first simulates data drop N of the site.
DROP ?= 0
retrain: setup
	$(BIN)/releo retrain --pull --drop $(DROP)

# The MLflow UI on the project's store (mlruns/mlflow.db): http://127.0.0.1:$(PORT)
PORT ?= 5000
ui: setup
	$(BIN)/releo ui --port $(PORT)

# Re-take the README's MLflow UI pictures (docs/mlflow-ui.png, docs/mlflow-registry.png).
screenshots: setup
	RELEO_UPDATE_SCREENSHOTS=1 $(BIN)/pytest tests/test_ui.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
