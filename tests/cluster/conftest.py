"""A real Ray cluster on this machine for the cluster tests: a head node and a second node, each a set of
processes here (``ray.cluster_utils.Cluster``), one per test session and shut down at its end.

Nodes get one logical CPU each and a custom resource naming them (``head_node``, ``node_b``), so a trainer
whose ``ray_resources`` asks for a sliver of one places its jobs there. Jobs ask for one CPU: one job per node.
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from services.trainer.executors.ray import NAMESPACE  # noqa: E402


@pytest.fixture(scope="session")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head_node": 1}})
    c.node_b = c.add_node(num_cpus=1, resources={"node_b": 1})
    c.wait_for_nodes()
    ray.init(address=c.address, namespace=NAMESPACE, log_to_driver=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """A models folder holding the tiny random Llama (built once per session)."""
    from tests.support.tiny_model import build_tiny_model
    from tests.trainer.conftest import TINY

    models_dir = tmp_path_factory.mktemp("tiny-models")
    build_tiny_model(models_dir, TINY)
    return models_dir


def free_cpus() -> float:
    return ray.available_resources().get("CPU", 0.0)
