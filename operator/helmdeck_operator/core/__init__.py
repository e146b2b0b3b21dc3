"""The operator's functional core: pure decisions about sessions and policies.

Nothing here performs I/O: each module maps observations (the Kubernetes object, what the
gateway reported, the time) to what should be true and what to do next. The kopf handlers
in `helmdeck_operator.handlers` execute those decisions.
"""

__all__: list[str] = []
