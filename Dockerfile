# One image for the three services; docker-compose.yml picks the command of each.
FROM python:3.11-slim

# CPU wheels by default; build the trainer with
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# to train on an NVIDIA GPU.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

WORKDIR /app
# torch first, pinned, so nothing below can pull another build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
# The runtime dependencies pyproject.toml declares (the `gpu` extra: bitsandbytes for 4-bit/8-bit; the `cluster`
# extra: Ray, for the ray profile of docker-compose.yml), at the versions of the lock (requirements.txt as
# constraints): no test, lint or benchmark package in the image.
COPY requirements.txt pyproject.toml README.md ./
COPY protos ./protos
COPY generated ./generated
COPY services ./services
RUN pip install -c requirements.txt "torch==${TORCH_VERSION}" -e ".[gpu,cluster]"

# The volumes' mount points exist in the image, owned by the user the services run as, so a new named volume
# starts writable by it (docker copies the ownership). Mounted certificates (var/certs) must be readable by
# uid 1000.
RUN useradd --create-home --uid 1000 app \
    && mkdir -p /data/exports /data/jobs /data/models /data/datasets /data/cache /certs \
    && chown -R app /data
USER app
CMD ["python", "-m", "services.launcher"]
