"""The development kit: real servers and processes on loopback for tests, benchmarks and the demo.

One package serves `pytest`, `make bench-*` and `make demo`:

* :mod:`devkit.process` — :class:`~devkit.process.ManagedProcess`, the base of every launcher
  (start with a log file, readiness wait, stop by process group, kill, context manager),
  and the shared :func:`~devkit.process.free_port` and :func:`~devkit.process.wait_until`;
* launchers: :mod:`devkit.postgres`, :mod:`devkit.redis`, :mod:`devkit.prometheus`,
  :mod:`devkit.sample_app_process`, :mod:`devkit.operator_process`, :mod:`devkit.metric_target`;
* :mod:`devkit.cluster` — the local control plane (hack/cluster.sh), reused or started fresh;
* :mod:`devkit.measure`, :mod:`devkit.promtext`, :mod:`devkit.records` — what benchmarks
  measure and how they record it in docs/benchmarks.md;
* :mod:`devkit.backends` — ScalableBackend manifests for tests that run no operator;
* :mod:`devkit.fixtures_servers` — pytest fixtures for shared and per-test servers.

Invariant: the kit stops only what it started, by the pid it started.
"""
