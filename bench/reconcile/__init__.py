"""`make bench-reconcile N=100|1000`: N ScalableBackends to Ready, against a plain-client floor.

Two phases, each on a freshly started control plane of the bench's own
(hack/cluster.sh with port base 18440 and state in .local/bench-reconcile):

* **operator**: `sbo-operator run` watches the cluster; the bench creates N
  ScalableBackends (examples/basic.yaml, spread over 10 restricted
  namespaces) and times until every one is Ready with observedGeneration ==
  generation. It then watches for `--steady-seconds` and counts writes.
  Then the **restart** (unless --no-restart): SIGKILL the operator, start a
  new one over the N backends, wait until it has reconciled every one, watch
  again, and record its peak and settled RSS and its writes.
* **floor**: no operator. A plain concurrent client, with the operator's
  connection budget, creates the same N ScalableBackends and applies the
  exact child objects the operator's own builders produce (the complete set
  a converged backend has), through the operator's own I/O layer, then waits
  until every Deployment, StatefulSet and Job among them is ready. That is
  the least work the cluster has to do for the same result.

One JSON line goes to stdout (and, unless --no-record, into the Reconcile
section of docs/benchmarks.md); progress goes to stderr. See that section
for how to read the figures.

Modules: `workload` (what is created), `client` (the bench's API writes),
`floor` (the floor's children and phase), `restart` (the restart path),
`tracking` (readiness by LIST and WATCH), `recording` (counters, events,
the JSON line and the docs) and `driver` (the phases and the command line).
"""
