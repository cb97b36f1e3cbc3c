"""The applications: the ``dialer`` command line (``cli``, ``commands``), the context every
command is handed (``appctx``) and the one-process demo (``demo``)."""
