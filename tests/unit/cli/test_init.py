"""`rollout init`: one canary service's config, with comments, added to an existing project."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rollout.cli import app
from rollout.core.policy import load_policy
from rollout.core.service import load_settings
from rollout.core.stackconfig import services_in

EXISTING = """\
# the shop's production stack
encryptionsalt: v1:abc
config:
  shop:currency: EUR  # kept as it is
  kubernetes:context: prod
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text("name: shop\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "stacks" / "Pulumi.prod.yaml").write_text(EXISTING)
    return tmp_path


def init(project: Path, *args: str) -> object:
    return CliRunner().invoke(app, ["init", "--stack", "prod", "--project-dir", str(project),
                                    *args])


def test_init_adds_a_service_that_validates_and_keeps_the_file(project: Path) -> None:
    result = init(project, "--service", "checkout", "--version", "v7",
                  "--image", "registry.local/checkout", "--namespace", "shop")
    assert result.exit_code == 0, result.output
    text = (project / "stacks" / "Pulumi.prod.yaml").read_text()
    assert text.startswith(EXISTING), "every existing line stays as it was"
    assert "# The version serving all traffic" in text
    config = yaml.safe_load(text)["config"]
    assert services_in(config) == ["checkout"]
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("checkout:")}
    settings = load_settings(raw, service="checkout")
    assert (settings.app, settings.namespace, settings.stable_version) == ("checkout", "shop", "v7")
    policy = load_policy(settings.analysis, key="checkout:analysis")
    assert [m["name"] for m in policy.metrics] == ["request-success-rate", "request-duration"]


def test_init_twice_or_with_bad_options_exits_2_and_changes_nothing(project: Path) -> None:
    assert init(project, "--service", "cart", "--version", "v1").exit_code == 0
    before = (project / "stacks" / "Pulumi.prod.yaml").read_bytes()
    for args, message in [
        (("--service", "cart", "--version", "v2"), "already declares service cart"),
        (("--service", "Cart", "--version", "v2"), "is not a valid service name"),
        (("--service", "x", "--version", "v 2"), "is not a valid image tag"),
        (("--service", "x", "--version", "v2", "--router", "nginx"), "unknown router"),
        (("--service", "x", "--version", "v2", "--image", "Bad Repo"), "x:image"),
    ]:
        result = init(project, *args)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
        assert (project / "stacks" / "Pulumi.prod.yaml").read_bytes() == before


def test_init_creates_the_stack_file_of_a_new_stack(project: Path) -> None:
    result = CliRunner().invoke(app, ["init", "--stack", "dev", "--project-dir", str(project),
                                      "--service", "cart", "--version", "v1",
                                      "--router", "gateway-api"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((project / "stacks" / "Pulumi.dev.yaml").read_text())["config"]
    assert config["cart:router"] == "gateway-api"
    assert config["cart:parentRefs"] == [{"name": "<your-gateway>"}]
