# The drift and outlier monitor (glassbox monitor serve). Build from the repository root after `make wheel`:
#   docker build -f deploy/docker/monitor.Dockerfile -t glassbox-monitor:0.1.0 .
# It reads the model's artifacts (the detectors fitted at training are in the same bundle): bake them in
# with deploy/docker/baked-artifacts.Dockerfile (`make images-baked`) or let the chart fetch the model's
# modelUri (charts/glassbox: model.artifacts).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /srv/glassbox
# The wheel with the monitor's extra, at the versions the repository is tested with.
COPY requirements/constraints.txt ./constraints.txt
COPY dist/ ./wheels/
# The wheel by path, never by name: a "glassbox" on PyPI must not stand in for it.
RUN pip install -c constraints.txt "$(ls ./wheels/glassbox-*.whl)[monitor]" && rm -rf ./wheels

RUN useradd --uid 8888 --create-home glassbox && mkdir -p /mnt/models && chown 8888 /mnt/models
USER 8888

EXPOSE 8600
# One process: the windows live in its memory (the chart runs one replica).
CMD ["glassbox", "monitor", "serve", "--host", "0.0.0.0", "--port", "8600"]
