"""Asterisk Manager Interface: our own messages, framing and client.

- ``messages``: frozen dataclasses (``Banner``, ``Event``, ``Response``, ``Action``) and
  ``Headers``, an immutable multi-valued, case-insensitive mapping.
- ``framing``: sans-I/O bytes -> messages (no asyncio; UTF-8 safe across reads).
- ``adapter``: the asyncio client (login, actions with timeouts, events to listeners,
  reconnect with back-off, the ``ready`` gate after the resync hook). The only module that
  opens the AMI socket; panoramisk is not used (see its docstring for why).
- ``transcript``: reads the recorded Asterisk transcripts for replay tests and benchmarks.
"""
