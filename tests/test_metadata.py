"""Metadata recorders: what they record, how they combine, how queries match them (SPEC 11)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from typing import Any

import pytest

from fleche import Environment, Git, Runtime, Tags, fleche, meta, project, tags
from fleche.call import QueryCall
from fleche.errors import ConfigError
from fleche.metadata import MetaData, collect, recorder_from_config
from fleche.state import active_metadata


def _only_metadata(f: Any, *args: Any) -> dict[str, Any]:
    return f.query(*args).only().metadata


def test_recorders_give_json(any_cache) -> None:
    @fleche(meta=[Runtime(), Environment(packages=["xxhash", "no-such-package"]), Git()])
    def f(x):
        return x

    f(1)
    stored = _only_metadata(f, 1)
    assert json.loads(json.dumps(stored)) == stored
    runtime = stored["runtime"]
    assert runtime["start"] <= runtime["end"]
    assert runtime["duration"] >= 0
    environment = stored["environment"]
    assert environment["packages"]["no-such-package"] is None
    assert environment["packages"]["xxhash"]
    assert {"python", "platform", "host"} <= set(environment)
    assert "created" in stored["fleche"]


def test_decorator_meta_adds_to_the_active_recorders(any_cache) -> None:
    @fleche(meta=[Runtime()])
    def f(x):
        return x

    with tags(run=7):
        f(1)
    stored = _only_metadata(f, 1)
    assert stored["tags"] == {"run": 7}
    assert "runtime" in stored


def test_tags_nest_and_merge_then_unwind(any_cache) -> None:
    @fleche
    def f(x):
        return x

    with project("alpha"):
        with tags(stage="fit", seed=1):
            f(1)
            with tags(seed=2):
                f(2)
        f(3)
    f(4)
    assert _only_metadata(f, 1)["tags"] == {"project": "alpha", "stage": "fit", "seed": 1}
    assert _only_metadata(f, 2)["tags"] == {"project": "alpha", "stage": "fit", "seed": 2}
    assert _only_metadata(f, 3)["tags"] == {"project": "alpha"}
    assert "tags" not in _only_metadata(f, 4)
    assert active_metadata() == ()


def test_meta_is_sticky_and_scoped(any_cache) -> None:
    @fleche
    def f(x):
        return x

    with meta(Tags(owner="me")):
        f(1)
    f(2)
    meta(Tags(team="x"))
    f(3)
    assert _only_metadata(f, 1)["tags"] == {"owner": "me"}
    assert "tags" not in _only_metadata(f, 2)
    assert _only_metadata(f, 3)["tags"] == {"team": "x"}
    meta(stack=False)  # replaces instead of adding: nothing is recorded any more
    assert active_metadata() == ()


def test_queries_match_metadata_by_nested_and(any_cache) -> None:
    @fleche
    def f(x):
        return x

    with tags(stage="fit", seed=1):
        f(1)
    with tags(stage="fit", seed=2):
        f(2)
    with tags(stage="eval", seed=1):
        f(3)
    found = f.query(metadata={"tags": {"stage": "fit"}})
    assert sorted(c.result for c in found) == [1, 2]
    both = f.query(metadata={"tags": {"stage": "fit", "seed": 1}})
    assert [c.result for c in both] == [1]
    assert f.query(metadata={"tags": {"stage": "test"}}).count() == 0
    assert f.query(metadata={"missing": {}}).count() == 0
    anything = any_cache.query(QueryCall(metadata={"tags": {"seed": None}}))  # present, any value
    assert anything.count() == 3


def test_tags_are_normalised_to_json_and_checked_at_once(any_cache) -> None:
    assert Tags(shape=(2, 3)).tags == {"shape": [2, 3]}
    with pytest.raises(TypeError, match="JSON"):
        Tags(path=object())
    with pytest.raises(TypeError, match="JSON"):
        tags(ratio=float("nan"))

    @fleche
    def f(x):
        return x

    with tags(shape=(2, 3)):
        f(1)
    assert f.query(metadata={"tags": {"shape": [2, 3]}}).count() == 1


def test_a_failing_recorder_is_logged_and_the_result_kept(any_cache, caplog) -> None:
    class Broken(MetaData):
        key = "broken"

        def end(self, state: Any) -> Any:
            raise RuntimeError("sensor offline")

    @fleche(meta=[Broken(), Runtime()])
    def f(x):
        return x * 2

    with caplog.at_level(logging.WARNING, logger="fleche.metadata"):
        assert f(2) == 4
    assert "sensor offline" in caplog.text
    stored = _only_metadata(f, 2)
    assert stored["broken"] is None
    assert "runtime" in stored


def test_collect_merges_dicts_under_one_key() -> None:
    recorders = [Tags(a=1, b=1), Tags(b=2)]
    assert collect(recorders, [r.begin() for r in recorders]) == {"tags": {"a": 1, "b": 2}}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
def test_git_records_the_commit_and_dirty_state(tmp_path) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    head = git("rev-parse", "HEAD")
    recorder = Git(str(tmp_path))
    assert recorder.end(recorder.begin()) == {"commit": head, "dirty": False}
    assert Git(str(tmp_path / "nowhere")).end(None) is None  # not a work tree: nothing to say


def test_recorders_from_configuration() -> None:
    assert recorder_from_config("Runtime") == Runtime()
    assert recorder_from_config({"type": "git", "path": "/x"}) == Git("/x")
    assert recorder_from_config({"type": "tags", "project": "a"}) == Tags(project="a")
    with pytest.raises(ConfigError, match="known: runtime"):
        recorder_from_config("colour")
    with pytest.raises(ConfigError, match="environment"):
        recorder_from_config({"type": "environment", "colour": 1})
    with pytest.raises(ConfigError):
        recorder_from_config({"packages": []})


def test_recorders_compare_and_pickle() -> None:
    import pickle

    for recorder in (Runtime(), Environment(["numpy"]), Git("/x"), Tags(a=[1])):
        assert pickle.loads(pickle.dumps(recorder)) == recorder
        assert hash(recorder) == hash(pickle.loads(pickle.dumps(recorder)))
    assert Tags(a=1) != Tags(a=2)


def test_environment_takes_one_package_name_as_a_string() -> None:
    assert Environment("xxhash").packages == ("xxhash",)
    assert list(Environment("xxhash").end(None)["packages"]) == ["xxhash"]
