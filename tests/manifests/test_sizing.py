"""Valkey's maxmemory holds the shipped overlays' peak: at the most POSTs per second their
servers can serve, every idempotency record outlives the counter's RETRY_DEADLINE, so that an
eviction (volatile-ttl, nearest expiry first) takes only records no counter retries any more.
The sum, from each overlay as rendered (README, "What is guaranteed"):

    server pods (the HPA's maxReplicas, else replicas) x CPU limit x POSTS_PER_CPU
      x RETRY_DEADLINE x RECORD_BYTES + FIXED_BYTES  <=  maxmemory
"""

from __future__ import annotations

import copy
import shutil
from functools import partial

import pytest

from tests.manifests.hardening import (
    configmap_file,
    is_redis,
    is_server,
    k8s_bytes,
    redis_argv,
    redis_bytes,
    redis_settings,
    setting,
)
from tests.manifests.render import OVERLAYS, ROOT, render_combination
from tests.manifests.rules import containers, pod_specs

# One server worker on one CPU, POST with a fresh Idempotency-Key: 3,541 requests/s (README,
# "Measured"), rounded up.
POSTS_PER_CPU = 3600
# One record ({microservices}:idempotency:<uuid> -> "<increment>:<count>", with its TTL):
# 139 bytes of used_memory per record on Valkey 9.1.2 (200,000 of them, INFO memory; MEMORY
# USAGE says 112), rounded up. A 128-character key, the longest the server takes: 235.
RECORD_BYTES = 150
# Valkey's own (about 1 MiB empty), the count, the page's clients and history: 4 MiB.
FIXED_BYTES = 4 * 2**20


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def peak_posts(objects: list[dict]) -> float:
    """The most POSTs per second this set's servers can serve: pods x CPU x POSTS_PER_CPU."""
    deployment = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "app-tier"
    )
    [server] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if is_server(c)]
    hpas = [
        o
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
        and o["spec"]["scaleTargetRef"]["name"] == "app-tier"
    ]
    pods = hpas[0]["spec"]["maxReplicas"] if hpas else deployment["spec"].get("replicas", 1)
    return pods * cpu(server["resources"]["limits"]["cpu"]) * POSTS_PER_CPU


def sizing_problems(where: str, objects: list[dict]) -> list[str]:
    [counter] = [
        c for _, _, s in pod_specs(objects) for c in containers(s) if c["name"] == "counter"
    ]
    need = peak_posts(objects) * setting(counter, "RETRY_DEADLINE") * RECORD_BYTES + FIXED_BYTES
    problems = []
    for _, _, spec in pod_specs(objects):
        for c in (c for c in containers(spec) if is_redis(c)):
            if "--sentinel" in redis_argv(c):
                continue  # a sentinel (components/redis-ha) holds no data
            settings = redis_settings(c, partial(configmap_file, c, spec, objects))
            maxmemory = redis_bytes(settings["maxmemory"])
            if maxmemory < need:
                problems.append(
                    f"{where}: maxmemory {settings['maxmemory']} is below the "
                    f"{need / 2**20:.0f} MiB its peak of {peak_posts(objects):,.0f} POSTs/s needs"
                )
            limit = k8s_bytes(c["resources"]["limits"]["memory"])
            assert maxmemory < limit, (where, maxmemory, limit)
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_maxmemory_holds_the_overlays_peak(rendered, overlay):
    assert sizing_problems(overlay, rendered[overlay]) == []


def test_each_node_of_redis_ha_holds_the_bases_peak(tmp_path):
    """components/redis-ha's nodes run on their own data.conf: the same sum holds for them."""
    shutil.copytree(ROOT / "kustomize", tmp_path / "kustomize")
    objects = render_combination(tmp_path / "kustomize", ("redis-ha",))
    assert any(o["kind"] == "StatefulSet" for o in objects)
    assert sizing_problems("base+redis-ha", objects) == []


def test_the_prod_peak_is_six_pods_at_one_cpu(rendered):
    assert peak_posts(rendered["prod"]) == 6 * POSTS_PER_CPU


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        # Before: 560mb for up to six pods (it held about 1,800 POSTs/s).
        (lambda objects: _config(objects).update(_memory("560mb")), "below the"),
        # A seventh and eighth server with the same Valkey.
        (lambda objects: _hpa(objects).update(maxReplicas=8), "below the"),
    ],
)
def test_the_sizing_rule_fails_on(rendered, change, complaint):
    objects = copy.deepcopy(rendered["prod"])
    change(objects)
    problems = sizing_problems("planted", objects)
    assert problems and complaint in problems[0], problems


def _config(objects: list[dict]) -> dict:
    return next(o for o in objects if o["kind"] == "ConfigMap" and "memory.conf" in o["data"])[
        "data"
    ]


def _memory(maxmemory: str) -> dict:
    return {"memory.conf": f"maxmemory {maxmemory}\nmaxmemory-policy volatile-ttl\n"}


def _hpa(objects: list[dict]) -> dict:
    return next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")["spec"]
