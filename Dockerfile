# releo in a container: `dvc repro` (the default command) and the MLflow UI (`releo ui`).
#
#   docker build -t releo .                                  # CPU torch (default)
#   docker build -t releo:cuda --build-arg DEVICE=cuda .     # CUDA torch; run with --gpus all
#   docker run --rm --shm-size=2g releo                      # ensure-data + dvc repro
#   docker run --rm --shm-size=2g -v "$PWD":/project releo   # ... on your clone (git, data, mlruns)
#   docker run --rm -p 5000:5000 -v "$PWD":/project releo releo ui --host 0.0.0.0
#
# DEVICE=cpu takes torch's CPU wheels; DEVICE=cuda takes PyPI's torch wheels, which bring the
# CUDA runtime as pip packages (the host needs the NVIDIA driver and container toolkit; set
# train.use_gpu: true in params.yaml). Ray needs shared memory: --shm-size=2g or more.
FROM python:3.11-slim-bookworm

ARG DEVICE=cpu
ARG TORCH_VERSION=2.13.0

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    RAY_USAGE_STATS_ENABLED=0

# git: DVC runs in a git repository; make: the project's entry points.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.39.* make=4.3-* \
    && rm -rf /var/lib/apt/lists/* \
    && python -m venv "$VIRTUAL_ENV"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# torch for the chosen device, then the pinned dependencies: layers that stay cached until
# pyproject.toml or constraints.txt change.
RUN case "$DEVICE" in \
        cpu) index=https://download.pytorch.org/whl/cpu ;; \
        cuda) index=https://pypi.org/simple ;; \
        *) echo "DEVICE must be cpu or cuda, not '$DEVICE'" >&2; exit 1 ;; \
    esac \
    && pip install --index-url "$index" "torch==${TORCH_VERSION}"
WORKDIR /project
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project (editable: a clone mounted on /project runs its own code), in a git repository
# of its own so that DVC runs without the clone's history.
COPY . .
RUN pip install --no-deps -e . \
    && git init -q \
    && git config --system --add safe.directory '*' \
    && useradd --create-home --uid 1000 releo \
    && chown -R releo:releo /project
USER 1000:1000

EXPOSE 5000
CMD ["bash", "-c", "releo ensure-data && dvc repro"]
