"""Security cases 1 and 3 (issue 14): image references are validated wherever they enter, and the image
policy matches on registry/repository boundaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from clirun import Make, nb2kfp
from nb2kfp.config import find_settings
from nb2kfp.errors import Nb2KfpError, NotebookError, UsageError
from nb2kfp.frontend.builder import build
from nb2kfp.images.step_image import dockerfile
from nb2kfp.requirements import Requirements

INJECTED = "python:3.11-slim\nFROM evil/img:1"


@pytest.mark.parametrize(
    "text",
    [INJECTED, "python:3.11-slim\n", "a b", "--upload-pack=x", "python:3.11;rm -rf /", "case/UPPER", "x" * 300],
)
def test_the_parser_refuses_what_is_not_an_image_reference(text: str) -> None:
    from nb2kfp.oci.ref import BadReference, parse

    with pytest.raises(BadReference) as info:
        parse(text)
    assert text not in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["python:3.11-slim", "localhost:5055/a/b:1", "registry.example.com/ml/x@sha256:" + "ab" * 32, "[::1]:5000/x"],
)
def test_the_parser_takes_image_references(text: str) -> None:
    from nb2kfp.oci.ref import parse

    assert str(parse(text)) == text


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("python:3.11-slim", ""),  # Docker Hub: `split("/")[0]` read the tag as a host
        ("library/python", ""),
        ("nb2kfp/mlserver:abc", ""),
        ("localhost/x", "localhost"),  # no '.' or ':', still a registry
        ("localhost:5055/a/b:1", "localhost:5055"),
        ("registry.example.com/ml/x@sha256:" + "ab" * 32, "registry.example.com"),
        ("[::1]:5000/x", "[::1]:5000"),
    ],
)
def test_the_registry_host_of_a_reference(text: str, host: str) -> None:
    from nb2kfp.oci.ref import host as host_of

    assert host_of(text) == host


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("[::1]:5000", True),  # the reference parser takes it; the port was read as part of the address
        ("[::1]", True),
        ("::1", True),  # as urlsplit gives it
        ("localhost:5055", True),
        ("localhost", True),
        ("127.0.0.1:5000", True),
        ("127.0.0.2", True),
        ("registry.example.com:443", False),
        ("[2001:db8::1]:5000", False),
        ("10.0.0.1", False),
    ],
)
def test_loopback_registries(host: str, loopback: bool) -> None:
    from nb2kfp.oci.registry import is_loopback

    assert is_loopback(host) is loopback


def test_injected_base_image_in_notebook_metadata_is_a_located_error(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "x = 1")], metadata={"kubeflow_notebook": {"base_image": INJECTED}})
    with pytest.raises(NotebookError) as info:
        build(nb)
    text = "\n".join(d.format() for d in info.value.errors)
    assert "kubeflow_notebook.base_image" in text and "not an image reference" in text
    assert "FROM evil" not in text


def test_injected_image_tag_is_a_located_error(make_nb: Make) -> None:
    nb = make_nb([(["step:a", f"image:{INJECTED}"], "x = 1")])
    with pytest.raises(NotebookError) as info:
        build(nb)
    assert any(d.cell == 1 and "not an image reference" in d.message for d in info.value.errors)


def test_injected_steps_defaults_image_is_an_error(make_nb: Make) -> None:
    meta = {"kubeflow_notebook": {"steps_defaults": [f"image:{INJECTED}"]}}
    nb = make_nb([(["step:a"], "x = 1")], metadata=meta)
    with pytest.raises(NotebookError):
        build(nb)


def test_injected_settings_image_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "nb2kfp.toml").write_text('image = "python:3.11-slim\\nFROM evil/img:1"\n')
    with pytest.raises(UsageError) as info:
        find_settings(tmp_path)
    assert "image" in str(info.value) and "FROM evil" not in str(info.value)


def test_bad_allowed_images_entry_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "nb2kfp.toml").write_text('[policy]\nallowed_images = ["python:3.11 slim"]\n')
    with pytest.raises(UsageError):
        find_settings(tmp_path)


def test_the_dockerfile_renderer_refuses_an_unvalidated_base() -> None:
    """The last line of defence: whatever the caller, no text that is not a reference reaches FROM."""
    from nb2kfp.ir import Pipeline

    pipeline = Pipeline(name="p", source="nb.ipynb", source_hash="0", steps=())
    with pytest.raises(Nb2KfpError):
        dockerfile(pipeline, INJECTED, Requirements((), "requirements.txt"))


def test_build_base_flag_and_model_image_flag_are_usage_errors(tmp_path: Path, make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "x = 1")])
    proc = nb2kfp("build", str(nb), "--registry", "127.0.0.1:1", "--base", INJECTED, cwd=tmp_path)
    assert proc.returncode == 2 and "--base" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    (tmp_path / "model.bin").write_bytes(b"m")
    proc = nb2kfp("model", "build", "model.bin", "--image", "127.0.0.1:1/m:1\nx", cwd=tmp_path)
    assert proc.returncode == 2 and "--image" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("image", "prefix", "allowed"),
    [
        ("python:3.11-slim", "python:3.11-slim", True),
        ("python:3.11-slim@sha256:" + "ab" * 32, "python:3.11-slim", False),  # issue 24 case 6: the digest is pulled
        ("python@sha256:" + "ab" * 32, "python@sha256:" + "ab" * 32, True),
        ("python:3.11-slim@sha256:" + "ab" * 32, "python@sha256:" + "ab" * 32, True),
        ("python:3.11-slim@sha256:" + "cd" * 32, "python@sha256:" + "ab" * 32, False),
        ("python:3.11-slim-evil", "python:3.11-slim", False),
        ("registry.example.com/ml/step:1", "registry.example.com/ml", True),
        ("registry.example.com/ml/step:1", "registry.example.com/ml/", True),
        ("registry.example.com/ml-evil/step:1", "registry.example.com/ml", False),
        ("registry.example.com.evil.net/ml/step:1", "registry.example.com", False),
        ("localhost:5055/x:1", "localhost:5055/", True),
        ("localhost:50555/x:1", "localhost:5055/", False),
        ("localhost:5055/x:1", "localhost:5055", True),
        ("[::1]:5000/x:1", "[::1]:5000", True),  # a registry entry: it was refused as "not an image reference"
        ("[::1]:5000/x:1", "[::1]:5001", False),
    ],
)
def test_image_prefixes_match_on_boundaries(image: str, prefix: str, allowed: bool) -> None:
    from nb2kfp.oci.ref import allowed_by

    assert allowed_by(image, prefix) is allowed


def test_a_tag_entry_does_not_allow_another_image_by_digest(make_nb: Make, tmp_path: Path) -> None:
    """Issue 24, case 6: `REG/repo:approved@sha256:<another image>` ran the other image under the approved tag."""
    (tmp_path / "nb2kfp.toml").write_text('[policy]\nallowed_images = ["127.0.0.1:5055/ml/base:approved"]\n')
    other = "127.0.0.1:5055/ml/base:approved@sha256:" + "66" * 32
    nb = make_nb([(["step:a", f"image:{other}"], "x = 1")])
    with pytest.raises(NotebookError) as info:
        build(nb, find_settings(nb.parent))
    assert [d.code for d in info.value.errors] == ["NB070"] and other in info.value.errors[0].format()
    nb = make_nb([(["step:a", "image:127.0.0.1:5055/ml/base:approved"], "x = 1")], name="tag.ipynb")
    assert build(nb, find_settings(nb.parent)).pipeline.steps[0].image == "127.0.0.1:5055/ml/base:approved"


def test_policy_prefix_without_boundary_refuses_the_lookalike_image(make_nb: Make, tmp_path: Path) -> None:
    (tmp_path / "nb2kfp.toml").write_text('[policy]\nallowed_images = ["python:3.11-slim"]\n')
    nb = make_nb([(["step:a", "image:python:3.11-slim-evil"], "x = 1"), (["step:b", "prev:a"], "print(x)")])
    with pytest.raises(NotebookError) as info:
        build(nb, find_settings(nb.parent))
    assert any(d.code == "NB070" for d in info.value.errors)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("https://kfp.example.com", True),
        ("https://KFP.example.com:443/", True),
        ("https://kfp.example.com/pipeline", True),
        ("https://kfp.example.com.evil.net", False),
        ("https://kfp.example.com@evil.net", False),
        ("http://kfp.example.com", False),
        ("https://kfp.example.com:8443", False),
        ("https://evil.net/?https://kfp.example.com", False),
    ],
)
def test_endpoints_compare_scheme_host_and_port(host: str, allowed: bool, tmp_path: Path) -> None:
    from nb2kfp.errors import PolicyError
    from nb2kfp.security.policy import check_endpoint

    (tmp_path / "nb2kfp.toml").write_text('[policy]\nallowed_endpoints = ["https://kfp.example.com"]\n')
    settings = find_settings(tmp_path)
    if allowed:
        check_endpoint(settings, host)
    else:
        with pytest.raises(PolicyError) as info:
            check_endpoint(settings, host)
        assert "evil.net@" not in str(info.value)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("https://h.example.com/kfp", True),
        ("https://h.example.com/kfp/ns", True),
        ("https://h.example.com/kfp-evil", False),
    ],
)
def test_endpoint_paths_match_on_slash_boundaries(host: str, allowed: bool, tmp_path: Path) -> None:
    from nb2kfp.errors import PolicyError
    from nb2kfp.security.policy import check_endpoint

    (tmp_path / "nb2kfp.toml").write_text('[policy]\nallowed_endpoints = ["https://h.example.com/kfp/"]\n')
    try:
        check_endpoint(find_settings(tmp_path), host)
        assert allowed
    except PolicyError:
        assert not allowed


def test_userinfo_in_an_allowed_endpoint_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "nb2kfp.toml").write_text('[policy]\nallowed_endpoints = ["http://allowed@evil"]\n')
    with pytest.raises(UsageError):
        find_settings(tmp_path)


def test_publish_manifests_refuses_unpinned_images_and_writes_nothing(make_nb: Make, tmp_path: Path) -> None:
    (tmp_path / "nb2kfp.toml").write_text("[policy]\nrequire_digest = true\n")
    nb = make_nb([(["step:a"], "x = 1")])
    proc = nb2kfp("publish", str(nb), "--manifests", "out", "--commit", "c0ffee", cwd=tmp_path)
    assert proc.returncode == 1 and "not pinned by digest" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
