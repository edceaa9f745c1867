"""``python -m emkit``: the same as the ``emkit`` command."""

from emkit.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
