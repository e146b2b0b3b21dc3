"""helmdeck-operator: HelmdeckSession and SidecarPolicy objects as NVIDIA OpenShell sandboxes.

The package is layered (see docs/architecture.md and the import contracts in .importlinter):
pure models and translation at the bottom, the gateway client above them, the kopf handlers
on top. Only what users and tests need is re-exported here.
"""

__all__ = ["API_GROUP", "API_VERSION", "__version__"]

__version__ = "0.1.0"

#: The API group and version both custom resources are served under.
API_GROUP = "helmdeck.dev"
API_VERSION = "v1alpha1"
