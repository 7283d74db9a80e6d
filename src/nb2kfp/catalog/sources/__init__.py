"""Sources of the bundled catalog components: standalone scripts (stdlib only) that ``build.py`` wraps."""
