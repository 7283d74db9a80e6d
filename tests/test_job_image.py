"""job-image/requirements.txt pins every package the job image installs: a dependency added to pyproject.toml
without a new pin would fail the offline image build only on a release tag (tests/integration/test_ci_release.py
builds it), so check it here, fast."""

from __future__ import annotations

import re
import sys

from conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

EXTRAS = ("run", "containers", "gitlab")  # what job-image/Dockerfile installs


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_every_requirement_of_the_job_image_is_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = [r for r in project["dependencies"] if "python_version" not in r]
    for extra in EXTRAS:
        needed += project["optional-dependencies"][extra]
    pins = {}
    for line in (ROOT / "job-image" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"job-image/requirements.txt: {line!r} is not pinned with =="
            pins[_name(name)] = version
    missing = sorted({_name(r) for r in needed} - set(pins))
    assert not missing, f"job-image/requirements.txt lacks {missing}: regenerate it (see its header)"
