"""The Monitor stage with the real parts: the registry with auth, the Docker engine, MLServer, kfp.local.

A model image records a reference sample of its training data (the same data gives the same digest); served
locally with ``--log-requests`` it logs each request; ``nb2kfp monitor`` tests logged requests against the sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_containers import services, unique

from nb2kfp.serving import oci, reference

__all__ = ["services"]  # the fixture, used by name


def test_the_same_weights_and_data_give_the_same_digest(
    tmp_path: Path, services: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs save the same model with different signatures (the run's key signs nb2kfp.json): the image is one."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from nb2kfp.backends.kfp_spec import task_name
    from nb2kfp.commands.run import _package_models
    from nb2kfp.frontend.builder import build
    from nbfactory import write

    monkeypatch.setenv("NB2KFP_REGISTRY_USER", services["NB2KFP_TEST_REGISTRY_USER"])
    monkeypatch.setenv("NB2KFP_REGISTRY_PASSWORD_FILE", services["NB2KFP_TEST_REGISTRY_PASSWORD_FILE"])
    monkeypatch.chdir(tmp_path)
    nb = write(tmp_path / "nb.ipynb", [(["step:train", "model:clf"], "X = [[0.0], [1.0]]\nclf = len(X)\nclf.fit(X)")])
    pipeline = build(nb).pipeline
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    clf = LogisticRegression().fit(X, [0, 1, 0])
    prefix, refs = unique(services), []
    for run, signature in (("a", "1" * 64), ("b", "2" * 64)):
        saved = tmp_path / run / "artifacts" / "x" / task_name(pipeline.step("train"))
        (saved / "clf").mkdir(parents=True)
        joblib.dump(clf, saved / "clf" / "data.joblib")
        meta = {"format": "joblib", "framework": "scikit-learn", "framework_version": "1.9.1", "hmac": signature}
        (saved / "clf" / "nb2kfp.json").write_text(json.dumps(meta))
        (saved / "X").mkdir()
        np.save(saved / "X" / "data.npy", X)
        (saved / "X" / "nb2kfp.json").write_text('{"format": "npy"}')
        refs.append(_package_models(nb, tmp_path / run, pipeline, prefix, lambda line: None)["clf"])
    assert refs[0] == refs[1]
    labels = oci.read(refs[0]).meta
    assert labels.framework_version == "1.9.1"
    ref, files = oci.read_with_files(refs[0], (reference.DATA, reference.SCHEMA))
    frame, features = reference.read(files[reference.DATA], files[reference.SCHEMA])
    assert frame.to_numpy().tolist() == X.tolist() and [f.name for f in features] == ["x0", "x1"]
    assert ref.labels["io.nb2kfp.reference.sha256"] == json.loads(files[reference.SCHEMA])["sha256"]
