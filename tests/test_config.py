"""fleche.toml: discovery in real directory trees, every table shape, every error, round trips."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleche import cache, config
from fleche.caches import (
    Cache,
    CachePool,
    CacheStack,
    FilteredCache,
    ReadOnlyCache,
    SizeLimitedCache,
    VoidCache,
)
from fleche.config import cache_from_config, cache_to_config, default_cache, named_cache
from fleche.configfile import load_settings
from fleche.configtables import SplitCache, absolute_url
from fleche.errors import ConfigError
from fleche.metadata import Environment, Git, Runtime, Tags


@dataclass
class Tree:
    root: Path
    home: Path
    project: Path
    work: Path
    xdg: Path

    def write(self, folder: Path, text: str, name: str = "fleche.toml") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(textwrap.dedent(text))
        return path


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """$HOME/project/src as the working directory, with an empty XDG config home beside."""
    home = tmp_path / "home"
    work = home / "project" / "src"
    work.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(work)
    config.reload()
    yield Tree(tmp_path, home, home / "project", work, tmp_path / "xdg" / "fleche")
    config.reload()


# --- discovery --------------------------------------------------------------------------------
def test_without_configuration_the_default_is_memory(tree) -> None:
    assert config.configured_caches() == {}
    assert load_settings().files == []
    default = default_cache()
    assert cache_to_config(default) == {"url": "memory://"}
    assert config.default_metadata() == ()


def test_nearer_files_win_and_default_merges_key_by_key(tree) -> None:
    tree.write(
        tree.home,
        """
        [default]
        cache = "team"
        metadata = ["runtime"]
        [team]
        url = "memory://"
        [mine]
        url = "void://"
        """,
    )
    tree.write(
        tree.project,
        """
        [default]
        cache = "team"
        [team]
        url = "memory://"
        read_only = true
        """,
    )
    assert [p.parent for p in load_settings().files] == [tree.project, tree.home]
    assert isinstance(named_cache("team"), ReadOnlyCache)  # the project's table, whole
    assert isinstance(named_cache("mine"), VoidCache)  # inherited from home
    assert default_cache() is named_cache("team")
    assert config.default_metadata() == (Runtime(),)  # [default] metadata from home


def test_caches_are_built_lazily_and_once_per_name(tree) -> None:
    tree.write(
        tree.project,
        """
        [good]
        url = "memory://"
        [broken]
        url = "nosuch://x"
        """,
    )
    assert set(config.configured_caches()) == {"good", "broken"}
    assert named_cache("good") is named_cache("good")
    with pytest.raises(ConfigError, match="nosuch"):
        named_cache("broken")


def test_root_true_stops_the_walk(tree) -> None:
    tree.write(tree.home, "[far]\nurl = 'memory://'\n")
    tree.write(tree.xdg, "[xdg]\nurl = 'memory://'\n", name="config.toml")
    tree.write(tree.project, "root = true\n[near]\nurl = 'memory://'\n")
    assert set(config.configured_caches()) == {"near"}
    tree.write(tree.project, "[default]\nroot = true\n[near]\nurl = 'memory://'\n")
    assert set(config.configured_caches()) == {"near"}  # the place fleche 0.22.2 put it


def test_xdg_file_is_read_last(tree) -> None:
    tree.write(tree.xdg, "[team]\nurl = 'void://'\n[global]\nurl = 'memory://'\n", "config.toml")
    tree.write(tree.work, "[team]\nurl = 'memory://'\n")
    assert load_settings().files == [tree.work / "fleche.toml", tree.xdg / "config.toml"]
    assert not isinstance(named_cache("team"), VoidCache)
    assert "global" in config.configured_caches()


def test_xdg_accepts_the_file_name_of_fleche_0_22_2(tree) -> None:
    tree.write(tree.xdg, "[old]\nurl = 'memory://'\n", "cache.toml")
    assert "old" in config.configured_caches()


def test_the_walk_stops_at_home(tree) -> None:
    tree.write(tree.root, "[above_home]\nurl = 'memory://'\n")
    tree.write(tree.home, "[at_home]\nurl = 'memory://'\n")
    assert set(config.configured_caches()) == {"at_home"}


def test_fleche_cache_overrides_the_configured_default(tree, monkeypatch) -> None:
    tree.write(tree.project, "[default]\ncache = 'team'\n[team]\nurl = 'memory://'\n")
    monkeypatch.setenv("FLECHE_CACHE", "void")
    assert isinstance(default_cache(), VoidCache)
    monkeypatch.setenv("FLECHE_CACHE", "memory://?copy=1")
    assert cache_to_config(default_cache()) == {"url": "memory://?copy=1"}


def test_fleche_cache_takes_a_name_or_a_path_and_its_errors_say_so(tree, monkeypatch) -> None:
    tree.write(tree.project, "[team]\nurl = 'void://'\n")
    monkeypatch.setenv("FLECHE_CACHE", "team")
    assert isinstance(default_cache(), VoidCache)
    monkeypatch.setenv("FLECHE_CACHE", "./here")
    assert cache_to_config(default_cache()) == {"url": f"embedded://{tree.work / 'here'}"}
    monkeypatch.setenv("FLECHE_CACHE", "taem")
    with pytest.raises(ConfigError, match=r"FLECHE_CACHE='taem': unknown cache name 'taem'.*team"):
        default_cache()


def test_default_cache_as_an_inline_table_or_a_url(tree) -> None:
    tree.write(tree.project, "[default]\ncache = { url = 'memory://', max_entries = 5 }\n")
    built = default_cache()
    assert isinstance(built, SizeLimitedCache)
    assert built.max_entries == 5
    config.reload()
    tree.write(tree.project, "[default]\ncache = 'void://'\n")
    assert isinstance(default_cache(), VoidCache)


def test_relative_paths_resolve_against_the_file_that_names_them(tree) -> None:
    tree.write(
        tree.project,
        """
        [here]
        url = "file://./cache"
        [there]
        values = "file://values"
        calls = "file://../calls"
        [plain]
        url = "./embedded-cache"
        """,
    )
    assert cache_to_config(named_cache("here")) == {"url": f"file://{tree.project / 'cache'}"}
    there = named_cache("there")
    assert isinstance(there, SplitCache)
    assert there.values_url == f"file://{tree.project / 'values'}"
    assert there.calls_url == f"file://{tree.home / 'calls'}"
    pytest.importorskip("fleche.storage.embedded")  # the embedded default is written elsewhere
    assert str(tree.project / "embedded-cache") in cache_to_config(named_cache("plain"))["url"]


def test_absolute_urls() -> None:
    base = Path("/data/project")
    assert absolute_url("file://./c", base) == "file:///data/project/c"
    assert absolute_url("file:///abs/c?durable=1", base) == "file:///abs/c?durable=1"
    assert absolute_url("sqlite:///c.db", base) == "sqlite:////data/project/c.db"
    assert absolute_url("sqlite:////abs/c.db", base) == "sqlite:////abs/c.db"
    assert absolute_url("sqlite:///:memory:", base) == "sqlite:///:memory:"
    assert absolute_url("redis://127.0.0.1:6379/0", base) == "redis://127.0.0.1:6379/0"
    assert absolute_url("file://~/c", base) == f"file://{Path.home().resolve() / 'c'}"


# --- table shapes -----------------------------------------------------------------------------
def test_every_shape_from_a_file(tree) -> None:
    tree.write(
        tree.project,
        """
        [one]
        url = "memory://"

        [split]
        values = "memory://?copy=1"
        calls = "memory://"

        [limited]
        url = "memory://"
        max_entries = 10
        max_bytes = 1_000_000
        read_only = true

        [[layered]]
        url = "memory://"
        [[layered]]
        url = "memory://"
        read_only = true

        [[shared.pool]]
        url = "memory://"
        [[shared.pool]]
        url = "void://"

        [[mixed]]
        url = "memory://"
        [[mixed]]
        [[mixed.pool]]
        url = "memory://"

        [default]
        cache = "layered"
        """,
    )
    assert isinstance(named_cache("one"), Cache)
    assert isinstance(named_cache("split"), SplitCache)
    limited = named_cache("limited")
    assert isinstance(limited, ReadOnlyCache)
    assert isinstance(limited.inner, SizeLimitedCache)
    assert (limited.inner.max_entries, limited.inner.max_bytes) == (10, 1_000_000)
    layered = named_cache("layered")
    assert isinstance(layered, CacheStack)
    assert isinstance(layered.layers[1], ReadOnlyCache)
    assert isinstance(named_cache("shared"), CachePool)
    mixed = named_cache("mixed")
    assert isinstance(mixed, CacheStack)
    assert isinstance(mixed.layers[1], CachePool)
    assert default_cache() is layered


def test_names_inside_stacks_and_pools(tree) -> None:
    tree.write(
        tree.project,
        """
        local = ["fast", "team"]
        [fast]
        url = "memory://"
        [team]
        url = "memory://"
        read_only = true
        """,
    )
    local = named_cache("local")
    assert isinstance(local, CacheStack)
    assert local.layers == (named_cache("fast"), named_cache("team"))
    assert local.layers[0] is named_cache("fast")


def test_a_configured_stack_in_use(tree) -> None:
    tree.write(tree.project, "[[both]]\nurl = 'memory://'\n[[both]]\nurl = 'memory://'\n")
    from fleche import fleche

    @fleche
    def f(x):
        return x + 1

    with cache("both"):
        assert f(1) == 2
    assert named_cache("both").layers[0].contains(f.digest(1))


@pytest.mark.parametrize(
    "spec",
    [
        {"url": "memory://"},
        {"url": "void://"},
        {"url": "memory://", "max_entries": 3},
        {"url": "memory://", "max_bytes": 100, "read_only": True},
        {"values": "memory://?copy=1", "calls": "memory://"},
        [{"url": "memory://"}, {"url": "memory://", "read_only": True}],
        {"pool": [{"url": "memory://"}, {"url": "void://"}]},
        {"pool": [{"url": "memory://"}], "read_only": True},
        [{"url": "memory://"}, {"pool": [{"url": "memory://"}]}],
        {"stack": [{"url": "memory://"}], "max_entries": 2},
        [{"stack": [{"url": "memory://"}, {"url": "void://"}]}, {"url": "memory://"}],
    ],
)
def test_config_round_trips(spec) -> None:
    built = cache_from_config(spec)
    assert cache_to_config(built) == spec
    assert cache_from_config(cache_to_config(built)) == built


def test_round_trip_of_persistent_caches(tmp_path) -> None:
    spec = [
        {"url": f"file://{tmp_path / 'a'}?durable=1"},
        {"values": f"file://{tmp_path / 'v'}", "calls": f"file://{tmp_path / 'c'}"},
    ]
    built = cache_from_config(spec)
    assert cache_to_config(built) == spec
    assert cache_from_config(cache_to_config(built)) == built


def test_hand_built_caches_write_their_storages_urls() -> None:
    from fleche.storage.memory import CallMemory, ValueMemory

    assert cache_to_config(Cache(ValueMemory(), CallMemory())) == {"url": "memory://"}
    assert cache_to_config(Cache(ValueMemory(copy=True), CallMemory())) == {
        "values": "memory://?copy=1",
        "calls": "memory://",
    }


def test_caches_config_cannot_express() -> None:
    inner = cache_from_config({"url": "memory://"})
    for what in (
        FilteredCache(inner, lambda call: True),
        ReadOnlyCache(ReadOnlyCache(inner)),
        SizeLimitedCache(ReadOnlyCache(inner), max_entries=1),
    ):
        with pytest.raises(ConfigError, match="cannot be written"):
            cache_to_config(what)


def test_options_go_into_the_url(tmp_path) -> None:
    key = "ab" * 16
    built = cache_from_config({"url": f"file://{tmp_path}", "durable": True, "secret_key": key})
    url = cache_to_config(built)["url"]
    assert "durable=1" in url
    assert f"secret_key={key}" in url
    assert built.values.durable
    several = cache_from_config({"url": "memory://", "secret_key": [key, "cd" * 16]})
    assert cache_to_config(several) == {"url": f"memory://?secret_key={key}:{'cd' * 16}"}


def test_the_cache_classmethods() -> None:
    assert Cache.from_url("void://") == VoidCache()
    assert isinstance(Cache.from_config([{"url": "memory://"}]), CacheStack)


# --- files written for fleche 0.22.2 ----------------------------------------------------------
def test_files_of_fleche_0_22_2_load(tree) -> None:
    tree.write(
        tree.project,
        """
        [default]
        cache = "persistent"
        metadata = ["Runtime"]

        [persistent]
        values.type = "cloudpickle"
        values.root = ".fleche/values"
        values.compress = true
        values.lock_timeout = 1.0
        calls.type = "cloudpickle"
        calls.root = ".fleche/calls"

        [fast]
        values.type = "memory"
        calls.type = "memory"

        [limited]
        values.type = "memory"
        calls.type = "memory"
        max_size = 100

        [terse]
        template = "cloudpickle"
        root = "~/.fleche"

        [sqlbacked]
        template = "sql"
        root = "cache"

        [tiny]
        template = "memory"
        """,
    )
    persistent = default_cache()
    assert isinstance(persistent, SplitCache)
    assert persistent.values_url == f"file://{tree.project / '.fleche/values'}?compress=zlib"
    assert persistent.calls_url == f"file://{tree.project / '.fleche/calls'}"
    assert isinstance(named_cache("fast"), SplitCache)
    assert named_cache("limited").max_entries == 100
    assert cache_to_config(named_cache("terse")) == {"url": f"file://{tree.home / '.fleche'}"}
    sqlbacked = named_cache("sqlbacked")
    assert sqlbacked.calls_url == f"sqlite:///{tree.project / 'cache' / 'calls.db'}"
    assert sqlbacked.values_url == f"file://{tree.project / 'cache'}"
    assert isinstance(named_cache("tiny"), Cache)
    assert config.default_metadata() == (Runtime(),)


# --- errors -----------------------------------------------------------------------------------
def _build_everything() -> None:
    config.configured_caches()
    config.default_metadata()
    for name in config.configured_caches():
        named_cache(name)


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        ("[team]\nurl = 'memory://'\nmax_entires = 3\n", "[team]", "max_entires"),
        ("[default]\ncahce = 'team'\n", "[default]", "cahce"),
        (
            "[[s]]\nurl = 'memory://'\n[[s]]\nurl = 'memory://'\nreadonly = true\n",
            "[s[1]]",
            "readonly",
        ),
        ("[[p.pool]]\nurl = 'memory://'\ncolour = 1\n", "[p.pool[0]]", "colour"),
        ("[t]\nurl = 'memory://'\nmax_entries = 'ten'\n", "[t]", "max_entries"),
        ("[t]\nurl = 'memory://'\nmax_bytes = -1\n", "[t]", "max_bytes"),
        ("[t]\nurl = 'memory://'\nread_only = 'yes'\n", "[t]", "read_only"),
        ("[t]\nurl = 'memory://'\nsecret_key = 'not hex'\n", "[t]", "secret_key"),
        ("[t]\nurl = 'memory://'\nmax_size = 1\nmax_entries = 1\n", "[t]", "max_size"),
        ("[t]\nvalues = 'memory://'\n", "[t]", "calls"),
        ("[t]\nvalues.type = 'hdf9'\ncalls.type = 'memory'\n", "[t.values]", "type"),
        (
            "[t]\nvalues.type = 'pickle'\nvalues.store = 1\ncalls.type = 'memory'\n",
            "[t.values]",
            "store",
        ),
        ("[t]\ntemplate = 'nope'\n", "[t]", "template"),
        ("[t]\ntemplate = 'pickle'\n", "[t]", "root"),
        ("[t]\ntype = 'ssh'\nhost = 'x'\n", "[t]", "type"),
        ("[t]\nurl = 'memory://'\npool = []\n", "[t]", "url"),
        ("t = []\n", "[t]", None),
        ("[t]\nnothing = 1\n", "[t]", None),
    ],
)
def test_errors_name_the_file_the_table_and_the_key(tree, text, where, key) -> None:
    path = tree.write(tree.project, text)
    with pytest.raises(ConfigError) as raised:
        _build_everything()
    message = str(raised.value)
    assert str(path) in message
    assert where in message
    if key is not None:
        assert repr(key) in message


def test_unknown_name_in_default_lists_the_configured_ones(tree) -> None:
    path = tree.write(tree.project, "[default]\ncache = 'tema'\n[team]\nurl = 'memory://'\n")
    with pytest.raises(ConfigError) as raised:
        default_cache()
    message = str(raised.value)
    assert str(path) in message
    assert "'tema'" in message
    assert "team" in message


def test_unknown_name_in_a_stack(tree) -> None:
    tree.write(tree.project, "local = ['fast', 'nowhere']\n[fast]\nurl = 'memory://'\n")
    with pytest.raises(ConfigError, match=r"'nowhere'.*configured caches: fast, local"):
        named_cache("local")


def test_unknown_name_asked_for_in_code(tree) -> None:
    tree.write(tree.project, "[team]\nurl = 'memory://'\n")
    with pytest.raises(ConfigError, match="configured caches: memory, team, void"):
        cache("taem")


def test_a_cache_that_contains_itself(tree) -> None:
    tree.write(tree.project, "loop = ['other']\nother = ['loop']\n")
    with pytest.raises(ConfigError, match="contains itself"):
        named_cache("loop")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[team\nurl = 1\n", "invalid TOML"),
        ("[memory]\nurl = 'file:///x'\n", "reserved"),
        ("team = 'memory://'\n", "array of tables"),
        ("root = 'yes'\n", "true or false"),
        ("[default]\nmetadata = ['runtime', 'colour']\n", "colour"),
        ("[default]\nmetadata = 'runtime'\n", "array"),
    ],
)
def test_file_errors(tree, text, match) -> None:
    path = tree.write(tree.project, text)
    with pytest.raises(ConfigError, match=match) as raised:
        _build_everything()
    assert str(path) in str(raised.value)


def test_errors_in_code_say_configuration() -> None:
    with pytest.raises(ConfigError, match=r"configuration: \[stack\[0\]\] key 'urll'"):
        cache_from_config({"stack": [{"urll": "memory://"}]})
    with pytest.raises(ConfigError, match="at least one"):
        cache_from_config([])


# --- metadata from the file -------------------------------------------------------------------
def test_default_metadata_from_the_file(tree) -> None:
    tree.write(
        tree.project,
        """
        [default]
        metadata = [
            "runtime",
            "Git",
            { type = "environment", packages = ["xxhash"] },
            { type = "tags", project = "alpha" },
        ]
        """,
    )
    assert config.default_metadata() == (
        Runtime(),
        Git(),
        Environment(packages=["xxhash"]),
        Tags(project="alpha"),
    )


def test_a_fresh_process_uses_the_configured_cache_and_metadata(tree) -> None:
    tree.write(
        tree.project,
        """
        [default]
        cache = "here"
        metadata = ["runtime", { type = "tags", project = "alpha" }]
        [here]
        url = "file://./cache"
        """,
    )
    script = textwrap.dedent(
        """
        import json
        from fleche import fleche

        @fleche
        def f(x):
            return x + 1

        f(1)
        print(json.dumps(f.query(1).only().metadata))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tree.work, capture_output=True, text=True, check=True
    )
    metadata = json.loads(run.stdout)
    assert metadata["tags"] == {"project": "alpha"}
    assert set(metadata["runtime"]) == {"start", "end", "duration"}
    assert any((tree.project / "cache").iterdir())
