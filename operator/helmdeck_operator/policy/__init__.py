"""SidecarPolicy -> OpenShell policy: the pure core of the policy side of the operator.

Everything here is a pure function of its arguments: no I/O, no gRPC, no Kubernetes. The
reconcilers and the `policy render` CLI import the modules by name and qualify what they use:

- `model`: typed models of the SidecarPolicy spec, re-checking the CRD's rules;
- `errors`: `PolicyValidationError`, the only error translation raises;
- `translate`: spec -> canonical `SandboxPolicy`;
- `canonical`: the one form equal policies share;
- `revision`: `sha256:...` of the canonical policy;
- `classify`: whether a change can be hot-reloaded into running sandboxes (`change`: the
  verdict, readable without the protobuf stubs);
- `cli`: `helmdeck-operator policy render`.

Nothing is imported here, so that loading `policy.cli` to register the subcommand stays cheap.
"""

__all__: list[str] = []
