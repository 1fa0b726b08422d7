"""The real kubectl, built from the control plane's own module, on the lab's PATH."""

from __future__ import annotations

import os
import subprocess

from rollout.lab.lab import Lab


def test_the_lab_environment_gives_a_kubectl_that_reads_the_real_crds(lab: Lab) -> None:
    env = {**os.environ, **lab.environment()}
    result = subprocess.run(["kubectl", "get", "crd", "virtualservices.networking.istio.io",
                             "httproutes.gateway.networking.k8s.io", "-o", "name"],
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "customresourcedefinition.apiextensions.k8s.io/virtualservices.networking.istio.io",
        "customresourcedefinition.apiextensions.k8s.io/httproutes.gateway.networking.k8s.io"]
    version = subprocess.run(["kubectl", "version", "--client", "-o", "json"], env=env,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    from rollout.adapters.toolchain import read_versions

    assert f'"gitVersion": "{read_versions()["KUBERNETES_VERSION"]}"' in version
