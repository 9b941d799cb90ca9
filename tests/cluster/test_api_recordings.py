"""The real API server still answers as it did when tests/fixtures/api was
recorded, so the fake the unit tier relies on (held to the same recording in
tests/unit/test_fake_api.py) still refuses what the real server refuses."""

from __future__ import annotations

import json
import uuid

from tests.fakes import exchanges


def test_the_real_server_answers_as_recorded(kube):
    recorded = json.loads(exchanges.FIXTURE.read_text())
    answered = exchanges.run(exchanges.sender(kube), f"exchanges-{uuid.uuid4().hex[:6]}")
    different = {label: {"recorded": recorded.get(label), "now": answered[label]}
                 for label in answered if answered[label] != recorded.get(label)}
    assert not different, ("the API server answers differently from tests/fixtures/api/exchanges.json; "
                           "re-record (python -m tests.fakes.exchanges) and make the fake follow:\n"
                           + json.dumps(different, indent=1))
