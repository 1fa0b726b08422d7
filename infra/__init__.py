"""The Pulumi program of the canary-service project and its reusable CanaryService component."""
