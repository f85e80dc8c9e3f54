"""Images and the kind script, checked with the tools docker and shellcheck themselves use.

No Docker engine runs here: the Dockerfiles are read with BuildKit's parser (the ``dockerfile``
package) and held against the chart's values, so the chart and the images agree on users, ports,
commands and paths. deploy/kind/e2e.sh goes through shellcheck.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import dockerfile
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VALUES = yaml.safe_load((REPO / "charts/glassbox/values.yaml").read_text())
CHART = yaml.safe_load((REPO / "charts/glassbox/Chart.yaml").read_text())
DOCKERFILES = {
    "model": REPO / "models/loanclassifier/Dockerfile",
    "explainer": REPO / "explainers/loanclassifier-explainer/Dockerfile",
    "queue": REPO / "deploy/docker/queue.Dockerfile",
    "monitor": REPO / "deploy/docker/monitor.Dockerfile",
    "baked": REPO / "deploy/docker/baked-artifacts.Dockerfile",
    "v2": REPO / "deploy/docker/v2.Dockerfile",
}


# The extra each component's image installs: nothing else of the package's dependencies.
EXTRAS = {"model": "model", "explainer": "explainer", "queue": "queue", "monitor": "monitor", "v2": "v2"}
# Images built from the repository root, and the constraints file each copies from it.
ROOT_CONSTRAINTS = {
    "queue": "requirements/constraints.txt",
    "monitor": "requirements/constraints.txt",
    "v2": "requirements/constraints-v2.txt",
}
RUNTIME_USER = str(VALUES["podSecurityContext"]["runAsUser"])


def instructions(path: Path, cmd: str, stage: str | None = None) -> list[tuple[str, ...]]:
    """The ``cmd`` instructions of the Dockerfile, or of one stage: "final" (the image) or a name."""
    parsed = list(dockerfile.parse_file(str(path)))
    if stage is not None:
        starts = [i for i, c in enumerate(parsed) if c.cmd.upper() == "FROM"]
        named = [i for i in starts if parsed[i].value[-1] == stage and len(parsed[i].value) == 3]
        start = starts[-1] if stage == "final" else named[0]
        end = min([i for i in starts if i > start] or [len(parsed)])
        parsed = parsed[start:end]
    return [c.value for c in parsed if c.cmd.upper() == cmd]


def environment(path: Path) -> dict[str, str]:
    """The image's ENV, later instructions winning."""
    pairs = (
        pair for values in instructions(path, "ENV") for pair in zip(values[::2], values[1::2], strict=True)
    )
    return dict(pairs)


def pip_installs(path: Path) -> tuple[list[str], list[str]]:
    """(requirements, constraint files) of every ``pip install`` the Dockerfile runs, following ``-r``
    files in the build context (paths as pip reads them: relative to the context)."""
    requirements: list[str] = []
    constraint_files: list[str] = []

    def read(lines: list[str], base: Path) -> None:
        for line in lines:
            words = shlex.split(line, comments=True)
            if not words:
                continue
            if words[0] in ("-r", "--requirement"):
                read((base / words[1]).read_text().splitlines(), (base / words[1]).parent)
            elif words[0] in ("-c", "--constraint"):
                constraint_files.append(str((base / words[1]).relative_to(path.parent)))
            elif not words[0].startswith("-"):
                requirements.append(words[0])

    for (command,) in instructions(path, "RUN", stage="final"):  # what the image holds
        for part in command.split("&&"):
            words = shlex.split(part)
            if words[:2] != ["pip", "install"] or "--no-deps" in words:
                continue  # --no-deps: requirements/no-deps.txt (dice-ml), test_no_deps_install_is_pinned
            options = iter(words[2:])
            for word in options:
                if word in ("-r", "--requirement"):
                    read([f"-r {next(options)}"], path.parent)
                elif word in ("-c", "--constraint"):
                    constraint_files.append(next(options))
                elif not word.startswith("-"):
                    requirements.append(word)
    return requirements, constraint_files


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_images_run_as_the_charts_non_root_user(name):
    path = DOCKERFILES[name]
    if not path.exists():
        pytest.fail(f"{path.relative_to(REPO)} is missing")
    users = instructions(path, "USER")
    assert users, f"{path.name} never leaves root"
    assert users[-1][0].split(":")[0] == str(VALUES["podSecurityContext"]["runAsUser"])


@pytest.mark.parametrize("name", sorted(EXTRAS))
def test_images_install_only_their_components_extra_with_the_constraints(name):
    path = DOCKERFILES[name]
    requirements, constraint_files = pip_installs(path)
    # Exactly one thing is installed: the glassbox wheel, by path, with this component's extra alone.
    assert len(requirements) == 1, requirements
    # (the queue's names it through the shell: "$(ls ./wheels/glassbox-*.whl)[queue]")
    wheel = re.fullmatch(r"(.*glassbox-\S+\.whl\)?)\[([\w,-]+)\]", requirements[0])
    assert wheel, f"{requirements[0]}: not the glassbox wheel with an extra"
    assert wheel.group(2).split(",") == [EXTRAS[name]]
    # ... pinned by the repository's constraints, copied into the build context.
    assert len(constraint_files) == 1, constraint_files
    copies = {
        dest.rstrip("/").removeprefix("./"): source
        for source, dest in (c[:2] for c in instructions(path, "COPY"))
    }
    constraint = constraint_files[0].removeprefix("./")
    if name in ROOT_CONSTRAINTS:  # built from the repository root
        assert copies[constraint] == ROOT_CONSTRAINTS[name]
    else:  # s2i contexts: `make wheel` puts the constraints beside the wheel
        assert constraint == "wheels/constraints.txt" and copies["wheels"] == "wheels/"
        plan = subprocess.run(
            ["make", "-n", "-o", "install", "wheel"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
        assert "cp dist/glassbox-*.whl requirements/constraints.txt $d/wheels/" in plan
        assert str(path.parent.relative_to(REPO)) in plan


def test_model_image_serves_the_compact_forest_built_ahead_of_time():
    """A builder stage compiles the loops (compact_aot) with the image's own extra and constraints; the
    image copies only the extension, into the installed package where compact.py looks for it."""
    path = DOCKERFILES["model"]
    builds = [c for (c,) in instructions(path, "RUN", stage="kernels") if "compact_aot build" in c]
    assert len(builds) == 1
    output = re.search(r"python -m glassbox\.pipeline\.compact_aot build --output-dir (\S+)", builds[0])
    assert output and "pip install --no-cache-dir -r requirements.txt" in builds[0]
    assert instructions(path, "COPY", stage="kernels")[:2] == instructions(path, "COPY", stage="final")[:2]
    froms = instructions(path, "FROM")
    assert froms[0][0] == froms[-1][0]  # the same Python and platform: the extension's ABI
    (copy,) = [
        c for c in instructions(path, "COPY", stage="final") if c[0] == output.group(1).rstrip("/") + "/"
    ]
    site_packages = f"/usr/local/lib/python{froms[-1][0].split(':')[1].split('-')[0]}/site-packages"
    assert copy[1] == f"{site_packages}/glassbox/pipeline/"
    flags = [c.flags for c in dockerfile.parse_file(str(path)) if c.cmd.upper() == "COPY" and c.value == copy]
    assert flags == [("--from=kernels",)]


@pytest.mark.parametrize("name", ["model", "explainer", "v2"])
def test_numba_cache_dir_is_writable_by_the_runtime_user(name):
    """numba's cached kernels fail at import when no directory is writable, and the non-root user
    cannot write beside the installed package."""
    path = DOCKERFILES[name]
    cache = environment(path)["NUMBA_CACHE_DIR"]
    assert cache.startswith("/") and "site-packages" not in cache
    runs = [command for (command,) in instructions(path, "RUN")]
    made = [c for c in runs if re.search(r"mkdir -p [^&]*(\$NUMBA_CACHE_DIR|" + re.escape(cache) + ")", c)]
    assert made, f"{path.name} never creates {cache}"
    assert re.search(rf"chown -R {RUNTIME_USER} [^&]*(\$NUMBA_CACHE_DIR|{re.escape(cache)})", made[-1])
    assert instructions(path, "USER")[-1] == (RUNTIME_USER,)


def test_queue_image_matches_the_chart():
    path = DOCKERFILES["queue"]
    assert instructions(path, "CMD")[-1] == tuple(VALUES["queue"]["command"])
    assert instructions(path, "EXPOSE")[-1] == (str(VALUES["queue"]["port"]),)
    env = environment(path)
    assert env["GLASSBOX_QUEUE_PORT"] == str(VALUES["queue"]["port"])
    assert (
        env["GLASSBOX_QUEUE_DATABASE_URL"] == "sqlite:////var/lib/glassbox/queue/queue.db"
    )  # the PVC's mount
    # Only what the .dockerignore lets through is copied.
    ignore = (path.parent / f"{path.name}.dockerignore").read_text()
    for source, _dest in (c[:2] for c in instructions(path, "COPY")):
        assert f"!{source.rstrip('/')}" in ignore or f"!{source}*.whl" in ignore, source


@pytest.mark.parametrize("name", ["model", "explainer"])
def test_seldon_images_expose_the_ports_seldon_expects(name):
    exposed = {port for values in instructions(DOCKERFILES[name], "EXPOSE") for port in values}
    assert {"9000", "6000"} <= exposed  # REST and metrics (the PodMonitor's `metrics` port)


@pytest.mark.parametrize("name", ["model", "explainer"])
def test_seldon_images_serve_rest_only_like_the_chart(name):
    """Seldon's gRPC server would be one more process with its own copy of the model (or explainer)."""
    template = (REPO / f"charts/glassbox/templates/{name}-seldondeployment.yaml").read_text()
    assert re.search(r"^\s*transport: rest$", template, re.M)
    assert environment(DOCKERFILES[name])["GRPC_WORKERS"] == "0"


@pytest.mark.helm
def test_v2_image_matches_the_charts_serving_runtime(helm_bin):
    """The ServingRuntime's command is the image's entry point, its ports the ones the image exposes,
    and the image reads artifacts where KServe's storage initializer writes them."""
    from glassbox.deploy.helm import Helm

    path = DOCKERFILES["v2"]
    docs = Helm(binary=helm_bin, namespace="ml").render(
        "glassbox", REPO / "charts/glassbox", (), ["protocol=v2"]
    )
    runtime = next(d for d in docs if d["kind"] == "ServingRuntime")["spec"]["containers"][0]
    assert tuple(runtime["command"]) == instructions(path, "ENTRYPOINT")[-1] == ("glassbox", "serve-v2")
    kserve = VALUES["kserve"]
    exposed = {port for values in instructions(path, "EXPOSE") for port in values}
    assert exposed == {str(kserve[p]) for p in ("httpPort", "grpcPort", "metricsPort")}
    # The image's default arguments are the runtime's, apart from the release's choices.
    assert set(instructions(path, "CMD")[-1]) == set(runtime["args"])
    assert environment(path)["GLASSBOX_MODEL_ARTIFACTS"] == "/mnt/models"
    ignore = (path.parent / f"{path.name}.dockerignore").read_text()
    for source, _dest in (c[:2] for c in instructions(path, "COPY")):
        assert f"!{source.rstrip('/')}" in ignore or f"!{source}*.whl" in ignore, source
    plan = subprocess.run(
        ["make", "-n", "-o", "wheel", "images-docker"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    version = CHART["appVersion"]
    assert f"-f deploy/docker/v2.Dockerfile -t {kserve['image']['repository']}:{version} ." in plan


def test_baked_artifacts_land_where_the_chart_looks():
    copies = instructions(DOCKERFILES["baked"], "COPY")
    assert (
        copies[-1][-1].rstrip("/")
        == VALUES["model"]["artifacts"]["path"]
        == VALUES["explainer"]["artifacts"]["path"]
    )


def test_make_builds_the_images_the_chart_names():
    version = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert CHART["appVersion"] == version  # the chart's default tag is the package version
    plan = subprocess.run(
        ["make", "-n", "-o", "wheel", "images-docker"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    for component in ("model", "explainer", "queue"):
        assert f"-t {VALUES[component]['image']['repository']}:{version} " in plan, component
    assert "-f deploy/docker/queue.Dockerfile" in plan
    s2i = subprocess.run(
        ["make", "-n", "-o", "wheel", "images-s2i"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "s2i build models/loanclassifier seldonio/seldon-core-s2i-python3:" in s2i
    assert f"loanclassifier-explainer:{version}" in s2i


def test_kind_script_passes_shellcheck():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run(
        [str(shellcheck), str(REPO / "deploy/kind/e2e.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.helm
def test_queue_runs_with_the_charts_command_env_and_probes(helm_bin, processes, tmp_path, queue_record):
    """Start the real queue the way the chart's Deployment would, and ask its probe and scrape paths."""
    import base64

    import requests

    from glassbox.deploy.helm import Helm
    from glassbox.stack.process import ManagedProcess, free_port, venv_bin

    docs = Helm(binary=helm_bin, namespace="ml").render("glassbox", REPO / "charts/glassbox")
    secret = next(d for d in docs if d["kind"] == "Secret")["data"]
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "glassbox-queue"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {
        e["name"]: e["value"]
        if "value" in e
        else base64.b64decode(secret[e["valueFrom"]["secretKeyRef"]["key"]]).decode()
        for e in container["env"]
    }
    assert env["GLASSBOX_QUEUE_DATABASE_URL"] == "sqlite:////var/lib/glassbox/queue/queue.db"
    # Only what a laptop cannot have changes: loopback instead of all interfaces, a writable database.
    port = free_port()
    env |= {
        "GLASSBOX_QUEUE_HOST": "127.0.0.1",
        "GLASSBOX_QUEUE_PORT": str(port),
        "GLASSBOX_QUEUE_DATABASE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
    }
    probe = container["readinessProbe"]["httpGet"]["path"]
    command = [venv_bin(container["command"][0]), *container["command"][1:]]
    queue = ManagedProcess(
        "queue", command, tmp_path / "queue.log", env=env, health_url=f"http://127.0.0.1:{port}{probe}"
    )
    processes.append(queue.start(timeout=60))
    assert container["livenessProbe"]["httpGet"]["path"] == probe
    scrape = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert scrape.status_code == 200 and "glassbox_queue_" in scrape.text
    # The owner key from the chart's Secret is the one the queue accepts (the model forwards with it).
    answer = requests.post(
        f"http://127.0.0.1:{port}/api/v1/records/bulk",
        json={"records": [queue_record(1)]},
        headers={"X-API-Key": env["GLASSBOX_QUEUE_OWNER_API_KEY"]},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] == 1


def test_no_deps_install_is_pinned_and_only_in_the_explaining_images():
    """dice-ml goes in with --no-deps (its metadata pulls xgboost, lightgbm, NCCL), pinned by the
    constraints, from the file `make wheel` copies beside the wheel (issue #13); the V2 image's explainer
    runtime offers counterfactuals too, with the V2 constraints."""
    no_deps = (REPO / "requirements/no-deps.txt").read_text().splitlines()
    pinned = [line for line in no_deps if line[:1].isalnum()]
    assert pinned == ["dice-ml==0.12"]
    for constraints in ("constraints.txt", "constraints-v2.txt"):
        assert "dice-ml==0.12" in (REPO / "requirements" / constraints).read_text().splitlines()
    expected = {
        "explainer": "pip install --no-cache-dir --no-deps -c wheels/constraints.txt -r wheels/no-deps.txt",
        "v2": "pip install --no-deps -c constraints.txt -r no-deps.txt",
    }
    for name, path in DOCKERFILES.items():
        runs = [c for (c,) in instructions(path, "RUN", stage="final") if "--no-deps" in c and "pip " in c]
        if name in expected:
            assert len(runs) == 1 and expected[name] in runs[0], (name, runs)
        else:
            assert not runs, name
    plan = subprocess.run(
        ["make", "-n", "-o", "install", "wheel"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "cp requirements/no-deps.txt $d/wheels/" in plan
