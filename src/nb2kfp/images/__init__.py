"""Step images: what they install (pinned requirements), their Dockerfile and their offline build (the image-reference
parser and registries are in :mod:`nb2kfp.oci`)."""
