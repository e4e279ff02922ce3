"""The ``tgsr`` command line: thin typer commands over library functions."""
