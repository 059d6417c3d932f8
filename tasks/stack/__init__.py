"""The local stack: launching the servers (Prefect, MLflow, worker) and the quickstart that runs
the whole loop on them. ``infra/`` holds the machine set-up and the distributed deployment."""
