"""The dashboard: a local web app over a project's rollouts (FastAPI on uvicorn, live over
server-sent events), and the rollout chart it shares with the HTML report."""
