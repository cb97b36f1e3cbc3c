"""``python -m ivr`` = the ``ivr`` command."""

from ivr.cli import main

main()
