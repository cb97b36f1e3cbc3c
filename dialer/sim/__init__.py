"""The simulated Asterisk PBX (AMI server, Local channels, dialplan, FastAGI client, queues).

See ``dialer.sim.pbx.SimPbx`` for the in-process API and ``dialer sim-pbx`` for the command.
"""

from dialer.sim.clock import RealClock, VirtualClock
from dialer.sim.pbx import SimPbx

__all__ = ["RealClock", "SimPbx", "VirtualClock"]
