"""The fault switches in the manifests: on in dev, compose and the lessons that throw them, off
in staging, prod and every combination of components; and the lessons that throw them (22 to
24) wired as their READMEs say, each body one the server itself takes. Each rule is shown to
bite on a planted defect."""

from __future__ import annotations

import copy

import pytest
from flask import Flask
from microservices_server import faults
from microservices_server.errors import ApiError

from tests.manifests import compose
from tests.manifests import lessons as rule
from tests.manifests.hardening import env, fault_switch_problems, is_server
from tests.manifests.render import LESSONS, ROOT, lesson_objects
from tests.manifests.rules import pod_specs

PROBES = "22-probes-in-action"
AUTOSCALING = "23-autoscaling-in-action"
ROLLOUT = "24-rollout-stopped-by-readiness"
FAULT_LESSONS = [PROBES, AUTOSCALING, ROLLOUT]


def objects(lesson: str) -> list[dict]:
    return copy.deepcopy(lesson_objects(lesson))


def server(objects: list[dict]) -> dict:
    return next(c for _, _, s in pod_specs(objects) for c in s["containers"] if is_server(c))


def set_env(c: dict, name: str, value: str) -> None:
    c["env"] = [e for e in c.get("env", []) if e["name"] != name] + [{"name": name, "value": value}]


def server_complaint(switch: str, body: str) -> str | None:
    """What the server answers a PUT of this body to /faults/<switch>, if it refuses it: its
    own parsing, in a request as curl sends it (JSON)."""
    app = Flask(__name__)
    with app.test_request_context(method="PUT", data=body, content_type="application/json"):
        try:
            faults.parse_settings(faults.switch_name(switch), body.encode())
        except ApiError as exc:
            return f"{exc.status} {exc.message}"
    return None


# Where the switches are on, and where never.


def test_on_in_dev_and_compose_off_in_staging_prod_and_every_combination(rendered, combinations):
    """A user relies on prod having no fault switches: the base sets them off, dev on."""
    wanted = {"dev": True, "staging": False, "prod": False}
    problems = [
        p
        for overlay, on in wanted.items()
        for p in fault_switch_problems(f"overlay {overlay}", rendered[overlay], on)
    ]
    problems += [
        p
        for name, rendering in combinations.items()
        for p in fault_switch_problems(f"combination {name}", rendering, wanted=False)
    ]
    problems += fault_switch_problems("compose", compose.as_pod(compose.load()), wanted=True)
    assert problems == []
    for overlay in ("staging", "prod"):
        assert env(server(rendered[overlay]), "FAULTS_ENABLED") == "false", "said, not implied"


def test_on_in_the_lessons_that_throw_them_only():
    throws = {
        lesson
        for lesson in LESSONS
        if (ROOT / "k8s" / lesson / "README.md").is_file() and rule.fault_calls(lesson)
    }
    assert throws == set(FAULT_LESSONS)
    problems = []
    for lesson in LESSONS:
        lesson_set = lesson_objects(lesson)
        if any(is_server(c) for _, _, s in pod_specs(lesson_set) for c in s["containers"]):
            problems += fault_switch_problems(lesson, lesson_set, wanted=lesson in throws)
    assert problems == []


def switched_on(objects):
    set_env(server(objects), "FAULTS_ENABLED", "true")


def from_a_config_map(objects):
    server(objects)["envFrom"] = [{"configMapRef": {"name": "settings"}}]


def capitalised(objects):
    set_env(server(objects), "FAULTS_ENABLED", "True")


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (switched_on, "has the fault switches on, not off"),
        (from_a_config_map, "envFrom may set FAULTS_ENABLED"),
        (capitalised, "FAULTS_ENABLED='True' is neither true nor false"),
    ],
)
def test_the_rule_fails_on_prod_with_switches_it_cannot_rule_out(rendered, change, complaint):
    planted = copy.deepcopy(rendered["prod"])
    change(planted)
    problems = fault_switch_problems("planted", planted, wanted=False)
    assert complaint in " ".join(problems), problems


def test_the_rule_fails_on_dev_without_its_patch(rendered):
    planted = copy.deepcopy(rendered["dev"])
    c = server(planted)
    c["env"] = [e for e in c["env"] if e["name"] != "FAULTS_ENABLED"]
    [problem] = fault_switch_problems("planted", planted, wanted=True)
    assert "has the fault switches off, not on" in problem
    assert fault_switch_problems("planted", [], wanted=True) == ["planted: no server"]


# 22 to 24: every switch thrown with the key the server has, and a body it takes.


@pytest.mark.parametrize("lesson", FAULT_LESSONS)
def test_every_switch_a_lesson_throws_is_one_the_server_takes(lesson):
    assert rule.fault_call_problems(lesson, objects(lesson), server_complaint) == []


def test_the_server_complaint_is_the_servers():
    assert server_complaint("readiness", '{"for": 300}') is None
    assert server_complaint("liveness", '{"mode": "hang"}') is None
    assert "mode" in server_complaint("liveness", '{"mode": "stuck"}')
    assert server_complaint("readyness", "{}").startswith("404 no such switch")
    assert "for" in server_complaint("cpu", '{"for": 7200}')


def rewritten(tmp_path, monkeypatch, lesson, old, new):
    """The lesson's README with `old` replaced by `new`, read by the rules instead."""
    folder = tmp_path / "k8s" / lesson
    folder.mkdir(parents=True)
    text = (ROOT / "k8s" / lesson / "README.md").read_text()
    assert old in text
    (folder / "README.md").write_text(text.replace(old, new))
    monkeypatch.setattr(rule, "ROOT", tmp_path)


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ('-H "X-API-Key: $KEY" -H', "-H", "sends no X-API-Key"),
        ("-H 'Content-Type: application/json' -d '{\"mode\"", '-d \'{"mode"', "not said to be"),
        ('{"mode": "hang", "for": 300}', '{"mode": "stuck"}', 'mode: must be "fail" or "hang"'),
        ("faults/liveness", "faults/liveliness", "no such switch: liveliness"),
        ('{"for": 300}', '{"for": 300, "pod": 1}', "unknown field 'pod'"),
        (".data.api-key}", ".data.apikey}", "reads no Secret key"),
    ],
)
def test_the_switch_rule_fails_on(tmp_path, monkeypatch, old, new, complaint):
    rewritten(tmp_path, monkeypatch, PROBES, old, new)
    problems = rule.fault_call_problems(PROBES, objects(PROBES), server_complaint)
    assert complaint in " ".join(problems), problems


def test_the_switch_rule_fails_on_a_key_the_secret_lacks():
    planted = objects(PROBES)
    rule.named(planted, "Secret", "app-tier-secret")["stringData"] = {"key": "x"}
    problems = " ".join(rule.fault_call_problems(PROBES, planted, server_complaint))
    assert "API_KEY is from app-tier-secret/api-key, not here" in problems


# 22: servers enough to take one out, probed where the switches fail.


def probed_app(planted=None):
    return rule.named(planted or objects(PROBES), "Deployment", "app-tier")


def test_lesson_22_takes_one_of_several_servers_out():
    assert rule.probed_server_problems(PROBES, probed_app()) == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda d: d["spec"].update(replicas=1), "taking it out of the Service empties it"),
        (
            lambda d: rule.template_spec(d)["containers"][0]["livenessProbe"].update(
                httpGet={"path": "/probe/readiness", "port": "http"}
            ),
            "livenessProbe does not ask /probe/liveness",
        ),
    ],
)
def test_the_probed_server_rule_fails_on(change, complaint):
    app = probed_app()
    change(app)
    assert complaint in " ".join(rule.probed_server_problems("planted", app))


# 23: the HPA on the server's CPU, and the README's numbers as the manifests make them.


def test_lesson_23_scales_on_the_cpu_its_readme_says():
    assert rule.cpu_scaling_problems(AUTOSCALING, objects(AUTOSCALING)) == []


def hpa(planted):
    return next(o for o in planted if o["kind"] == "HorizontalPodAutoscaler")


def bigger_limit(planted):
    c = rule.container(rule.template_spec(rule.named(planted, "Deployment", "app-tier")), "server")
    c["resources"]["limits"]["cpu"] = "1"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (bigger_limit, "never says a burning pod is at 1000%"),
        (lambda p: hpa(p)["spec"].pop("behavior"), "not shortened from 300 s"),
        (
            lambda p: hpa(p)["spec"]["behavior"]["scaleDown"].update(stabilizationWindowSeconds=90),
            "does not say the window is 90 s",
        ),
        (
            lambda p: hpa(p)["spec"]["metrics"][0]["resource"].update(name="memory"),
            "does not scale on CPU utilisation",
        ),
        (lambda p: hpa(p)["spec"]["scaleTargetRef"].update(name="app"), "scales no Deployment"),
    ],
)
def test_the_cpu_scaling_rule_fails_on(change, complaint):
    planted = objects(AUTOSCALING)
    change(planted)
    assert complaint in " ".join(rule.cpu_scaling_problems(AUTOSCALING, planted))


# 24: a rollout gated by readiness, and a switch that outlasts the reported stall.


def rollout_app(planted=None):
    return rule.named(planted or objects(ROLLOUT), "Deployment", "app-tier")


def readiness_seconds(lesson=ROLLOUT):
    return rule.switch_seconds(lesson, "readiness", faults.DEFAULT_SECONDS)


def test_lesson_24_stalls_while_the_switch_is_on_and_reports_it():
    assert rule.stalled_rollout_problems(ROLLOUT, rollout_app(), readiness_seconds()) == []


@pytest.mark.parametrize(
    ("change", "seconds", "complaint"),
    [
        (lambda d: d["spec"].update(minReadySeconds=5), None, "no time to switch"),
        (lambda d: d["spec"].update(progressDeadlineSeconds=60), None, "<= minReadySeconds"),
        (lambda d: None, [200.0], "ends before the deadline is reported and seen (120 s after"),
        (lambda d: None, [], "no readiness switch thrown"),
        (
            lambda d: d["spec"]["strategy"]["rollingUpdate"].update(maxUnavailable=1),
            None,
            "maxUnavailable 1",
        ),
    ],
)
def test_the_stalled_rollout_rule_fails_on(change, seconds, complaint):
    app = rollout_app()
    change(app)
    thrown = readiness_seconds() if seconds is None else seconds
    assert complaint in " ".join(rule.stalled_rollout_problems("planted", app, thrown))


def test_a_put_without_for_lasts_the_servers_default(tmp_path, monkeypatch):
    rewritten(tmp_path, monkeypatch, ROLLOUT, "-d '{\"for\": 600}'", "-d '{}'")
    assert readiness_seconds() == [faults.DEFAULT_SECONDS]
