"""Session passes that change the providers of a running sandbox (SyncProviders), without
a cluster: the runtime on an in-process emulator and a FakeKube (tests/support/passes.py).
What the gateway is asked, in which order, and what a stale view of the sandbox costs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from openshell._proto import sandbox_pb2

from helmdeck_dev.emulator_fixtures import EmulatorFactory
from helmdeck_operator.core.tenancy import LABEL_TENANT_POLICY
from helmdeck_operator.handlers import tenant_rules
from tests.support.passes import NAMESPACE, PassRig

#: The workspace the test gateway is configured with.
WS = "default"


@pytest_asyncio.fixture
async def rig(emulator_factory: EmulatorFactory, tmp_path: Path) -> AsyncIterator[PassRig]:
    started = await PassRig.start(emulator_factory, tmp_path)
    yield started
    await started.close()


async def test_a_providers_change_is_one_pass_of_detaches_then_attaches(rig: PassRig) -> None:
    key = await rig.ready_session(providers=["github", "gitlab"])
    before = rig.sandbox_of(key)
    assert before is not None
    calls = len(rig.gateway_calls())

    rig.edit(key, providers=["gitlab", "openai", "anthropic"])
    outcome = await rig.reconcile(key)

    assert rig.gateway_calls()[calls:] == [
        "DetachSandboxProvider",  # github
        "AttachSandboxProvider",  # anthropic
        "AttachSandboxProvider",  # openai
    ]
    after = rig.sandbox_of(key)
    assert after is not None
    assert (after["id"], after["boots"]) == (before["id"], 1)
    assert after["spec"]["providers"] == ["gitlab", "anthropic", "openai"]
    status = rig.status(key)
    assert status["phase"] == "Ready"
    assert status["sandbox"]["providers"] == ["anthropic", "gitlab", "openai"]
    assert status["sandbox"]["id"] == before["id"]
    assert status["endpoints"] == {}  # the python family exposes none: nothing to lose
    assert rig.condition(key, "ProvidersAttached")["status"] == "True"
    assert outcome.requeue_after is None  # done: nothing left to act on

    calls = len(rig.gateway_calls())
    assert (await rig.reconcile(key)).requeue_after is None
    assert rig.gateway_calls()[calls:] == []  # the cache knows what is attached


async def test_a_stale_view_is_read_again_and_the_change_made_next_pass(rig: PassRig) -> None:
    key = await rig.ready_session()
    sandbox = rig.sandbox_of(key)
    assert sandbox is not None
    # The sandbox moves on behind the cache's back (nothing follows a settled sandbox).
    rig.emulator.gateway.update_setting(
        WS, sandbox["name"], "log_level", sandbox_pb2.SettingValue(string_value="debug"), False
    )
    calls = len(rig.gateway_calls())

    rig.edit(key, providers=["github"])
    first = await rig.reconcile(key)

    codes = [(r["method"], r["code"]) for r in list(rig.emulator.requests)]
    assert ("AttachSandboxProvider", "ABORTED") in codes  # refused, not retried blindly
    assert rig.gateway_calls()[calls:] == ["AttachSandboxProvider", "GetSandbox"]
    assert first.requeue_after == 0.0  # the change is still due: at once
    assert rig.status(key)["phase"] == "Ready"
    assert rig.condition(key, "Ready")["status"] == "True"  # a conflict is no outage

    await rig.reconcile(key)

    assert rig.gateway_calls()[calls:] == [
        "AttachSandboxProvider",
        "GetSandbox",
        "AttachSandboxProvider",
    ]
    after = rig.sandbox_of(key)
    assert after is not None
    assert after["spec"]["providers"] == ["github"]
    assert rig.status(key)["sandbox"]["providers"] == ["github"]


async def test_a_provider_the_tenancy_rules_refuse_is_never_attached(rig: PassRig) -> None:
    """Admission may be bypassed: the operator checks the namespace's rules before it
    attaches, as before it creates, and checks again when the rules change."""
    key = await rig.ready_session(providers=["github"])
    # kopf's TenantPolicy and Namespace indexes, as the operator's handlers fill them.
    tenancy = {"strict": [tenant_rules("strict", {"providers": ["github"]})]}
    labels = {NAMESPACE: [{LABEL_TENANT_POLICY: "strict"}]}
    rig.rt.bind({**rig.indices, "tenant_policies": tenancy, "namespace_labels": labels})
    calls = len(rig.gateway_calls())

    rig.edit(key, providers=["github", "openai"])
    outcome = await rig.reconcile(key)

    assert rig.gateway_calls()[calls:] == []  # nothing asked of the gateway
    refused = rig.condition(key, "ProvidersAttached")
    assert (refused["status"], refused["reason"]) == ("False", "TenancyRefused")
    assert "spec.providers[1]: provider openai is not allowed by" in refused["message"]
    assert rig.status(key)["phase"] == "Ready"  # it serves on with github
    assert ("Warning", "ProviderFailed") in rig.posted_about(key)
    assert outcome.requeue_after is None  # no loop: woken when the rules change

    tenancy["strict"] = [tenant_rules("strict", {"providers": ["github", "openai"]})]
    await rig.reconcile(key)

    assert rig.gateway_calls()[calls:] == ["AttachSandboxProvider"]
    assert rig.status(key)["sandbox"]["providers"] == ["github", "openai"]
