"""Canary releases for Kubernetes driven by the Pulumi Automation API."""

from rollout.api import RolloutResult, Rollouts

__all__ = ["RolloutResult", "Rollouts"]
