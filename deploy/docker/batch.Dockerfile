# Batch explanations on Ray (glassbox explain-batch; the chart's RayJob, batch.enabled). Build from the
# repository root after `make wheel`:
#   docker build -f deploy/docker/batch.Dockerfile -t glassbox-batch:0.1.0 .
# Ray's own image, at the version pyproject.toml pins: KubeRay starts the head and the workers with its
# `ray start`, and the head's job server needs ray[default] (dashboard, job submission), which it has.
FROM rayproject/ray:2.60.0-py312-cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache

WORKDIR /tmp/glassbox
# The wheel with the batch extra, at the versions the repository is tested with (numpy < 2 among them).
COPY requirements/constraints.txt requirements/no-deps.txt ./
COPY dist/ ./wheels/
# The wheel by path, never by name: a "glassbox" on PyPI must not stand in for it. Then dice-ml
# (counterfactuals) without its declared xgboost/lightgbm/NCCL, as the explainer image does.
RUN pip install -c constraints.txt "$(ls ./wheels/glassbox-*.whl)[batch]" \
    && pip install --no-deps -c constraints.txt -r no-deps.txt && rm -rf ./wheels

# The chart runs every pod as user 8888 (podSecurityContext); Ray keeps its session under /tmp/ray.
WORKDIR /tmp
CMD ["glassbox", "explain-batch", "--help"]
