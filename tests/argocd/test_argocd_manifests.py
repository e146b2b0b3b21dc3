"""The Argo CD manifests: the argocd-cm patch embeds the health checks verbatim, the
Applications carry the sync options the docs promise, and the test harness is as strict as
Argo CD's Lua state."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa.lua51 import LuaError

from tests.support import argo_lua
from tests.support.argo_lua import HEALTH_DIR, assess, script_path
from tests.support.repo import REPO_ROOT

ARGOCD_DIR = REPO_ROOT / "argocd"
KEY_PREFIX = "resource.customizations.health."


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_the_cm_patch_embeds_exactly_the_lua_files() -> None:
    """One check per kind of crds/, each embedded verbatim."""
    patch = load(ARGOCD_DIR / "argocd-cm-patch.yaml")

    assert (patch["apiVersion"], patch["kind"]) == ("v1", "ConfigMap")
    assert (patch["metadata"]["name"], patch["metadata"]["namespace"]) == ("argocd-cm", "argocd")
    embedded = {key.removeprefix(KEY_PREFIX): body for key, body in patch["data"].items()}
    files = {path.stem: path.read_text() for path in HEALTH_DIR.glob("*.lua")}
    assert (
        set(embedded)
        == set(files)
        == {
            "helmdeck.dev_HelmdeckSession",
            "helmdeck.dev_SessionPool",
            "helmdeck.dev_SidecarPolicy",
        }
    )
    for name, body in files.items():
        assert embedded[name] == body, f"{name}: run `python hack/gen-argocd-cm-patch.py`"
    assert all(key.startswith(KEY_PREFIX) for key in patch["data"])


def test_the_cm_patch_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_argocd_cm_patch", REPO_ROOT / "hack" / "gen-argocd-cm-patch.py"
    )
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)

    assert (ARGOCD_DIR / "argocd-cm-patch.yaml").read_text() == generator.render()


def test_the_operator_application_installs_the_chart_with_the_documented_options() -> None:
    app = load(ARGOCD_DIR / "application.yaml")

    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    assert app["spec"]["source"]["path"] == "charts/helmdeck-operator"
    assert "helm" in app["spec"]["source"]
    options = set(app["spec"]["syncPolicy"]["syncOptions"])
    assert {
        "ServerSideApply=true",
        "SkipDryRunOnMissingResource=true",
        "CreateNamespace=true",
    } <= options
    # Deleting the Application must not take the CRDs, and every session, with it.
    assert "resources-finalizer.argocd.argoproj.io" not in app["metadata"].get("finalizers", [])


def test_the_sessions_application_points_at_manifests_of_our_kinds_only() -> None:
    app = load(ARGOCD_DIR / "sessions-application.yaml")

    source = app["spec"]["source"]
    assert source["directory"]["recurse"] is True
    manifests = sorted((REPO_ROOT / source["path"]).rglob(source["directory"]["include"]))
    kinds = {load(path)["kind"] for path in manifests}
    assert kinds == {"HelmdeckSession", "SessionPool", "SidecarPolicy"}
    assert all(load(path)["apiVersion"] == "helmdeck.dev/v1alpha1" for path in manifests)
    options = set(app["spec"]["syncPolicy"]["syncOptions"])
    assert {"ServerSideApply=true", "SkipDryRunOnMissingResource=true"} <= options


@pytest.mark.parametrize("kind", ["HelmdeckSession", "SessionPool", "SidecarPolicy"])
def test_the_harness_refuses_what_argo_cd_does_not_provide(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check using the string library passes plain Lua but fails in Argo CD: here too."""
    monkeypatch.setattr(argo_lua, "HEALTH_DIR", tmp_path)
    for body in (
        'return {status = "Healthy", message = string.lower("OK")}',
        'return {status = "Healthy", message = ("OK"):lower()}',
        'return {status = "Healthy", message = tostring(math.floor(1.5))}',
    ):
        (tmp_path / script_path(kind).name).write_text(body)
        with pytest.raises(LuaError):
            assess({"kind": kind, "metadata": {}})


def test_the_harness_refuses_invalid_statuses_and_leaked_globals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(argo_lua, "HEALTH_DIR", tmp_path)
    target = tmp_path / script_path("SidecarPolicy").name
    for body, complaint in (
        ('return {status = "Fine", message = ""}', "invalid health status"),
        ('hs = {status = "Healthy", message = ""}\nreturn hs', "sets globals"),
    ):
        target.write_text(body)
        with pytest.raises(AssertionError, match=complaint):
            assess({"kind": "SidecarPolicy", "metadata": {}})
