"""The ``thingport`` command (and ``python -m thingport``): the CLI, or one line saying which extra it needs
when only the device SDK is installed (``pip install thingport`` without ``[server]``)."""

import sys


def main() -> None:
    try:
        from thingport.cli import main as cli
    except ImportError as exc:
        if exc.name is None or exc.name.startswith("thingport"):
            raise  # a bug of ours, not a missing extra
        sys.exit(f"error: {exc.name} is not installed: the thingport command needs the server, "
                 "pip install 'thingport[server]' (or [all])")
    cli()


if __name__ == "__main__":
    main()
