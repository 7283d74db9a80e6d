"""Serving logs what it is asked: KServe's logger on the InferenceService, and the local logging proxy."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest
import requests
import yaml

from nb2kfp.serving import manifests, request_log, runtimes
from nb2kfp.serving.local import free_port
from test_serving import model, strict


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / ".git").mkdir()  # settings are looked up no further than here
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_inference_service_logs_requests_and_answers(folder: Path) -> None:
    runtime = runtimes.runtime("mlserver", folder)
    isvc = yaml.safe_load(manifests.render("iris", model(), runtime)["inferenceservice.yaml"])
    assert isvc["spec"]["predictor"]["logger"] == {"mode": "all"}  # KServe's default url (its logger config)
    (folder / "nb2kfp.toml").write_text('[serving]\nrequest_log_url = "http://drift-sink.ml.svc/"\n')
    url = runtimes.request_log_url(folder)
    isvc = yaml.safe_load(manifests.render("iris", model(), runtime, url)["inferenceservice.yaml"])
    strict(isvc, "V1beta1InferenceService")  # kserve's typed models: V1beta1LoggerSpec has mode and url
    assert isvc["spec"]["predictor"]["logger"] == {"mode": "all", "url": "http://drift-sink.ml.svc/"}


class _Upstream(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = json.dumps({"outputs": [{"name": "predict", "data": [len(body["inputs"][0]["data"])]}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


def test_the_proxy_forwards_and_logs_each_inference(tmp_path: Path) -> None:
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    log = request_log.RequestLog(tmp_path / "log", "clf")
    port = free_port()
    try:
        with request_log.Proxy(port, f"http://127.0.0.1:{upstream.server_address[1]}", log):
            base = f"http://127.0.0.1:{port}/v2/models/clf"
            assert requests.get(f"{base}/ready", timeout=5).status_code == 200  # forwarded, not logged
            for n in (1, 3):
                body = {"inputs": [{"name": "input-0", "shape": [n, 1], "datatype": "FP64", "data": [0.5] * n}]}
                answer = requests.post(f"{base}/infer", json=body, timeout=5)
                assert answer.json()["outputs"][0]["data"] == [n]
    finally:
        upstream.shutdown()
    lines = [json.loads(line) for line in (tmp_path / "log" / "requests-clf.jsonl").read_text().splitlines()]
    assert [e["request"]["inputs"][0]["shape"] for e in lines] == [[1, 1], [3, 1]]
    assert [e["response"]["outputs"][0]["data"] for e in lines] == [[1], [3]]
    assert {e["status"] for e in lines} == {200} and {e["model"] for e in lines} == {"clf"} and log.count == 2
