"""The `sipguard` command: run the proxy, check a config, and the sub-commands of each area."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from proxy.config import ConfigError, check_signing_credentials, load_config

Handler = Callable[[argparse.Namespace], int]

# Each area registers its own sub-commands (docs/design.md, "CLI").
_AREA_COMMANDS = ("proxy.policy.commands", "stir_shaken.commands")

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "example.yaml"


def _cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config_file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    problem = check_signing_credentials(config)
    if problem is not None:
        print(f"{args.config_file}: {problem}", file=sys.stderr)
        return 2
    print(
        f"{args.config_file}: ok ({len(config.listen)} listeners, {len(config.trunks)} trunks, "
        f"{len(config.sources)} sources)"
    )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    problem = check_signing_credentials(config)
    if problem is not None:
        print(f"{args.config}: {problem}", file=sys.stderr)
        return 2
    from proxy.runtime import run

    workers: int = args.workers
    worker_index: int | None = args.worker_index
    return run(config, config_path=Path(args.config), workers=workers, worker_index=worker_index)


def _cmd_demo(args: argparse.Namespace) -> int:
    from proxy.demo import demo

    calls: int = args.calls
    return demo(calls=calls)


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree, with every area's sub-commands."""
    parser = argparse.ArgumentParser(
        prog="sipguard",
        description="SIP policy proxy for French call-centre trunks (ARCEP caller-ID rules, MAN).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = subparsers.add_parser("run", help="run the proxy")
    run.add_argument("--config", default=str(EXAMPLE_CONFIG), help="YAML configuration file")
    run.add_argument(
        "--workers", type=int, default=1, help="worker processes sharing the ports (SO_REUSEPORT)"
    )
    # Set by the supervisor for the worker processes it starts; not for people.
    run.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    run.set_defaults(handler=_cmd_run)

    check = subparsers.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config_file")
    check.set_defaults(handler=_cmd_check_config)

    demo = subparsers.add_parser("demo", help="run the example config with SIPp and a few calls")
    demo.add_argument("--calls", type=int, default=5)
    demo.set_defaults(handler=_cmd_demo)

    for module_name in _AREA_COMMANDS:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sipguard` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
