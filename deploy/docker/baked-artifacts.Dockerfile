# Bake trained artifacts into a component image (model or explainer), for clusters without a bucket.
# The build context is the model directory (artifacts/loanclassifier, with LATEST and its versions):
#   docker build -f deploy/docker/baked-artifacts.Dockerfile \
#     --build-arg BASE=loanclassifier:0.1.0 -t loanclassifier:0.1.0-baked artifacts/loanclassifier
ARG BASE
FROM ${BASE}

# /mnt/models is where both components look by default (GLASSBOX_MODEL_ARTIFACTS,
# GLASSBOX_EXPLAINER_ARTIFACTS) and where Seldon's storage initializer would put a modelUri.
COPY --chown=8888 . /mnt/models/
USER 8888
