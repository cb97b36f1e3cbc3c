"""``python -m dialer``: the ``dialer`` command line."""

from dialer.app.cli import main

main()
