"""`contract-sync demo`: the main job on the local stack (see `walkthrough`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from devtools.demo.walkthrough import run_demo, stop_kept

    stack_dir = Path(args.dir) if args.dir else None
    if args.stop:
        return stop_kept(stack_dir)
    return run_demo(keep=args.keep, stack_dir=stack_dir)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="walk through the whole feature on the local stack")
    parser.add_argument("--keep", action="store_true", help="leave the pipeline running at the end")
    parser.add_argument("--stop", action="store_true", help="stop a pipeline left running by --keep")
    parser.add_argument(
        "--dir", default=None, help="stack directory (env CONTRACT_SYNC_STACK_DIR; default <repo>/.stack)"
    )
    parser.set_defaults(func=_run)
