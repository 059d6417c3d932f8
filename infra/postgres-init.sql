-- The Prefect server's database beside MLflow's (POSTGRES_DB creates the mlflow one).
CREATE DATABASE prefect OWNER cryptovol;
