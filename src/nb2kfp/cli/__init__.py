"""The command line: the Typer app (:mod:`.app`), the fast entry point (:mod:`.main`)."""
