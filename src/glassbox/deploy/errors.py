"""Errors of ``glassbox deploy``: each carries the HTTP-like status of what went wrong."""

from __future__ import annotations

from glassbox.errors import ConfigError, GlassboxError, NotFound, UpstreamUnavailable


class HelmFailed(GlassboxError):
    """helm exited non-zero; the message holds its command line and stderr."""

    status_code = 502


class DeploymentNotFound(NotFound):
    """No SeldonDeployment of that name in the namespace."""


class ClusterUnreachable(UpstreamUnavailable):
    """The Kubernetes API server (or the gateway) did not answer."""


class NotAvailable(GlassboxError):
    """The deployments did not become Available in time, or one of them Failed."""

    status_code = 504


__all__ = ["ClusterUnreachable", "ConfigError", "DeploymentNotFound", "HelmFailed", "NotAvailable"]
