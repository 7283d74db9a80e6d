"""The serving programs a model image plugs into, one pinned image per runtime, and which models each can load.

``mlserver``: the MLServer image nb2kfp builds offline from ``mlserver.lock`` (MLServer 1.7.1, scikit-learn 1.9.1)
on the project's base image; ``model serve --local`` builds it, a cluster pulls it from wherever
``[tool.nb2kfp.serving] mlserver_image`` says it was pushed. ``kserve``: KServe's sklearnserver v0.15.2
(scikit-learn ~1.5.1 in its pyproject). A scikit-learn pickle loads reliably only in the scikit-learn release it was
saved with, so a runtime accepts models whose major.minor matches its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from nb2kfp.config import find_settings
from nb2kfp.errors import UsageError
from nb2kfp.serving import image as serving_image
from nb2kfp.serving.meta import ModelMeta


@dataclass(frozen=True)
class Runtime:
    name: str
    image: str
    framework: str
    framework_version: str  # the exact version in the image; models must match its major.minor
    port: int
    args: tuple[str, ...]
    user: int  # the image's non-root user (KServe's uidModelcar)

    def check(self, meta: ModelMeta, ref: str) -> None:
        """Refuse, in one line, a model this runtime cannot load."""
        if not meta.framework or not meta.framework_version:
            raise UsageError(
                f"{ref}: the image records no framework version (rebuild it with "
                f"nb2kfp model build PATH --framework {self.framework}=={self.framework_version})"
            )
        if meta.framework != self.framework or _minor(meta.framework_version) != _minor(self.framework_version):
            raise UsageError(
                f"{ref}: saved with {meta.framework} {meta.framework_version}, but the {self.name} runtime "
                f"({self.image}) loads {self.framework} {_minor(self.framework_version)}.x: retrain with "
                f"{self.framework}=={self.framework_version} or pin a runtime that matches"
            )


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _pinned(name: str) -> str:
    for line in serving_image.lock_text().splitlines():
        if line.startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{serving_image.LOCK} pins no {name}")  # pragma: no cover - the lock is part of the package


def runtime(name: str, folder: Path) -> Runtime:
    """The runtime NAME with the image settings pin (``[tool.nb2kfp.serving]``) or nb2kfp's default."""
    settings = find_settings(folder)
    pinned = dict(settings.serving)
    if name == "mlserver":
        default = Runtime(
            "mlserver",
            serving_image.mlserver_tag(settings.image),
            "scikit-learn",
            _pinned("scikit-learn"),
            8080,
            (),
            1000,
        )
    elif name == "kserve":
        default = Runtime(
            "kserve",
            "docker.io/kserve/sklearnserver:v0.15.2",
            "scikit-learn",
            "1.5.1",
            8080,
            ("--model_dir=/mnt/models", "--http_port=8080"),
            1000,
        )
    else:
        raise UsageError(f"--runtime {name!r}: choose mlserver or kserve")
    image = pinned.get(f"{name}_image", default.image)
    version = pinned.get(f"{name}_{default.framework}", default.framework_version)
    return replace(default, image=image, framework_version=version)


def request_log_url(folder: Path) -> str:
    """Where KServe's logger sends each request and answer (``[serving] request_log_url``; "": KServe's default)."""
    return dict(find_settings(folder).serving).get("request_log_url", "")
