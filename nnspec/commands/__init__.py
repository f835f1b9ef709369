"""One module per CLI subcommand (``<name>_cmd.py``), each with ``add_arguments`` and ``run``."""
