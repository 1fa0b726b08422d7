"""The local lab: a real Kubernetes control plane, fake nodes and Prometheus on 127.0.0.1."""
