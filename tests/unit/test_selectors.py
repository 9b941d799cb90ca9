import pytest

from scaler.decide.selectors import Selector, SelectorError

LABELS = {"app": "chat", "tier": "gpu", "app.kubernetes.io/name": "vllm", "empty": ""}


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("", True, id="empty-matches-all"),
    pytest.param("app=chat", True, id="equals"),
    pytest.param("app==chat", True, id="double-equals"),
    pytest.param("app=embed", False, id="equals-other-value"),
    pytest.param("app!=embed", True, id="not-equals"),
    pytest.param("app!=chat", False, id="not-equals-same"),
    pytest.param("missing!=x", True, id="not-equals-matches-missing-label"),
    pytest.param("tier in (gpu, cpu)", True, id="in"),
    pytest.param("tier in (cpu)", False, id="in-other"),
    pytest.param("missing in (x)", False, id="in-needs-label"),
    pytest.param("tier notin (cpu)", True, id="notin"),
    pytest.param("tier notin (gpu,cpu)", False, id="notin-listed"),
    pytest.param("missing notin (x)", True, id="notin-matches-missing-label"),
    pytest.param("app", True, id="exists"),
    pytest.param("missing", False, id="exists-missing"),
    pytest.param("!missing", True, id="does-not-exist"),
    pytest.param("!app", False, id="does-not-exist-present"),
    pytest.param("app.kubernetes.io/name=vllm", True, id="prefixed-key"),
    pytest.param("empty=", True, id="empty-value"),
    pytest.param("app=chat,tier in (gpu),!missing", True, id="all-must-hold"),
    pytest.param("app=chat, tier=cpu", False, id="one-fails"),
    pytest.param("  app = chat  ", True, id="spaces"),
])
def test_matches(text, expected):
    assert Selector.parse(text).matches(LABELS) is expected


@pytest.mark.parametrize(("text", "fragment"), [
    pytest.param("app=", None, id="trailing-equals-is-empty-value"),
    pytest.param("a=b=c", "expected ','", id="two-operators"),
    pytest.param("a >5", "expected one of =, ==, !=, in, notin", id="unsupported-operator"),
    pytest.param("a,,b", "expected a label key", id="double-comma"),
    pytest.param("x/y/z", "not a valid label key", id="bad-key"),
    pytest.param("a in (x", "expected ',' or ')'", id="unclosed-set"),
    pytest.param("a in ()", "may not be empty", id="empty-set"),
    pytest.param("a in x", "expected '('", id="set-without-parens"),
    pytest.param("a=b c", "expected ','", id="missing-comma"),
    pytest.param("a=" + "v" * 64, "not a valid label value", id="value-too-long"),
    pytest.param("app=ch@t", "not a valid label value", id="bad-value"),
])
def test_parse_errors(text, fragment):
    if fragment is None:
        assert Selector.parse(text).matches({"app": ""})
        return
    with pytest.raises(SelectorError) as raised:
        Selector.parse(text)
    assert fragment in str(raised.value)
    assert repr(text) in str(raised.value)
    assert "at column" in str(raised.value) or "at the end" in str(raised.value)


def test_round_trip_text():
    selector = Selector.parse("app=chat,tier in (gpu,cpu),!legacy,canary,env!=dev,zone notin (a)")
    assert str(selector) == "app=chat,tier in (cpu,gpu),!legacy,canary,env!=dev,zone notin (a)"
    assert Selector.parse(str(selector)) == selector
