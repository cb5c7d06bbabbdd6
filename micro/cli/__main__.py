"""``python -m micro.cli``: the ``micro`` command."""

from . import main

main()
