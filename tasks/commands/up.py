"""``cryptovol up [--detach]``: start the whole local stack, health-checked, in order."""

from __future__ import annotations

import argparse
import signal
import threading

from tasks.stack.up import BOOTSTRAP_MINUTES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detach", action="store_true", help="start everything, then return (stop with `down`)"
    )
    parser.add_argument(
        "--no-monitoring", action="store_true", help="leave out Prometheus and the Pushgateway"
    )
    parser.add_argument(
        "--bootstrap-minutes",
        type=float,
        default=BOOTSTRAP_MINUTES,
        help="simulated history a first champion is trained on when the registry has none",
    )


def run(args: argparse.Namespace) -> int:
    from tasks.settings import get_settings
    from tasks.stack.supervisor import LogFollower, Stack, StackError, load_state
    from tasks.stack.up import PROJECT_DIR, bring_up, stack_dir, state_path

    settings = get_settings()
    if load_state(state_path(settings)) is not None:
        print(
            f"a stack is already recorded in {state_path(settings)}: `cryptovol status` shows "
            "it, `cryptovol down` stops it"
        )
        return 2
    stack = Stack(state_path(settings), stack_dir(settings) / "logs", PROJECT_DIR)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    print(f"starting the local stack (logs in {stack.log_dir})")
    try:
        bring_up(
            settings,
            stack,
            print,
            with_monitoring=not args.no_monitoring,
            bootstrap_minutes=args.bootstrap_minutes,
        )
    except (StackError, KeyboardInterrupt) as exc:
        print(f"cannot start the stack: {exc}" if isinstance(exc, StackError) else "interrupted")
        stack.stop_all(print)
        return 1
    print("the stack is up: `cryptovol status` shows it, `cryptovol down` stops it")
    if args.detach:
        return 0
    follower = LogFollower(stack)
    follower.start()
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    follower.stopped.set()
    print("stopping the stack")
    stack.stop_all(print)
    return 0
