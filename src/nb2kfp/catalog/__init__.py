"""Catalog of prebuilt KFP components bundled with nb2kfp (component YAML files; see build.py)."""
