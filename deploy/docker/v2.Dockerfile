# Glassbox on MLServer (Open Inference Protocol, "V2"): the image of the chart's ServingRuntime and of
# its InferenceService's explainer (values protocol: v2, kserve.image). Build from the repository root
# after `make wheel`:
#   docker build -f deploy/docker/v2.Dockerfile -t glassbox-v2:0.1.0 .
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /srv/glassbox
# Only the [v2] extra (MLServer and both runtimes), pinned by its own constraints: MLServer's FastAPI
# needs an older Starlette than the queue's, so this image never holds the queue's extra.
COPY requirements/constraints-v2.txt ./constraints.txt
COPY requirements/no-deps.txt ./
COPY dist/ ./wheels/
# The wheel by path, never by name: a "glassbox" on PyPI must not stand in for it. dice-ml
# (counterfactuals) without its declared xgboost/lightgbm/NCCL: see requirements/no-deps.txt.
RUN pip install -c constraints.txt "$(ls ./wheels/glassbox-*.whl)[v2]" \
    && pip install --no-deps -c constraints.txt -r no-deps.txt && rm -rf ./wheels

# Artifacts: where KServe's storage initializer puts a storageUri (or baked in: baked-artifacts.Dockerfile).
# Outbox: records the queue has not taken yet (the chart mounts a volume there). NUMBA_CACHE_DIR: the
# non-root user cannot write beside the installed package, and numba's cached kernels fail at import
# when no directory is writable.
ENV NUMBA_CACHE_DIR=/tmp/numba-cache \
    GLASSBOX_MODEL_ARTIFACTS=/mnt/models \
    GLASSBOX_MODEL_OUTBOX_DIR=/var/lib/glassbox/outbox \
    GLASSBOX_EXPLAINER_ARTIFACTS=/mnt/models

RUN useradd --uid 8888 --create-home glassbox \
    && mkdir -p /var/lib/glassbox/outbox "$NUMBA_CACHE_DIR" \
    && chown -R 8888 /var/lib/glassbox "$NUMBA_CACHE_DIR" /srv/glassbox
USER 8888

# MLServer's REST, gRPC and metrics ports (the chart's kserve.httpPort, grpcPort, metricsPort).
EXPOSE 8080 9000 8082
# The model by default; the chart's ServingRuntime and explainer container give their own arguments.
ENTRYPOINT ["glassbox", "serve-v2"]
CMD ["--component=model", "--artifacts=/mnt/models", "--name=loanclassifier", "--host=0.0.0.0", "--http-port=8080", "--grpc-port=9000", "--metrics-port=8082"]
