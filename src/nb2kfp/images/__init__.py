"""Container images: the one image-reference parser, step images and their pinned requirements."""
