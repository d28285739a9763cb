"""``streamstats``: the command line for humans (and scripts, with ``--json``).

Only the public SDK is used here, so the CLI shows what the SDK can do and nothing more.
"""

from streamstats._cli.main import main, run

__all__ = ["main", "run"]
