"""nb2kfp: compile tagged Jupyter notebooks into Kubeflow Pipelines."""

__version__ = "0.1.0"
