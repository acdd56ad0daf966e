"""`python -m bench.reconcile`: see the package docstring."""

from bench.reconcile.driver import main

main()
