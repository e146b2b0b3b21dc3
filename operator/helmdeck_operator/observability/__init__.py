"""Metrics, traces and OCSF correlation: the operator's edges that tell what it is doing.

Wired at the edges only: the reconcilers record through `Metrics` and open spans through
`tracing`; nothing in the functional core knows about either.
"""

__all__: list[str] = []
