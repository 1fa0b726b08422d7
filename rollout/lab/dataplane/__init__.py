"""The lab's data plane: splits requests as the live route says and reports Istio's telemetry."""

from rollout.lab.dataplane.backends import script_argv

__all__ = ["script_argv"]
