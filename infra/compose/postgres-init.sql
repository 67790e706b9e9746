-- One PostgreSQL, two databases: MLflow's tracking/registry store and Prefect's server store.
-- Runs once, on an empty data volume (docker-entrypoint-initdb.d).
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
