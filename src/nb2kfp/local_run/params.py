"""A run's parameter values: the notebook's defaults, then papermill-style ``-f FILE`` and ``-y YAML``
mappings, then ``-p name=value`` items, each checked against the parameter's type."""

from __future__ import annotations

from pathlib import Path

from nb2kfp.errors import UsageError
from nb2kfp.ir import Parameter, ParamValue, Pipeline


def parse_overrides(pipeline: Pipeline, items: list[str]) -> dict[str, ParamValue]:
    """``-p name=value`` items, each turned into its parameter's type."""
    from nb2kfp.frontend.params import coerce

    values: dict[str, ParamValue] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"-p {item!r}: write -p name=value")
        try:
            values[name.strip()] = coerce(_parameter(pipeline, name.strip(), "-p"), text)
        except ValueError as exc:
            raise UsageError(f"-p {item}: {exc}") from None
    return values


def _parameter(pipeline: Pipeline, name: str, where: str) -> Parameter:
    for p in pipeline.parameters:
        if p.name == name:
            return p
    known = ", ".join(sorted(p.name for p in pipeline.parameters)) or "none"
    raise UsageError(f"{where} {name}: the pipeline has no such parameter (parameters: {known})")


def parse_yaml(pipeline: Pipeline, text: str, where: str) -> dict[str, ParamValue]:
    """A YAML mapping of parameter names to values of their types (a string is read as ``-p`` reads it)."""
    from nb2kfp import yamlsafe
    from nb2kfp.frontend.params import coerce, param_type

    try:
        data = yamlsafe.load(text)
    except yamlsafe.YamlError as exc:
        raise UsageError(f"{where}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{where}: give a mapping of parameter names to values")
    values: dict[str, ParamValue] = {}
    for key, value in data.items():
        param = _parameter(pipeline, str(key), where)
        if isinstance(value, str):
            try:
                values[param.name] = coerce(param, value)
            except ValueError as exc:
                raise UsageError(f"{where}: {exc}") from None
        elif param.type == "float" and type(value) is int:
            values[param.name] = float(value)
        elif param_type(value) == param.type:
            values[param.name] = value
        else:
            raise UsageError(f"{where}: parameter {param.name!r} is a {param.type}, got {value!r}")
    return values


def parameters_of(
    pipeline: Pipeline, files: list[Path], yamls: list[str], items: list[str]
) -> tuple[dict[str, ParamValue], dict[str, ParamValue | None]]:
    """(the values given, every parameter's value in the run): defaults < -f files < -y texts < -p items."""
    given: dict[str, ParamValue] = {}
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"-f {file}: {exc.strerror}") from None
        given.update(parse_yaml(pipeline, text, f"-f {file}"))
    for text in yamls:
        given.update(parse_yaml(pipeline, text, "-y"))
    given.update(parse_overrides(pipeline, items))
    return given, {**{p.name: p.default for p in pipeline.parameters}, **given}


def as_arguments(pipeline: Pipeline, values: dict[str, ParamValue]) -> dict[str, ParamValue]:
    """Parameter values as the pipeline receives them (encoded as :func:`kfp_spec.argument` does)."""
    from nb2kfp.backends.kfp_spec import argument

    return {name: argument(pipeline, pipeline.parameter(name), value) for name, value in values.items()}
