"""OCI names: the one image-reference parser (:mod:`.ref`) and registries with their credentials (:mod:`.registry`).

Low in the layers (tests/test_layers.py): settings, the front end, git, masking and every image builder use them.
"""
