"""The domain, pure: messages, time, features, labels, evaluation, models, training, gates.

Nothing here imports an I/O library (Kafka, HTTP, MLflow, Prefect...): the stream and the batch
path share these modules, and unit tests run them without services. ``tests/unit/test_purity.py``
walks this package to keep it so.
"""
