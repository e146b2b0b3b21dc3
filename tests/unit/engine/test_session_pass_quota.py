"""Namespace totals across whole session passes (see tests/support/passes.py): a session
that ends without a sandbox gives its room back even when its pass writes nothing, so an
Expired session kept by onExpiry Retain never holds a namespace's room.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from helmdeck_dev.emulator_fixtures import EmulatorFactory
from helmdeck_operator.core.tenancy import Usage
from helmdeck_operator.handlers import tenant_rules
from helmdeck_operator.quota import QuotaLedger
from tests.support.passes import NAMESPACE, PassRig


@pytest_asyncio.fixture
async def rig(emulator_factory: EmulatorFactory, tmp_path: Path) -> AsyncIterator[PassRig]:
    started = await PassRig.start(emulator_factory, tmp_path)
    # The namespace's TenantPolicy `default`: one session with a sandbox at a time.
    one = tenant_rules("default", {"perNamespace": {"sessions": 1}})
    started.rt.bind({**started.indices, "tenant_policies": {"default": [one]}})
    yield started
    await started.close()


async def test_an_expired_retained_session_gives_its_room_back_pass_after_pass(
    rig: PassRig,
) -> None:
    expired = await rig.ready_session("old", lifetime={"ttl": "1m", "onExpiry": "Retain"})
    rig.advance_time(61)
    await rig.reconcile(expired)  # deletes its sandbox
    rig.advance_gateway()
    await rig.woken(expired)  # gone from the gateway
    await rig.reconcile(expired)
    assert rig.status(expired)["phase"] == "Expired"
    writes = len(rig.kube.calls_to("patch_status"))

    # Passed again (a resync, or every object after a restart, the ledger rebuilt from the
    # statuses): nothing to write, and still no room taken.
    for ledger in (rig.rt.quota, QuotaLedger(rig.rt.ask_of)):
        rig.rt.quota = ledger
        await rig.reconcile(expired)
        assert rig.rt.quota.usage(NAMESPACE, excluding="") == Usage()
    assert len(rig.kube.calls_to("patch_status")) == writes

    fresh = rig.put_session("new")
    await rig.reconcile(fresh)
    assert rig.sandbox_of(fresh) is not None  # created, not waiting for room
