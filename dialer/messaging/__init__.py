"""Channels beside voice: SMS and e-mail (DESIGN.md section 7a).

Pure cores (no I/O, tested alone):

- ``sms``        SMS length rules: GSM 7-bit (160/153 septets, extension table) or UCS-2
                 (70/67 code units), the bank's signature and the marketing opt-out suffix;
- ``templates``  one sandboxed Jinja2 library for SMS and e-mail bodies, sensitive fields masked;
- ``keywords``   what an incoming reply means (opt out, confirm, deny, free text).

Adapters (one module per outside connection) sit beside them and are the only code that
knows a wire format.
"""
