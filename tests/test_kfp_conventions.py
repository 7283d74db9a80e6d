"""KFP's own conventions for where the API and its token are: ``--host`` as kfp.Client takes it, and
KF_PIPELINES_ENDPOINT / KF_PIPELINES_TOKEN / the service account token path, after nb2kfp's own names."""

from __future__ import annotations

from pathlib import Path

import pytest

from nb2kfp.clients import kfp as kfp_client
from nb2kfp.errors import UsageError

VARIABLES = (
    "NB2KFP_KFP_ENDPOINT",
    "KF_PIPELINES_ENDPOINT",
    "NB2KFP_KFP_TOKEN",
    "NB2KFP_KFP_TOKEN_FILE",
    "KF_PIPELINES_TOKEN",
    "KF_PIPELINES_SA_TOKEN_PATH",
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kfp_client, "SA_TOKEN_PATH", str(tmp_path / "no-such-token"))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("kfp.example.com:8888", "https://kfp.example.com:8888"),  # kfp.Client: no scheme means https
        ("localhost:8080/pipeline/", "https://localhost:8080/pipeline"),
        ("ml-pipeline.kubeflow.svc.cluster.local:8888", "https://ml-pipeline.kubeflow.svc.cluster.local:8888"),
        (" http://127.0.0.1:8888/ ", "http://127.0.0.1:8888"),
        ("https://kfp.example.com/pipeline", "https://kfp.example.com/pipeline"),
    ],
)
def test_host_takes_what_kfp_client_takes(given: str, expected: str) -> None:
    assert kfp_client.normalize_host(given) == expected


@pytest.mark.parametrize("given", ["", "  ", "ftp://kfp.example.com", "https://", "https:///path", "kfp example.com"])
def test_host_refuses_what_is_no_address(given: str) -> None:
    with pytest.raises(UsageError, match="HOST:PORT"):
        kfp_client.normalize_host(given)


def test_endpoint_nb2kfp_name_first(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kfp_client.endpoint_from_env() is None
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", "kfp-a:8888")
    assert kfp_client.endpoint_from_env() == "kfp-a:8888"
    monkeypatch.setenv("NB2KFP_KFP_ENDPOINT", "https://kfp-b")
    assert kfp_client.endpoint_from_env() == "https://kfp-b"


def test_token_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each source, added in turn from the last to the first, wins over those before it."""
    assert kfp_client.token_from_env() is None

    def file(name: str, text: str) -> str:
        (tmp_path / name).write_text(text + "\n")
        return str(tmp_path / name)

    monkeypatch.setattr(kfp_client, "SA_TOKEN_PATH", file("sa", "from-the-pod"))
    assert kfp_client.token_from_env() == "from-the-pod"
    steps = [
        ("KF_PIPELINES_SA_TOKEN_PATH", file("kfp-path", "from-kfp-path"), "from-kfp-path"),
        ("KF_PIPELINES_TOKEN", "from-kfp-variable", "from-kfp-variable"),
        ("NB2KFP_KFP_TOKEN_FILE", file("ours", "from-nb2kfp-file"), "from-nb2kfp-file"),
        ("NB2KFP_KFP_TOKEN", "from-nb2kfp-variable", "from-nb2kfp-variable"),
    ]
    for variable, value, expected in steps:
        monkeypatch.setenv(variable, value)
        assert kfp_client.token_from_env() == expected, variable


def test_unreadable_token_path_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(UsageError, match=r"KF_PIPELINES_SA_TOKEN_PATH=.*missing: cannot read it"):
        kfp_client.token_from_env()
