"""Step images: their Dockerfile and their offline build and push (what they install is :mod:`nb2kfp.requirements`,
which lint reads too; the image-reference parser and registries are in :mod:`nb2kfp.oci`)."""
