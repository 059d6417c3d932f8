"""The pipeline's stages, one function each: backfill, train, evaluate, validate, promote, rollback.

The CLI (``tasks/commands``), the Prefect flows (``flows/``) and the quickstart all call these,
so every entry point runs a stage the same way (data contracts included).
"""
