"""What `glassbox up` and `glassbox demo` print: where to look and how to call the stack."""

from __future__ import annotations

from glassbox.stack.dashboard import DASHBOARD


def describe(stack) -> str:
    """URLs of the running stack and a SeldonClient line that works against it."""
    if stack.settings.protocol == "v2":
        return describe_v2(stack)
    s = stack.settings
    c = stack.components
    gw = stack.gateway_endpoint
    base = f"http://{gw}/seldon/{s.namespace}"
    lines = [
        "",
        "Glassbox local stack (loopback only)",
        f"  gateway        http://{gw}/  (lists its routes)",
        f"    predict      POST {base}/{s.deployment}/api/v1.0/predictions",
        f"    feedback     POST {base}/{s.deployment}/api/v1.0/feedback",
        f"    explain      POST {base}/{s.deployment}-explainer/{s.predictor}/api/v1.0/explain",
        f"  review page    {c['queue'].url}/review  (owner API key: {s.queue_api_key})",
    ]
    # Each microservice's GET page is its metadata (its base URL answers 404: Seldon has no index).
    for name in ("model", "explainer"):
        metrics = f"http://127.0.0.1:{c[name].ports['metrics']}/prometheus"
        lines.append(f"  {name:<14} {c[name].url}/api/v1.0/metadata  metrics {metrics}")
    if "monitor" in c:
        lines.append(f"  monitor        {c['monitor'].url}/api/v1/status  metrics {c['monitor'].url}/metrics")
    if "prometheus" in c:
        lines.append(f"  prometheus     {c['prometheus'].url}/graph")
        # JSON: Debian's Prometheus serves no /alerts page (its web UI assets are not packaged).
        lines.append(f"  alerts         {c['prometheus'].url}/api/v1/alerts  (rules: charts/glassbox/rules/)")
        lines.append(f"  dashboard      {DASHBOARD}  (import into Grafana)")
    lines += [f"  note: {note}" for note in stack.notes]
    lines += [
        f"  logs           {s.logs_dir}/  (`glassbox logs [component]`)",
        "",
        "  from seldon_core.seldon_client import SeldonClient",
        f'  sc = SeldonClient(gateway="ambassador", gateway_endpoint="{gw}", namespace="{s.namespace}",',
        f'                    deployment_name="{s.deployment}", payload_type="ndarray", transport="rest")',
        "",
    ]
    return "\n".join(lines)


def describe_v2(stack) -> str:
    """The same for ``--protocol v2``: V2 paths through the gateway, MLServer's ports, a tritonclient line."""
    s = stack.settings
    c = stack.components
    gw = stack.gateway_endpoint
    model, explainer = s.deployment, f"{s.deployment}-explainer"
    lines = [
        "",
        "Glassbox local stack on MLServer, Open Inference Protocol V2 (loopback only)",
        f"  gateway        http://{gw}/  (lists its routes)",
        f"    predict      POST http://{gw}/v2/models/{model}/infer",
        f"    explain      POST http://{gw}/v2/models/{explainer}/infer",
        f"  review page    {c['queue'].url}/review  (owner API key: {s.queue_api_key})",
    ]
    for name in ("model", "explainer"):
        ports = c[name].ports
        lines.append(
            f"  {name:<14} {c[name].links['metadata']}  gRPC 127.0.0.1:{ports['grpc']}"
            f"  metrics http://127.0.0.1:{ports['metrics']}/metrics"
        )
    if "monitor" in c:
        lines.append(f"  monitor        {c['monitor'].url}/api/v1/status  metrics {c['monitor'].url}/metrics")
    if "prometheus" in c:
        lines.append(f"  prometheus     {c['prometheus'].url}/graph")
        lines.append(f"  dashboard      {DASHBOARD}  (import into Grafana)")
    lines += [f"  note: {note}" for note in stack.notes]
    lines += [
        f"  logs           {s.logs_dir}/  (`glassbox logs [component]`)",
        "",
        "  import tritonclient.http as httpclient",
        f'  client = httpclient.InferenceServerClient("{gw}")',
        "",
    ]
    return "\n".join(lines)
