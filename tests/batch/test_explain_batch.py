"""``glassbox explain-batch`` on a local Ray: the same output serially and on 1 or 2 workers, a failing
row, a run killed with SIGKILL and resumed, bad input lines refused before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from glassbox.batch.job import BatchRequest, run_batch
from glassbox.errors import InvalidInput
from glassbox.stack.process import venv_bin

from .conftest import FAST_ANCHORS, write_jsonl

pytestmark = pytest.mark.slow

ROWS = 24
FAIL_AGE = 77  # row r0005 gets this age: the plug-in method fails on it, and on no other row
FAULTY = "faulty_method:load"
# The plug-in also sleeps a little per row, so a run lasts long enough to be killed half-way.
PARAMS = {"anchors": FAST_ANCHORS, FAULTY: {"fail_age": FAIL_AGE, "sleep_s": 0.1}}


@pytest.fixture(scope="module")
def batch_input(tmp_path_factory, adult_test_rows) -> Path:
    rows = adult_test_rows[:ROWS].copy()
    assert FAIL_AGE not in rows[:, 0]
    rows[5, 0] = FAIL_AGE
    return write_jsonl(tmp_path_factory.mktemp("batch") / "rows.jsonl", rows)


def request(batch_input: Path, artifacts: Path, output: Path, workers: int, **kw) -> BatchRequest:
    return BatchRequest(
        input=batch_input, artifacts=artifacts, output=output, methods=("anchors", FAULTY), params=PARAMS,
        workers=workers, chunk_size=2, progress=False, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def serial_output(local_ray, batch_input, trained_artifacts, tmp_path_factory) -> Path:
    """The reference: every row in this process, no Ray."""
    output = tmp_path_factory.mktemp("serial") / "out.jsonl"
    result = run_batch(request(batch_input, trained_artifacts, output, workers=0))
    assert result.stats.explained == ROWS and result.stats.failed == 1
    return output


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [venv_bin("glassbox"), "explain-batch", *args], capture_output=True, text=True, timeout=timeout
    )


def cli_args(batch_input: Path, artifacts: Path, output: Path, *extra: str) -> list[str]:
    args = [str(batch_input), "--artifacts", str(artifacts), "--output", str(output), "--no-progress"]
    args += ["--method", "anchors", "--method", FAULTY, "--chunk-size", "2"]
    args += [f"--params={name}={json.dumps(value)}" for name, value in PARAMS.items()]
    return [*args, *extra]


@pytest.mark.parametrize("workers", [1, 2])
def test_ray_output_is_byte_identical_to_the_serial_run(
    local_ray, batch_input, trained_artifacts, serial_output, tmp_path, workers
):
    output = tmp_path / "out.jsonl"
    result = run_batch(request(batch_input, trained_artifacts, output, workers=workers))
    assert result.stats.explained == ROWS and len(result.stats.worker_peak_bytes) == workers
    assert output.read_bytes() == serial_output.read_bytes()


def test_a_failing_row_is_written_with_its_error_and_the_rest_go_on(serial_output):
    records = [json.loads(line) for line in serial_output.read_text().splitlines()]
    assert [r["id"] for r in records] == [f"r{i:04d}" for i in range(ROWS)]  # input order
    failed = [r for r in records if r["errors"]]
    assert [r["id"] for r in failed] == ["r0005"]
    assert "ValueError: this method refuses Age 77" in failed[0]["errors"][FAULTY]
    assert failed[0]["explanations"]["anchors"]["anchor"]  # the other method still explained it
    assert all(set(r["explanations"]) == {"anchors", FAULTY} for r in records if not r["errors"])
    seeds = {r["seed"] for r in records}
    assert len(seeds) == ROWS  # one seed per row id


def test_a_killed_run_resumes_from_its_output(
    local_ray, batch_input, trained_artifacts, serial_output, tmp_path
):
    output = tmp_path / "out.jsonl"
    args = cli_args(batch_input, trained_artifacts, output, "--ray-address", local_ray, "--workers", "2")
    argv = [venv_bin("glassbox"), "explain-batch", *args]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if output.exists() and output.read_text().count("\n") >= 6:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    finished = output.read_text().count("\n")
    assert 6 <= finished < ROWS
    with open(output, "a") as handle:  # a torn last line, as a kill during a write leaves it
        handle.write(
            '{"artifact_sha256": "3eed66',
        )
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{ROWS - finished} explained now" in resumed.stdout
    assert f"{finished} done by an earlier run" in resumed.stdout
    assert output.read_bytes() == serial_output.read_bytes()


def test_output_of_another_job_is_not_resumed(batch_input, trained_artifacts, serial_output, tmp_path):
    output = tmp_path / "out.jsonl"
    output.write_bytes(serial_output.read_bytes())
    with pytest.raises(InvalidInput, match="written by another job"):
        run_batch(request(batch_input, trained_artifacts, output, workers=0, seed=1))
    assert output.read_bytes() == serial_output.read_bytes()


def test_bad_input_lines_are_reported_with_their_numbers_before_any_work(trained_artifacts, tmp_path):
    features = "Age,Workclass,Education,Marital Status,Occupation,Relationship,Race,Sex,Capital Gain,"
    features += "Capital Loss,Hours per week,Country"
    good = "39,State-gov,Bachelors,Never-Married,Admin,Not-in-family,White,Male,2174,0,40,United-States"
    lines = [
        f"id,{features}",
        f"a,{good}",
        f"b,{good.replace('Male,', 'Male,2174,')}",  # line 3: width
        f"c,{good}",
        f"d,{good.replace('State-gov', 'Stat-gov')}",  # line 5: unknown category
        f"e,{good.replace('39,', 'thirty-nine,', 1)}",
        f"a,{good}",
    ]  # line 6: number, line 7: id twice
    source = tmp_path / "rows.csv"
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out.jsonl"
    done = cli(str(source), "--artifacts", str(trained_artifacts), "--output", str(output), timeout=120)
    assert done.returncode == 2, done.stderr
    assert "4 bad input line(s); nothing was explained" in done.stderr
    assert "line 3: has 14 values; the header names 13 columns" in done.stderr
    assert "line 5: feature 'Workclass': unknown category 'Stat-gov'" in done.stderr
    assert "line 6: feature 'Age': expected a number, got text 'thirty-nine'" in done.stderr
    assert "line 7: id 'a' is also on line 2" in done.stderr
    assert not output.exists()  # checked before anything ran: no Ray, no output


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_most_doubtful_rows_go_to_the_review_queue(
    start_queue, batch_input, trained_artifacts, serial_output, tmp_path
):
    queue = start_queue()
    output = tmp_path / "out.jsonl"
    output.write_bytes(serial_output.read_bytes())  # a finished run: nothing to explain, only to send
    args = cli_args(batch_input, trained_artifacts, output, "--serial", "--queue-url", queue.url)
    args += ["--api-key", queue.owner_key, "--review-top-k", "5"]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert "0 explained now" in first.stdout and "review queue: 5 created, 0 already there" in first.stdout
    assert "5 created" not in cli(*args).stdout  # the same ids again: the queue keeps one of each

    records = [json.loads(line) for line in serial_output.read_text().splitlines()]
    explained = [r for r in records if not r["errors"]]
    lowest = sorted(explained, key=lambda r: (r["explanations"]["anchors"]["precision"], r["id"]))[:5]
    page = queue.call("GET", "/api/v1/records?source=batch-explain&limit=100").json()
    assert page["total"] == 5
    sent = {r["metadata"]["row_id"]: r for r in page["records"]}
    assert set(sent) == {r["id"] for r in lowest}
    for record in lowest:
        queued = sent[record["id"]]
        anchors = record["explanations"]["anchors"]
        assert queued["source"] == "batch-explain" and queued["id"].endswith(f":{record['id']}")
        assert queued["metadata"]["anchor_precision"] == anchors["precision"]
        assert queued["explanation"]["anchor"] == anchors["anchor"]
        assert queued["decoded"] == record["instance"] and queued["predicted_label"] == record["prediction"]
        # The plug-in names only Age: its disagreement with the anchor is 1 - Jaccard of the two sets.
        features = set(anchors["features"])
        expected = 1 - len(features & {"Age"}) / len(features | {"Age"})
        assert queued["metadata"]["disagreement"] == pytest.approx(expected)


def test_retry_failed_redoes_only_the_failed_rows(batch_input, trained_artifacts, serial_output, tmp_path):
    output = tmp_path / "out.jsonl"
    output.write_bytes(serial_output.read_bytes())
    result = run_batch(request(batch_input, trained_artifacts, output, workers=0, retry_failed=True))
    assert result.resumed == ROWS - 1 and result.stats.explained == 1 and result.stats.failed == 1
    assert output.read_bytes() == serial_output.read_bytes()  # the row fails the same way again


def test_the_explainers_other_methods_run_on_ray_as_serially(
    local_ray, batch_input, trained_artifacts, tmp_path
):
    """Attributions (TreeSHAP) and counterfactuals (DiCE, seeded by the row's id) beside anchors."""
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(batch_input.read_text().splitlines(keepends=True)[:6]))
    params = {"anchors": FAST_ANCHORS, "counterfactuals": {"counterfactuals": {"k": 2, "sample_size": 200}}}
    outputs = []
    for workers in (0, 2):
        output = tmp_path / f"out-{workers}.jsonl"
        methods = ("anchors", "attributions", "counterfactuals")
        result = run_batch(
            BatchRequest(input=source, artifacts=trained_artifacts, output=output, methods=methods,
                         params=params, workers=workers, chunk_size=1, progress=False)
        )  # fmt: skip
        assert result.stats.failed == 0, [r["errors"] for r in result.records if r["errors"]]
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]
    for record in result.records:
        attributions = record["explanations"]["attributions"]
        assert (
            len(attributions["features"]) == 4
            and attributions["attributions"]["class"] == record["prediction"]
        )
        counterfactuals = record["explanations"]["counterfactuals"]["counterfactuals"]
        for item in counterfactuals["items"]:
            assert item["prediction"] != record["prediction"] and item["verified"]


def test_a_worker_that_dies_fails_its_rows_and_the_others_finish(
    local_ray, batch_input, trained_artifacts, tmp_path
):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(batch_input.read_text().splitlines(keepends=True)[:10]))  # r0005: Age 77
    output = tmp_path / "out.jsonl"
    result = run_batch(
        BatchRequest(input=source, artifacts=trained_artifacts, output=output, methods=(FAULTY,),
                     params={FAULTY: {"exit_age": FAIL_AGE, "sleep_s": 0.05}}, workers=2, chunk_size=1,
                     progress=False)
    )  # fmt: skip
    assert [r["id"] for r in result.records] == [f"r{i:04d}" for i in range(10)]  # every row, in order
    lost = {r["id"]: r["errors"]["worker"] for r in result.records if r["errors"]}
    assert "r0005" in lost and len(lost) <= 2  # its chunk, and the one queued behind it on that actor
    assert all(message.startswith("ActorDiedError") for message in lost.values()), lost
    assert len(result.stats.worker_peak_bytes) == 1  # the survivor explained the rest
