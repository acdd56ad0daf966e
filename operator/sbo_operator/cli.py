"""`sbo-operator`: the operator's command line."""

from __future__ import annotations

import argparse
import logging
import sys
import time

import kopf
from pydantic import ValidationError

from sbo_operator.handlers import build_registry
from sbo_operator.logs import configure_logging
from sbo_operator.peering import start_time_priority
from sbo_operator.settings import OperatorSettings


def run(settings: OperatorSettings) -> None:
    """Run the operator until SIGTERM/SIGINT."""
    configure_logging(settings)
    log = logging.getLogger(__name__)
    log.info("watching %s", "all namespaces" if settings.clusterwide else ", ".join(settings.namespaces))
    priority = settings.peering_priority
    if priority is None:
        priority = start_time_priority(time.time_ns())
    if settings.peering:
        log.info("peering as %r with priority %d", settings.peering_name, priority)
    kopf.run(
        registry=build_registry(settings),
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        standalone=not settings.peering,
        peering_name=settings.peering_name,
        priority=priority,
        liveness_endpoint=(
            f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
        ),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="sbo-operator",
        description="Kubernetes operator for ScalableBackend (sbo.dev/v1alpha1). "
        "Configured through SBO_* environment variables; see docs/operator.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the operator against the cluster in $KUBECONFIG or in-cluster")
    commands.add_parser("settings", help="print the effective settings as JSON and exit")
    args = parser.parse_args(argv)

    try:
        settings = OperatorSettings()
    except ValidationError as error:
        for problem in error.errors():
            variable = ".".join(str(part) for part in problem["loc"])
            if not variable:  # a rule across settings: its message names them, its input is all of them
                sys.stderr.write(f"sbo-operator: invalid settings: {problem['msg']}\n")
                continue
            sys.stderr.write(
                f"sbo-operator: invalid setting {variable}={problem['input']!r}: {problem['msg']}\n"
            )
        raise SystemExit(2) from None
    if args.command == "settings":
        sys.stdout.write(settings.model_dump_json(indent=2) + "\n")
    else:
        run(settings)


if __name__ == "__main__":
    main()
