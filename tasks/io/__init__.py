"""Adapters to the outside world: Kafka, the exchange's WebSocket, files, the broker, MLflow.

Each module wraps one system and holds no pipeline logic: services and stages compose them.
"""
