"""What each command line offers: the product's ships, the dev kit's needs a checkout."""

from __future__ import annotations

import argparse

import pytest

from helmdeck_dev import cli as dev_cli
from helmdeck_operator import cli as product_cli

PRODUCT = {"version", "run", "check", "emulator", "policy"}
DEV_KIT = {"cluster", "demo", "dev", "crd-reference"}


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_the_product_offers_only_product_commands() -> None:
    assert _commands(product_cli.build_parser()) == PRODUCT


def test_the_dev_kit_offers_the_development_commands() -> None:
    assert _commands(dev_cli.build_parser()) == DEV_KIT


@pytest.mark.parametrize("command", sorted(DEV_KIT))
def test_a_dev_command_is_unknown_to_the_product(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        product_cli.main([command])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
