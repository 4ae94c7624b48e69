"""The alert rules: promtool checks them and runs their unit tests (alerts_test.yaml), where
each alert fires on series that should fire it and stays quiet on series that should not, and
an alert with a `for` is seen pending just before it fires; a changed rule fails them; and the
PrometheusRule of components/monitoring/operator is the rule file, wrapped by
scripts/prometheus-rule."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.support import ROOT

RULES = ROOT / "monitoring/alerts.yaml"
UNIT_TESTS = ROOT / "tests/monitoring/alerts_test.yaml"
PROMETHEUS_RULE = ROOT / "kustomize/components/monitoring/operator/prometheus-rule.yaml"


def promtool(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


# How close before its firing case an alert's pending case must be: a minute pins each `for`
# from both sides (the condition held, and had not for long enough yet, a minute before).
JUST_BEFORE = 60
LABEL = re.compile(r'(\w+)="([^"]*)"')


def rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def alerts() -> list[str]:
    return [rule["alert"] for rule in rules()]


def seconds(duration: str) -> int:
    """A Prometheus duration as the unit tests write it ("5m", "1m45s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", duration)
    assert "".join(n + u for n, u in parts) == duration, f"cannot read {duration!r}"
    return sum(int(n) * units[u] for n, u in parts)


def unit_tests() -> list[dict]:
    return yaml.safe_load(UNIT_TESTS.read_text())["tests"]


def test_promtool_checks_the_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_the_unit_tests_pass():
    result = promtool("test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_shown_to_fire_and_to_stay_quiet():
    """In the unit tests, every alert has a case where it fires and one where it does not."""
    cases = [case for test in unit_tests() for case in test["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert len(alerts()) == 11
    assert set(alerts()) == fires == quiet


def pending_then_firing(test: dict) -> set[str]:
    """The alerts this unit test shows pending (an ALERTS sample with alertstate="pending": the
    condition holds, not for the whole `for` yet) at most JUST_BEFORE seconds before a case
    where the same alert, same labels, fires."""
    shown = set()
    for expr_test in test.get("promql_expr_test", []):
        pending_at = seconds(expr_test["eval_time"])
        for sample in expr_test.get("exp_samples", []):
            labels = dict(LABEL.findall(sample["labels"]))
            if labels.pop("alertstate", None) != "pending":
                continue
            name = labels.pop("alertname")
            for case in test["alert_rule_test"]:
                fired = [a["exp_labels"] for a in case.get("exp_alerts") or []]
                if (
                    case["alertname"] == name
                    and 0 < seconds(case["eval_time"]) - pending_at <= JUST_BEFORE
                    and labels in fired
                ):
                    shown.add(name)
    return shown


def test_every_for_is_shown_from_both_sides():
    """An alert with a `for` is seen pending, then firing at most a minute later: a `for` made
    shorter fires at the pending case, one made longer is still pending at the firing case."""
    waiting = {rule["alert"] for rule in rules() if "for" in rule}
    assert len(waiting) == 9
    shown = set().union(*(pending_then_firing(test) for test in unit_tests()))
    assert waiting <= shown, f"never seen pending just before firing: {waiting - shown}"


def test_a_changed_rule_fails_its_unit_test(tmp_path):
    """The unit tests bite: the error ratio's threshold raised to 50% no longer fires on 14%
    of 5xx answers."""
    planted = RULES.read_text().replace("> 0.05\n", "> 0.5\n")
    assert planted != RULES.read_text()
    (tmp_path / "monitoring").mkdir()
    (tmp_path / "monitoring/alerts.yaml").write_text(planted)
    (tmp_path / "tests/monitoring").mkdir(parents=True)
    (tmp_path / "tests/monitoring/alerts_test.yaml").write_text(UNIT_TESTS.read_text())
    result = promtool("test", "rules", "tests/monitoring/alerts_test.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "alertname: MicroservicesApiErrors, time: 6m" in result.stdout + result.stderr


def test_the_prometheus_rule_is_the_rule_file_wrapped(tmp_path):
    """scripts/prometheus-rule writes what is committed (run it after editing the rules), and
    its spec says exactly what the rule file says; promtool accepts it as a rule file."""
    subprocess.run([ROOT / "scripts/prometheus-rule", tmp_path / "rule.yaml"], check=True)
    committed = PROMETHEUS_RULE.read_text()
    assert (tmp_path / "rule.yaml").read_text() == committed, "run scripts/prometheus-rule"
    rule = yaml.safe_load(committed)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(rule["spec"]))
    result = promtool("check", "rules", str(tmp_path / "spec.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
