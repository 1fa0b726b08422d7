"""The pure core: rollout state, schedule, policy and config model, durations, the
failed-check tally, errors and the ports adapters implement. No network, files, subprocesses
or clock reads here."""
