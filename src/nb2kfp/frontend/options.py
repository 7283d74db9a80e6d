"""Step options and pipeline settings: resources KFP v2 can express, Kale volumes, the shared workspace, and the
image policy. Each check reports located diagnostics; nothing is silently dropped."""

from __future__ import annotations

import json
import re

from nb2kfp import kfpnames
from nb2kfp.config import Settings
from nb2kfp.errors import Diagnostic, error, warning
from nb2kfp.frontend.notebook import StepOptions
from nb2kfp.ir import Parameter, Step, VolumeMount
from nb2kfp.oci import ref as imageref

_CPU = re.compile(r"^[0-9]+(\.[0-9]+)?m?$")
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?(E|P|T|G|M|K|k|Ei|Pi|Ti|Gi|Mi|Ki)?$")


def check_options(
    path: str,
    steps: list[tuple[str, int, StepOptions]],
    defaults: StepOptions,
    meta: dict[str, object],
    diags: list[Diagnostic],
) -> None:
    """Resource limits KFP v2 can express (none silently dropped); Kale settings nb2kfp does not apply yet.
    ``steps`` holds each step's name, first cell and options."""
    for step_name, cell, options in steps:
        merged = options.merged_over(defaults)
        limits = merged.limits
        for name, amount in sorted(merged.requests.items()):
            if name not in ("cpu", "memory") or not (_CPU if name == "cpu" else _MEMORY).match(amount):
                msg = f"request:{name}:{amount}: KFP v2 takes requests for cpu (2, 500m) and memory (512Mi, 4Gi)"
                diags.append(error(path, msg, "NB050", cell))
        for name, amount in sorted(limits.items()):
            if name == "cpu" and not _CPU.match(amount):
                diags.append(
                    error(path, f"limit:cpu:{amount}: give cores (2, 0.5) or millicores (500m)", "NB050", cell)
                )
            elif name == "memory" and not _MEMORY.match(amount):
                diags.append(
                    error(path, f"limit:memory:{amount}: give bytes with a unit (512Mi, 4Gi, 2G)", "NB050", cell)
                )
            elif "/" in name and not (amount.isdigit() and int(amount) > 0):
                diags.append(
                    error(path, f"limit:{name}:{amount}: an accelerator count is a whole number", "NB050", cell)
                )
            elif name not in ("cpu", "memory") and "/" not in name:
                msg = f"limit:{name} cannot be set through KFP v2: use cpu, memory or an accelerator (nvidia.com/gpu)"
                diags.append(error(path, msg, "NB050", cell))
        accelerators = sorted(n for n in limits if "/" in n)
        if len(accelerators) > 1:
            msg = f"step {step_name!r} asks for {' and '.join(accelerators)}: KFP v2 gives a step one accelerator type"
            diags.append(error(path, msg, "NB051", cell))
    raw_volumes = meta.get("volumes")
    for volume in raw_volumes if isinstance(raw_volumes, list) else []:
        if not (
            isinstance(volume, dict)
            and volume.get("type") == "pvc"
            and volume.get("name")
            and volume.get("mount_point")
        ):
            kind = volume.get("type") if isinstance(volume, dict) else type(volume).__name__
            msg = f"kubeflow_notebook.volumes: a {kind!r} volume is not supported yet (only existing PVCs, type 'pvc')"
            diags.append(warning(path, msg, "NB052"))
    for key in ("katib_run", "snapshot_volumes", "autosnapshot"):
        if meta.get(key):
            msg = f"kubeflow_notebook.{key} is not supported yet: the compiled pipeline does not include it"
            diags.append(warning(path, msg, "NB052"))


def workspace(path: str, meta: dict[str, object], settings: Settings, diags: list[Diagnostic]) -> str:
    """The size of the run's shared volume: notebook metadata `kubeflow_notebook.workspace`, else settings."""
    size = meta.get("workspace", settings.workspace) or ""
    if not isinstance(size, str) or (size and not _MEMORY.match(size)):
        diags.append(error(path, f"kubeflow_notebook.workspace: {size!r} is not a size such as '10Gi'", "NB054"))
        return ""
    return size


def volumes(meta: dict[str, object]) -> tuple[VolumeMount, ...]:
    """Kale's `pvc` volumes: an existing claim mounted into every step (KALE_VOLUME_<NAME> if exposed)."""
    found = []
    raw = meta.get("volumes")
    for v in raw if isinstance(raw, list) else []:
        if isinstance(v, dict) and v.get("type") == "pvc" and v.get("name") and v.get("mount_point"):
            env = (
                "KALE_VOLUME_" + re.sub(r"[^A-Z0-9]", "_", str(v["name"]).upper())
                if v.get("expose_as_env_var")
                else None
            )
            found.append(VolumeMount(str(v["name"]), str(v["mount_point"]), env))
    return tuple(found)


def base_image(path: str, meta: dict[str, object], settings: Settings, diags: list[Diagnostic]) -> str:
    """The notebook's default step image: `kubeflow_notebook.base_image` (or Kale's `docker_image`), else settings."""
    for key in ("base_image", "docker_image"):
        image = meta.get(key)
        if image:
            try:
                return imageref.check(image if isinstance(image, str) else "", f"kubeflow_notebook.{key}")
            except imageref.BadReference as exc:
                diags.append(error(path, str(exc), "NB071"))
                return str(image)
    return settings.image


MAX_NAME = 128  # spec keys are built from these names (YAML readers refuse keys over 1,024 characters)
MAX_STEP_PARAMETERS = 96 * 1024  # KFP hands a step its parameter values in one argv string: Linux caps it at 128 KiB


def check_names(path: str, steps: list[Step], parameters: list[Parameter], diags: list[Diagnostic]) -> None:
    """Step, parameter and variable names short enough for the spec's keys and KFP's task names."""
    seen: set[str] = set()
    named = [(s.name, "step", s.first_cell) for s in steps] + [(p.name, "parameter", p.cell) for p in parameters]
    named += [(n, "variable", s.first_cell) for s in steps for n in (*s.outputs, *(e.name for e in s.inputs))]
    for name, kind, cell in named:
        if len(name) > MAX_NAME and name not in seen:
            seen.add(name)
            msg = f"{kind} name {name[:40]}... has {len(name)} characters: KFP specs take names up to {MAX_NAME}"
            diags.append(error(path, msg, "NB055", cell))
    for step in steps:
        task = kfpnames.task_name(step.name)
        if kfpnames.MAX_TASK_NAME < len(task) <= MAX_NAME:
            msg = (
                f"step {step.name[:40]}... gets the KFP task name of {len(task)} characters: Argo names its driver "
                f"'<task>{kfpnames.DRIVER_SUFFIX}' and takes names up to 128, so step names up to "
                f"{kfpnames.MAX_TASK_NAME}"
            )
            diags.append(error(path, msg, "NB055", step.first_cell))


# a shell command (`!cmd`, `%%bash`) that needs root's capabilities or a privilege change
_PRIVILEGED = re.compile(
    r"""(?:\.system|\.getoutput)\(\s*['"]\s*(sudo|su|apt-get|apt|aptitude|yum|dnf|microdnf|apk)\b"""
    r"""|run_cell_magic\(\s*['"](?:bash|sh|script)['"][^\n]*?(?:^|\\n|[;&|(]\s*|\s)(sudo|apt-get|apt|yum|dnf|apk)\s"""
)


def check_cluster(path: str, steps: list[Step], parameters: list[Parameter], diags: list[Diagnostic]) -> None:
    """What a KFP cluster refuses at pod start although the spec compiles: pod label and annotation keys and label
    values Kubernetes rejects; shell commands that need privileges KFP 2.16+ steps lack (kubeflow/pipelines 2.16.0
    backend/src/v2/compiler/argocompiler/security_context.go:163-172); parameter values too large for the one argv
    string KFP hands them in."""
    for step in steps:
        for kind, entries in (("label", step.labels), ("annotation", step.annotations)):
            for key, value in entries:
                problem = kfpnames.metadata_key_problem(key) or (
                    kfpnames.label_value_problem(value) if kind == "label" else None
                )
                if problem:
                    msg = f"{kind}:{key}:{value[:70]}: Kubernetes refuses this pod {kind}: {problem}"
                    diags.append(error(path, msg, "NB056", step.first_cell))
        for cell in step.cells:
            found = _PRIVILEGED.search(cell.source)
            if found:
                msg = (
                    f"step {step.name!r} runs {found.group(1) or found.group(2)!r}: KFP 2.16+ runs steps without "
                    "Linux capabilities or privilege escalation, so it fails there; put system packages in the step "
                    "image"
                )
                diags.append(warning(path, msg, "NB058", cell.index))
    sizes = {p.name: len(json.dumps(p.default, ensure_ascii=False).encode()) for p in parameters}
    for step in steps:
        total = sum(sizes.get(n, 0) for n in step.parameters)
        if total > MAX_STEP_PARAMETERS:
            biggest = max(step.parameters, key=lambda n: sizes.get(n, 0))
            msg = (
                f"step {step.name!r} receives {total / 1024:.0f} KiB of parameter values ({biggest!r} the largest): "
                "KFP hands them to the step in one command-line argument, which Linux caps at 128 KiB, so its pod "
                "would not start; read large data from a file or an artifact instead"
            )
            diags.append(error(path, msg, "NB057", step.first_cell))


def check_images(path: str, steps: list[Step], base: str, settings: Settings, diags: list[Diagnostic]) -> None:
    """Every step image is an image reference, and one `[tool.nb2kfp.policy] allowed_images` allows."""
    allowed = settings.allowed_images
    for step in steps:
        if step.image == base and any(d.code == "NB071" and d.cell is None for d in diags):
            continue  # the notebook's base image: already reported
        try:
            imageref.check(step.image, f"step {step.name!r} image")
        except imageref.BadReference as exc:
            diags.append(error(path, str(exc), "NB071", step.first_cell))
            continue
        if allowed is not None and not any(imageref.allowed_by(step.image, prefix) for prefix in allowed):
            msg = (
                f"step {step.name!r} uses image {step.image!r}, which {settings.source} "
                f"[tool.nb2kfp.policy] allowed_images does not allow ({', '.join(allowed) or 'none'})"
            )
            diags.append(error(path, msg, "NB070", step.first_cell))
