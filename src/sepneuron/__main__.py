"""``python -m sepneuron``: the same as the ``sepneuron`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
