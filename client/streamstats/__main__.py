"""``python -m streamstats``: the command line (see ``streamstats --help``)."""

from streamstats._cli import main

main()
