"""``nb2kfp publish``: compile notebooks and upload each as a KFP pipeline version (or write the
Kubernetes custom resources for it).

A version is named ``<commit[:12]>-<stamp[:12]>``: the commit (``--commit``, ``CI_COMMIT_SHA`` or git's
HEAD) and the compile stamp (notebook content, repository settings, nb2kfp version), so publishing the
same commit twice uploads nothing. The endpoint is ``--host``, else ``NB2KFP_KFP_ENDPOINT`` or KFP's own
``KF_PIPELINES_ENDPOINT``; the bearer token comes from :func:`nb2kfp.clients.kfp.token_from_env`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from nb2kfp import extras, service
from nb2kfp.errors import NotebookError, RunError, UsageError


def run(
    notebooks: list[Path],
    host: str | None,
    manifests: Path | None,
    commit: str | None,
    report: Callable[[str], None],
    report_error: Callable[[str], None],
    kfp_version: str | None = None,
) -> int:
    from nb2kfp.backends import kfp_manifests
    from nb2kfp.clients import kfp as kfp_client

    if kfp_version is not None:
        kfp_manifests.crd_shape(kfp_version)  # a bad version is a usage error before anything is compiled
    if host is not None and manifests is not None:
        raise UsageError("give --host URL (upload to KFP) or --manifests DIR (write Kubernetes resources), not both")
    if host is None and manifests is None:
        host = kfp_client.endpoint_from_env()
        if host is None:
            raise UsageError(
                "give --host URL (upload to KFP; or set NB2KFP_KFP_ENDPOINT or KF_PIPELINES_ENDPOINT) "
                "or --manifests DIR (write Kubernetes resources)"
            )
    if host is not None:
        extras.require("nb2kfp publish --host", "kfp", "kfp_server_api")
        host = kfp_client.normalize_host(host)
    token = kfp_client.token_from_env() if host is not None else None
    failed = False
    for notebook in notebooks:
        try:
            compiled = service.compile_for_kfp(notebook, report_error, kfp_version)
        except NotebookError as exc:
            for line in exc.lines():
                report_error(line)
            failed = True
            continue
        name = compiled.pipeline.name
        kfp_manifests.refuse_unsupported(name, compiled.documents[1], kfp_version)
        version = service.version_of(compiled, commit)
        description = compiled.pipeline.description
        with tempfile.TemporaryDirectory(prefix="nb2kfp-publish-") as tmp:
            spec = Path(tmp) / "pipeline.yaml"
            spec.write_text(compiled.spec(), encoding="utf-8")
            if manifests is not None:
                paths = kfp_manifests.write_manifests(spec, name, version, manifests, description, kfp_version)
                report(f"{notebook} -> {', '.join(str(p) for p in paths)}")
                continue
            assert host is not None
            try:
                published = service.publish(compiled, spec, host, token, version, description)
            except RunError as exc:  # the server is down or refuses us: the next notebook would fare no better
                report_error(f"{notebook}: {exc}")
                return 1
        what = "published" if published.created else "already there"
        report(f"{notebook}: {name} version {version} {what}: {published.url}")
    return 1 if failed else 0
