"""`python -m sbo_operator` is `sbo-operator`."""

from sbo_operator.cli import main

main()
