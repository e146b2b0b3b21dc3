#!/usr/bin/env python3
"""Write argocd/argocd-cm-patch.yaml from the health checks in argocd/health/.

The .lua files are the source; the ConfigMap patch embeds each one verbatim under its
argocd-cm key, and tests/argocd/test_argocd_manifests.py fails when they drift apart.
Run after editing a .lua file: `python hack/gen-argocd-cm-patch.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HEALTH_DIR = REPO_ROOT / "argocd" / "health"
TARGET = REPO_ROOT / "argocd" / "argocd-cm-patch.yaml"

HEADER = """\
# Argo CD health checks for the helmdeck.dev kinds, as a patch of Argo CD's argocd-cm.
# Generated from argocd/health/*.lua by hack/gen-argocd-cm-patch.py; edit the .lua files.
#
#   kubectl -n argocd patch configmap argocd-cm --type merge \\
#     --patch-file argocd/argocd-cm-patch.yaml
#
# or list it under `patches:` of a kustomization that installs Argo CD. With the argo-cd
# Helm chart, set the same keys under `configs.cm` instead (docs/argocd.md).
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
"""


def render() -> str:
    parts = [HEADER]
    for path in sorted(HEALTH_DIR.glob("*.lua")):
        body = path.read_text()
        if not body.endswith("\n") or body.endswith("\n\n"):
            sys.exit(f"{path}: must end with exactly one newline (a YAML '|' block keeps one)")
        if any(line != line.rstrip() or "\t" in line for line in body.splitlines()):
            sys.exit(f"{path}: no trailing spaces or tabs (YAML block scalars would alter them)")
        parts.append(f"  resource.customizations.health.{path.stem}: |\n")
        parts.extend(f"    {line}\n" if line else "\n" for line in body.splitlines())
    return "".join(parts)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(REPO_ROOT)}")
