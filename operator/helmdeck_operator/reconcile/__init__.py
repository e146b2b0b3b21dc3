"""The imperative shell: one reconcile pass per kind, and the orphan sweep.

Each pass gathers inputs, calls the functional core (`helmdeck_operator.core`), performs
what it decided through the gateway client and the Kubernetes client, and reports.
"""

__all__: list[str] = []
