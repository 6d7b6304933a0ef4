"""``python -m genzoo`` is the ``genzoo`` command."""

from genzoo.cli import main

main()
