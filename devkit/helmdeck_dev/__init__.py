"""helmdeck-dev: the development kit of helmdeck-operator, separate from the product.

The local control plane (real etcd and kube-apiserver built from Go modules), the demo and
the dev environment, the CRD reference generator, the helpers that run the operator and the
emulator as processes, and the pytest fixtures. All of it needs a source checkout; none of it
ships in the operator's wheel or image, and the operator never imports it (a contract in
.importlinter).
"""

__all__: list[str] = []
