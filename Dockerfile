# streamrec worker / learner image (CPU). Build: docker build -t streamrec .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# CPU-only torch wheels: the default PyPI torch pulls CUDA libraries (GBs) that this image never uses.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY streams ./streams
COPY model ./model
COPY feature_store ./feature_store
COPY explain ./explain
COPY streamrec ./streamrec
RUN pip install --extra-index-url "$TORCH_INDEX" . \
    && useradd --create-home --uid 10001 streamrec \
    && mkdir -p /data/models && chown streamrec /data/models
USER streamrec
ENV STREAMREC_MODEL_DIR=/data/models
CMD ["streamrec", "worker"]
