"""Batches for real: a `serve` subprocess (the tiny detector, so forwards take milliseconds)
answering `application/jsonlines` and `application/x-recordio` requests with one JSON line per
image, each equal to the answer the image gets alone; bad lines refused naming them; and the
inference toolkit's serving variables (default Accept, timeout alias, log level) at work."""

import base64
import io
import json

import pytest

from cli_runner import run_cli
from serve_process import Server
from serving_samples import encode, noise
from ssd_sagemaker.data.formats.recordio import pack, write_record

pytestmark = pytest.mark.slow  # starts a real serve

JSONL = "application/jsonlines"
IMAGES = [encode(noise(160 + 16 * i, 120 + 8 * i, seed=i)) for i in range(5)]


def _line(image: bytes, **extra) -> bytes:
    return json.dumps({"image": base64.b64encode(image).decode(), **extra}).encode()


def _records(images) -> bytes:
    stream = io.BytesIO()
    for index, image in enumerate(images):
        write_record(stream, pack([2, 5, 0, 0.1, 0.1, 0.5, 0.5], image, 100 + index))
    return stream.getvalue()


def _same_answer(line, single) -> bool:
    """The same JSON answer, numbers equal to float32 rounding: a batched forward sums in
    another order than a forward of one image (seen: 0.67585796 vs 0.67585802)."""
    if isinstance(single, dict):
        return isinstance(line, dict) and line.keys() == single.keys() and all(
            _same_answer(line[key], single[key]) for key in single)
    if isinstance(single, list):
        return isinstance(line, list) and len(line) == len(single) and all(
            _same_answer(a, b) for a, b in zip(line, single))
    if isinstance(single, float):
        return line == pytest.approx(single, abs=1e-5)
    return line == single


def _all_same(lines, singles) -> bool:
    return len(lines) == len(singles) and all(
        _same_answer(line, single) for line, single in zip(lines, singles))


@pytest.fixture(scope="module")
def singles(tiny_server):
    """Each image's answer alone (default JSON), as bytes."""
    answers = [tiny_server.post(image) for image in IMAGES]
    assert all(answer.status_code == 200 for answer in answers)
    return [answer.content for answer in answers]


def test_jsonlines_batch_answers_each_line_as_its_image_alone(tiny_server, singles):
    body = b"\n".join(_line(image) for image in IMAGES) + b"\n"
    answer = tiny_server.post(body, content_type=JSONL)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == JSONL
    assert _all_same([json.loads(line) for line in answer.content.split(b"\n")],
                     [json.loads(single) for single in singles])
    assert all(json.loads(line)["prediction"] for line in singles)  # something to compare


def test_jsonlines_ids_are_echoed_in_order(tiny_server, singles):
    body = b"\n".join(_line(image, id=f"img-{i}") for i, image in enumerate(IMAGES))
    lines = tiny_server.post(body, content_type=JSONL).content.split(b"\n")
    assert _all_same([json.loads(line) for line in lines], [
        {"id": f"img-{i}", **json.loads(single)} for i, single in enumerate(singles)])
    assert all(line.startswith(f'{{"id":"img-{i}",'.encode()) for i, line in enumerate(lines))


def test_verbose_lines_follow_accept(tiny_server):
    single = tiny_server.post(IMAGES[2], Accept="application/json;verbose").json()
    answer = tiny_server.post(_line(IMAGES[2]), content_type=JSONL,
                         Accept="application/jsonlines;verbose")
    assert _same_answer(json.loads(answer.content), single)
    assert single["image_size"]["width"] == 192 and len(single["class_names"]) > 0


def test_recordio_batch_answers_each_record_with_its_id(tiny_server, singles):
    answer = tiny_server.post(_records(IMAGES), content_type="application/x-recordio")
    assert answer.status_code == 200, answer.text
    assert _all_same([json.loads(line) for line in answer.content.split(b"\n")], [
        {"id": 100 + i, **json.loads(single)} for i, single in enumerate(singles)])


@pytest.mark.parametrize("bad_line, status, fragment", [
    (b"{not json", 400, "line 3 is not JSON"),
    (b'{"picture": "AAAA"}', 400, 'line 3 has no "image" string'),
    (b'{"image": "%%%%"}', 400, 'line 3: "image" is not base64'),
    (json.dumps({"image": base64.b64encode(b"GIF89a" + bytes(40)).decode()}).encode(), 415,
     "line 3: the body is a GIF file"),
    (_line(IMAGES[0][:200]), 400, "line 3: the body is truncated"),
])
def test_a_bad_line_refuses_the_batch_naming_the_line(tiny_server, bad_line, status, fragment):
    body = b"\n".join([_line(IMAGES[0]), _line(IMAGES[1]), bad_line, _line(IMAGES[2])])
    answer = tiny_server.post(body, content_type=JSONL)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    assert fragment in answer.json()["error"] and "prediction" not in answer.text


def test_a_cut_recordio_body_and_an_empty_batch_are_refused(tiny_server):
    cut = tiny_server.post(_records(IMAGES)[:-7], content_type="application/x-recordio")
    assert cut.status_code == 400 and "the body is not RecordIO after 4 records" in \
        cut.json()["error"]
    empty = tiny_server.post(b"\n\n", content_type=JSONL)
    assert empty.status_code == 400 and "holds no image" in empty.json()["error"]


def test_a_batch_cannot_be_answered_with_an_image(tiny_server):
    answer = tiny_server.post(_line(IMAGES[0]), content_type=JSONL, Accept="image/jpeg")
    assert answer.status_code == 406 and JSONL in answer.json()["error"]


def test_execution_parameters_advertise_multirecord(tiny_server):
    import requests

    parameters = requests.get(f"{tiny_server.url}/execution-parameters", timeout=10).json()
    assert parameters["BatchStrategy"] == "MultiRecord"


def test_toolkit_variables_default_accept_timeout_alias_and_log_level(tiny_opt_ml):
    quiet = Server(tiny_opt_ml, SAGEMAKER_MODEL_SERVER_WORKERS="1",
                   SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="application/json;annotation=1",
                   SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS="17",
                   SAGEMAKER_CONTAINER_LOG_LEVEL="WARNING")
    try:
        quiet.wait_ready()
        plain = quiet.post(IMAGES[0])
        assert plain.status_code == 200 and "annotations" in plain.json()
        assert "prediction" in quiet.post(IMAGES[0], Accept="application/json").json()
        line = json.loads(quiet.post(_line(IMAGES[0]), content_type=JSONL).content)
        assert "annotations" in line
    finally:
        assert quiet.stop() == 0, quiet.output()[-3000:]
    log = quiet.output()
    assert "serving vgg-16 SSD" not in log and "POST /invocations" not in log, log[-2000:]
    informative = Server(tiny_opt_ml, SAGEMAKER_MODEL_SERVER_WORKERS="1",
                         SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS="17",
                         SAGEMAKER_CONTAINER_LOG_LEVEL="20")
    try:
        informative.wait_ready()
        informative.post(IMAGES[0])
    finally:
        assert informative.stop() == 0
    assert "timeout 17 s" in informative.output()
    assert "POST /invocations" in informative.output()


@pytest.mark.parametrize("variables, fragment", [
    ({"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"},
     "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT='text/csv' is not a response type"),
    ({"SAGEMAKER_CONTAINER_LOG_LEVEL": "LOUD"},
     "SAGEMAKER_CONTAINER_LOG_LEVEL='LOUD' is not a log level"),
    ({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "30", "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS": "40"},
     "SAGEMAKER_MODEL_SERVER_TIMEOUT=30 and SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS=40 disagree"),
])
def test_bad_toolkit_variables_stop_serve_at_start(tiny_opt_ml, variables, fragment):
    done = run_cli(tiny_opt_ml, "serve", timeout=120, **variables)
    assert done.returncode == 1 and fragment in done.stdout, done.stdout[-2000:]
    assert "Traceback" not in done.stdout


def test_ids_must_be_strings_or_numbers(tiny_server):
    answer = tiny_server.post(_line(IMAGES[0], id={"a": 1}), content_type=JSONL)
    assert answer.status_code == 400 and 'line 1: "id" is {"a": 1}' in answer.json()["error"]
