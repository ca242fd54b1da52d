"""GridEdge EMS agent (identity ``gridedge.ems``): DR curtailment onto relays and PWM outputs."""

from gridedge_ems.config import CircuitConfig, EmsConfig
from gridedge_ems.controller import ActiveRequest, CurtailmentController

__all__ = ["ActiveRequest", "CircuitConfig", "CurtailmentController", "EmsConfig"]
