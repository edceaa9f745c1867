"""The ``emkit`` command line: one module per subcommand (see :mod:`emkit.cli.main`)."""
