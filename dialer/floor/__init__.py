"""The running floor: the campaign loop (``loop``), what supervisors see (``view``) and the
supervisor console (``console``). Built on lists, telephony and pacing."""
