"""Talking to Asterisk: the AMI client and framing (``ami``), the call tracker, Originate
building, the agent pool, and the dialer core that turns AMI events into attempt rows."""
