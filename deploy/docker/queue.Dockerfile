# The annotation queue (glassbox queue serve). Build from the repository root after `make wheel`:
#   docker build -f deploy/docker/queue.Dockerfile -t glassbox-queue:0.1.0 .
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /srv/glassbox
# The wheel with the queue's extra, at the versions the repository is tested with.
COPY requirements/constraints.txt ./constraints.txt
COPY dist/ ./wheels/
# The wheel by path, never by name: a "glassbox" on PyPI must not stand in for it.
RUN pip install -c constraints.txt "$(ls ./wheels/glassbox-*.whl)[queue]" && rm -rf ./wheels

# Non-root, with its SQLite directory (the chart mounts a PersistentVolumeClaim over it).
RUN useradd --uid 8888 --create-home glassbox \
    && mkdir -p /var/lib/glassbox/queue && chown -R 8888 /var/lib/glassbox
USER 8888

ENV GLASSBOX_QUEUE_HOST=0.0.0.0 \
    GLASSBOX_QUEUE_PORT=8500 \
    GLASSBOX_QUEUE_DATABASE_URL=sqlite:////var/lib/glassbox/queue/queue.db

EXPOSE 8500
CMD ["glassbox", "queue", "serve"]
