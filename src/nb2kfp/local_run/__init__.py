"""Local runs with kfp.local: the runner, its cache and scheduler, step processes, run records and reports."""
