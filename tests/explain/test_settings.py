"""Settings: GLASSBOX_EXPLAINER_* or SeldonDeployment parameters; a mistake stops the start-up."""

from __future__ import annotations

import pytest

from glassbox.errors import ConfigError
from glassbox.explain.component import LoanExplainer


def test_bad_settings_fail_at_start_naming_the_setting():
    with pytest.raises(ConfigError, match="modelurl"):
        LoanExplainer(modelurl="http://typo")
    with pytest.raises(ConfigError, match="max_pending"):
        LoanExplainer(max_pending=0)
    explainer = LoanExplainer(model_url="http://model:9000/api/v1.0/predictions", max_rows=3)
    assert (explainer.settings.model_url, explainer.settings.max_rows) == (
        "http://model:9000/api/v1.0/predictions",
        3,
    )


def test_environment_is_read_and_parameters_override_it(monkeypatch):
    monkeypatch.setenv("GLASSBOX_EXPLAINER_SEED", "9")
    monkeypatch.setenv("GLASSBOX_EXPLAINER_RESPONSE_FORMAT", "strData")
    explainer = LoanExplainer(seed=4)
    assert (explainer.settings.seed, explainer.settings.response_format) == (4, "strData")
    monkeypatch.setenv("GLASSBOX_EXPLAINER_RESPONSE_FORMAT", "xml")
    with pytest.raises(ConfigError, match="response_format"):
        LoanExplainer()
