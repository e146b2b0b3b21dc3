"""The OpenShell gateway client: the one layer of the operator that speaks gRPC.

Reconcilers use ``client.GatewayClient`` (one per configured gateway), the value types it
returns (``models``) and the ``errors.GatewayError`` hierarchy it raises; nothing here hands
out a generated protobuf type except the ``SandboxPolicy`` message that policy translation
produces. One module per concern: ``config``, ``auth``, ``errors``, ``retry``, ``convert``,
``client``, ``models``.

Nothing is imported here: each name is imported from its module, so that reading a
``models.Sandbox`` (as the functional core does) never loads gRPC.
"""

__all__: list[str] = []
