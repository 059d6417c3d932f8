"""Long-running processes on the stream: capture, featurizer, replay (and later the scorer)."""
