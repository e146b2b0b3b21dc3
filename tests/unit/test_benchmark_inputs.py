"""The benchmarks' objects are valid: a benchmark that only runs by hand must not drift from
the schema (the stricter gateway rules once made its policy untranslatable unnoticed)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from helmdeck_operator.policy import translate
from helmdeck_operator.policy.classify import classify_change
from helmdeck_operator.vocabulary import Phase
from tests.support.repo import REPO_ROOT


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A benchmark script as a module, its sibling modules importable as when it runs."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    path = REPO_ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def operator_scale(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _load("operator_scale", monkeypatch)


@pytest.mark.parametrize("rules", [1, 2])
def test_the_scale_benchmark_policies_translate(operator_scale: ModuleType, rules: int) -> None:
    spec = operator_scale.policy_spec(rules)
    assert len(translate.to_sandbox_policy(spec).network_policies) == rules
    assert operator_scale.policy_revision(spec).startswith("sha256:")


def test_the_floor_writes_a_ready_status(operator_scale: ModuleType) -> None:
    rev = operator_scale.policy_revision(operator_scale.policy_spec(1))
    body = operator_scale.ready_status("s1", rev, "2026-01-01T00:00:00Z")
    assert body["status"]["phase"] == Phase.READY
    assert body["status"]["policy"]["revision"] == rev
    assert operator_scale.is_ready(body)


def test_the_pool_benchmarks_policy_is_a_live_change_from_a_python_pools_baseline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Else every claim falls back to a cold create and the benchmark measures nothing."""
    pool_claims = _load("pool_claims", monkeypatch)
    spec = pool_claims.pypi_spec()
    baseline = dict(spec)
    del baseline["network"]

    change = classify_change(
        translate.to_sandbox_policy(baseline), translate.to_sandbox_policy(spec)
    )

    assert change.live, change.blockers
    assert spec["network"], "the sessions' policy must differ from the baseline: a push"
    body = pool_claims.session_body("s1", "warm-0")
    assert body["spec"]["poolRef"] == {"name": "warm-0"}
    assert body["spec"]["policyRef"] == {"name": "pypi"}
