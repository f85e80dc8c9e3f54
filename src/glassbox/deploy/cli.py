"""``glassbox deploy``: install, watch, call and remove the release on a Kubernetes cluster.

Subcommands: install (helm upgrade --install, then wait), status, wait, rollback, uninstall, smoke.
Defaults come from ``GLASSBOX_DEPLOY_*`` (see settings.py); options override them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from glassbox.errors import GlassboxError

if TYPE_CHECKING:  # the subcommands import these lazily: `glassbox --help` stays fast
    from glassbox.deploy.helm import Helm
    from glassbox.deploy.settings import DeploySettings
    from glassbox.deploy.wait import Fetch

EXIT_FAILED = 1
EXIT_NOT_AVAILABLE = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    deploy = subparsers.add_parser("deploy", help="Install and operate the Helm release on Kubernetes")
    commands = deploy.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")

    def command(
        name: str, help_text: str, func: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--release", help="Helm release name (GLASSBOX_DEPLOY_RELEASE)")
        parser.add_argument("--namespace", "-n", help="namespace (GLASSBOX_DEPLOY_NAMESPACE)")
        parser.add_argument("--kube-context", help="kubeconfig context (GLASSBOX_DEPLOY_KUBE_CONTEXT)")
        parser.set_defaults(func=_guarded(func))
        return parser

    def helm_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--helm", dest="helm_bin", help="helm binary (GLASSBOX_DEPLOY_HELM_BIN)")
        parser.add_argument(
            "--timeout", type=float, dest="timeout_s", help="seconds (GLASSBOX_DEPLOY_TIMEOUT_S)"
        )

    def explainer_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--protocol",
            choices=["seldon", "v2"],
            help="the chart's protocol: seldon (SeldonDeployments) or v2 (the KServe InferenceService "
            "--model-name, explainer included) (GLASSBOX_DEPLOY_PROTOCOL)",
        )
        parser.add_argument("--model-name", help="model SeldonDeployment (GLASSBOX_DEPLOY_MODEL_NAME)")
        parser.add_argument(
            "--explainer-name", help="explainer SeldonDeployment (GLASSBOX_DEPLOY_EXPLAINER_NAME)"
        )
        parser.add_argument(
            "--explainer-mode",
            choices=["component", "native", "none"],
            default="component",
            help="as the chart's explainer.mode; none = explainer.enabled=false (default: component)",
        )

    install = command("install", "helm upgrade --install the chart, then wait until Available", _install)
    helm_options(install)
    explainer_options(install)
    install.add_argument("--chart", help="chart directory or .tgz (GLASSBOX_DEPLOY_CHART)")
    install.add_argument("--values", "-f", action="append", default=[], help="values file (repeatable)")
    install.add_argument(
        "--set", action="append", default=[], dest="set_values", help="key=value (repeatable)"
    )
    install.add_argument("--no-wait", action="store_true", help="return once helm is done")

    status = command("status", "State and replicas of the SeldonDeployments (or InferenceService)", _status)
    explainer_options(status)
    status.add_argument("--output", "-o", choices=["text", "json"], default="text")

    wait = command("wait", "Wait until the SeldonDeployments (or InferenceService) are Available", _wait)
    explainer_options(wait)
    wait.add_argument("--timeout", type=float, dest="timeout_s", help="seconds (GLASSBOX_DEPLOY_TIMEOUT_S)")

    rollback = command("rollback", "Roll the release back (to REVISION, default the previous one)", _rollback)
    helm_options(rollback)
    rollback.add_argument("revision", nargs="?", type=int, help="revision number (helm history)")

    uninstall = command("uninstall", "Remove the release (the queue's Secret and PVC are kept)", _uninstall)
    helm_options(uninstall)

    smoke = command("smoke", "Predict and explain once through the gateway with SeldonClient", _smoke)
    explainer_options(smoke)
    smoke.add_argument("--gateway", choices=["istio", "ambassador"], help="GLASSBOX_DEPLOY_GATEWAY")
    smoke.add_argument("--gateway-endpoint", help="host:port (GLASSBOX_DEPLOY_GATEWAY_ENDPOINT)")
    smoke.add_argument(
        "--predictor", help="model predictor, for the native explainer (GLASSBOX_DEPLOY_PREDICTOR)"
    )


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Print a Glassbox error as one line on stderr and exit non-zero, never with a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except GlassboxError as exc:
            print(f"glassbox deploy {args.deploy_command}: {exc.message}", file=sys.stderr)
            return EXIT_FAILED

    return run


def _settings(args: argparse.Namespace) -> DeploySettings:
    """Settings from the environment with the given options laid over them."""
    from pydantic import ValidationError

    from glassbox.deploy.errors import ConfigError
    from glassbox.deploy.settings import DeploySettings

    overrides = {
        key: value
        for key in DeploySettings.model_fields
        if (value := getattr(args, key, None)) is not None and value != ""
    }
    try:
        return DeploySettings(**overrides)  # init arguments take precedence over the environment
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"bad setting (GLASSBOX_DEPLOY_* or option): {problems}") from None


def _helm(settings: DeploySettings) -> Helm:
    from glassbox.deploy.helm import Helm

    return Helm(binary=settings.helm_bin, namespace=settings.namespace, kube_context=settings.kube_context)


def _names(settings: DeploySettings, mode: str) -> list[str]:
    if settings.protocol == "v2":  # one InferenceService: the predictor and the explainer
        return [settings.model_name]
    return [settings.model_name] + ([settings.explainer_name] if mode == "component" else [])


def _fetcher(settings: DeploySettings) -> Fetch:
    from glassbox.deploy.status import custom_objects_api, read_status

    api = custom_objects_api(settings.kube_context)
    if settings.protocol == "v2":
        from glassbox.deploy.kserve_status import read_isvc_status

        return lambda name: read_isvc_status(api, settings.namespace, name)
    return lambda name: read_status(api, settings.namespace, name)


def _wait_for(settings: DeploySettings, mode: str, timeout_s: float) -> int:
    from glassbox.deploy.wait import wait_available

    statuses = wait_available(_fetcher(settings), _names(settings, mode), timeout_s, settings.poll_s)
    print("Available: " + ", ".join(s.name for s in statuses))
    return 0


def _install(args: argparse.Namespace) -> int:
    settings = _settings(args)
    helm = _helm(settings)
    argv = helm.upgrade_install_args(
        settings.release, settings.chart, args.values, args.set_values, timeout_s=settings.timeout_s
    )
    # Render locally first: bad values are refused by the chart's schema before the cluster is asked.
    docs = helm.render(settings.release, settings.chart, args.values, args.set_values)
    print("$ " + " ".join(argv), file=sys.stderr)
    helm.run(argv, stream=True)
    if args.no_wait:
        return 0
    if any(doc["kind"] == "InferenceService" for doc in docs):
        # protocol v2, whatever --protocol said: wait for KServe's verdict on the InferenceService.
        settings = settings.model_copy(update={"protocol": "v2"})
    # helm's wait knows Deployments, not SeldonDeployments (nor InferenceServices): wait for the
    # operator's verdict too.
    return _wait_for(settings, args.explainer_mode, settings.timeout_s)


def _status(args: argparse.Namespace) -> int:
    from glassbox.deploy.errors import DeploymentNotFound

    settings = _settings(args)
    fetch = _fetcher(settings)
    report, all_available = [], True
    for name in _names(settings, args.explainer_mode):
        try:
            status = fetch(name)
        except DeploymentNotFound as exc:
            report.append({"name": name, "state": "NotFound", "description": exc.message})
            all_available = False
            continue
        all_available &= status.available
        report.append(
            {
                "name": status.name,
                "state": status.state,
                "description": status.description,
                "replicas": status.replicas,
                "availableReplicas": status.available_replicas,
                "components": [c.__dict__ for c in status.components],
            }
        )
    if args.output == "json":
        print(json.dumps({"namespace": settings.namespace, "deployments": report}, indent=2))
    else:
        for item in report:
            line = f"{item['name']}: {item['state'] or 'Unknown'}"
            if "replicas" in item:  # on v2: KServe reports components ready, not pod replicas
                unit = "components ready" if settings.protocol == "v2" else "replicas"
                line += f" ({item['availableReplicas']}/{item['replicas']} {unit})"
            print(line + (f" - {item['description']}" if item["description"] else ""))
            for component in item.get("components", []):
                print(f"  {component['name']}: {component['available_replicas']}/{component['replicas']}")
    return 0 if all_available else EXIT_NOT_AVAILABLE


def _wait(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return _wait_for(settings, args.explainer_mode, settings.timeout_s)


def _rollback(args: argparse.Namespace) -> int:
    settings = _settings(args)
    helm = _helm(settings)
    helm.run(helm.rollback_args(settings.release, args.revision, settings.timeout_s), stream=True)
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    settings = _settings(args)
    helm = _helm(settings)
    helm.run(helm.uninstall_args(settings.release, settings.timeout_s), stream=True)
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from seldon_core.seldon_client import SeldonClient

    from glassbox.deploy.smoke import smoke

    settings = _settings(args)
    if settings.protocol == "v2":
        from glassbox.errors import ConfigError

        raise ConfigError(
            "smoke drives SeldonClient through the Seldon gateway; on protocol v2 run `helm test` (it posts "
            "a V2 request to the predictor) or the V2 calls in docs/deploy.md"
        )
    client = SeldonClient(
        gateway=settings.gateway, gateway_endpoint=settings.gateway_endpoint, namespace=settings.namespace
    )
    result = smoke(
        client,
        model=settings.model_name,
        explainer=settings.explainer_name if args.explainer_mode == "component" else None,
        native_explainer_predictor=settings.predictor if args.explainer_mode == "native" else None,
    )
    print("predict: " + json.dumps(result.probabilities))
    if result.anchor is not None:
        print("explain: anchor " + json.dumps(result.anchor))
    return 0
