"""``cryptovol down``: stop every part of the local stack and check its ports are free."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from tasks.settings import get_settings
    from tasks.stack.supervisor import stop_from_state
    from tasks.stack.up import state_path

    still = stop_from_state(state_path(get_settings()), print)
    if still:
        print(f"ports still in use after stopping: {still}")
        return 1
    return 0
