"""The store, the importer and the exporters on a real SQLite file under tmp_path (and on PostgreSQL when
TEST_POSTGRES_URL is set, see conftest.py)."""

from __future__ import annotations

import os
import shutil
import uuid

import orjson
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from services.exporter import models as m
from services.exporter.exports import ExportFilter
from services.exporter.importer import Importer, split_of
from services.exporter.store import DebateStore
from tests.exporter.conftest import debate, gauntlet, load, with_changes

POSTGRES = os.environ.get("TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, migrated_template):
    """The store on a fresh SQLite file, and on a fresh PostgreSQL database when TEST_POSTGRES_URL is set
    (.ci/run starts a server): the queries must not depend on SQLite."""
    if request.param == "sqlite":
        path = tmp_path / "debates.db"
        shutil.copyfile(migrated_template, path)
        s = DebateStore(f"sqlite:///{path}")
        yield s
        s.close()
        return
    if not POSTGRES:
        pytest.skip("TEST_POSTGRES_URL is not set")
    name = f"test_exporter_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    s = DebateStore(make_url(POSTGRES).set(database=name).render_as_string(hide_password=False))
    yield s
    s.close()
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _count(store, table) -> int:
    with store.db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__)).scalar_one()


def _all(pages) -> list:
    return [r for page in pages for r in page]


def test_split_is_a_stable_function_of_the_id():
    # Fixed values: the split must not depend on the process (Python's hash() would) or the machine.
    assert [split_of(f"debate-{i}") for i in range(8)] == [split_of(f"debate-{i}") for i in range(8)]
    ids = [f"debate-{i:05d}" for i in range(5000)]
    held = sum(split_of(i) == "heldout" for i in ids)
    assert 900 < held < 1100  # ~20%
    assert [split_of(f"debate-{i:05d}") for i in (1, 2, 3, 6, 7)] == ["heldout", "train", "heldout", "heldout", "train"]


def test_import_stores_every_part_of_a_debate(store):
    s = load(store, [debate("d-1", agents=("a", "b", "c", "d"), rounds=3, winner="a"), gauntlet("g-1")])
    assert (s.imported, s.updated, s.rejected) == (2, 0, 0)
    assert _count(store, m.Debate) == 1 and _count(store, m.GauntletRun) == 1
    assert _count(store, m.Proposal) == 12 and _count(store, m.Vote) == 4 and _count(store, m.Critique) == 1
    with store.db.engine.connect() as conn:
        row = conn.execute(select(m.Debate.__table__).where(m.Debate.id == "d-1")).mappings().one()
        agents = {r.agent: r for r in conn.execute(select(m.DebateAgent.__table__))}
    assert row["num_rounds"] == 3 and row["winner"] == "a" and row["consensus_reached"]
    assert row["split"] == split_of("d-1") and row["vertical"] == "general"
    # consensus confidence left out -> the winner's vote share: three votes of 0.8 for "a", one for "d"
    assert row["consensus_confidence"] == pytest.approx(0.75)
    assert agents["a"].vote_share == pytest.approx(0.75) and agents["b"].vote_share == 0
    assert all(a.final_round == 3 for a in agents.values())


def test_reimport_updates_in_place_and_never_duplicates(store, exporter_logic):
    load(store, [debate("d-1", rounds=3), debate("d-2"), gauntlet("g-1")])
    changed = with_changes(debate("d-1", rounds=2, vertical="Legal"), task="A new question?")
    s = load(store, [changed, debate("d-3"), with_changes(gauntlet("g-1"), response="new response")])
    assert (s.imported, s.updated, s.rejected) == (1, 2, 0)
    assert _count(store, m.Debate) == 3 and _count(store, m.GauntletRun) == 1
    assert _count(store, m.Proposal) == 3 * 2 + 3 * 2 + 3 * 2  # the old third round of d-1 is gone
    sft = {r[0]: r for r in _all(exporter_logic.sft_rows(ExportFilter()))}
    assert sft["d-1"][1] == "A new question?" and sft["d-1"][4] == 2 and sft["d-1"][5] == "legal"
    g = _all(exporter_logic.gauntlet_rows(ExportFilter()))
    assert [r[2] for r in g] == ["new response"]
    # and the same file again is a no-op apart from counting updates
    s = load(store, [changed, debate("d-3")])
    assert (s.imported, s.updated) == (0, 2) and _count(store, m.Debate) == 3


def test_sft_only_consensus_with_filters_order_and_limit(store, exporter_logic):
    records = [debate(f"d-{i:02d}", vertical=["legal", "code"][i % 2]) for i in range(30)]
    records.append(debate("d-none", reached=False))
    # a unanimous debate: confidence 1.0
    records.append(debate("d-unan", votes={"alpha": ("alpha", 0.9), "beta": ("alpha", 0.9), "gamma": ("alpha", 0.9)}))
    load(store, records)
    rows = _all(exporter_logic.sft_rows(ExportFilter()))
    ids = [r[0] for r in rows]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == 31 and "d-none" not in ids
    assert [r[0] for r in _all(exporter_logic.sft_rows(ExportFilter(min_confidence=0.9)))] == ["d-unan"]
    legal = _all(exporter_logic.sft_rows(ExportFilter(vertical=" LEGAL ")))
    assert len(legal) == 15 and {r[5] for r in legal} == {"legal"}
    # limit across page boundaries (batch=7 in this fixture)
    assert [r[0] for r in _all(exporter_logic.sft_rows(ExportFilter(limit=17)))] == ids[:17]
    train = {r[0] for r in _all(exporter_logic.sft_rows(ExportFilter(split="train")))}
    held = {r[0] for r in _all(exporter_logic.sft_rows(ExportFilter(split="heldout")))}
    assert train | held == set(ids) and not train & held
    assert held == {i for i in ids if split_of(i) == "heldout"}


def test_dpo_pairs_winner_against_each_other_agent(store, exporter_logic):
    # four agents, three rounds, but "delta" only proposed in round 1: its final proposal is its round-1 one
    d = debate("d-1", agents=("alpha", "beta", "gamma", "delta"), rounds=3, winner="beta",
               votes={"alpha": ("beta", 0.9), "beta": ("beta", 0.6), "gamma": ("gamma", 0.5), "delta": ("beta", 1.0)})
    for rnd in d["rounds"][1:]:
        rnd["proposals"] = [p for p in rnd["proposals"] if p["agent"] != "delta"]
    load(store, [d, debate("d-2", reached=False)])
    rows = _all(exporter_logic.dpo_rows(ExportFilter()))
    assert [(r[0], r[1]) for r in rows] == [("d-1", "alpha"), ("d-1", "delta"), ("d-1", "gamma")]
    assert {r[3] for r in rows} == {"beta r3 on d-1"}
    assert [r[4] for r in rows] == ["alpha r3 on d-1", "delta r1 on d-1", "gamma r3 on d-1"]
    total = 0.9 + 0.6 + 0.5 + 1.0
    beta, gamma = 2.5 / total, 0.5 / total
    assert [round(r[5], 6) for r in rows] == [round(beta, 6), round(beta, 6), round(beta - gamma, 6)]
    only = _all(exporter_logic.dpo_rows(ExportFilter(min_confidence_diff=0.7)))
    assert [r[1] for r in only] == ["alpha", "delta"]
    # pages of 7 over pairs: keyset on (debate id, agent) never repeats or skips a pair
    load(store, [debate(f"p-{i:02d}", agents=("a", "b", "c", "d"), winner="a") for i in range(10)])
    pairs = [(r[0], r[1]) for r in _all(exporter_logic.dpo_rows(ExportFilter()))]
    assert len(pairs) == 3 + 30 and len(set(pairs)) == len(pairs) and pairs == sorted(pairs)
    assert len(_all(exporter_logic.dpo_rows(ExportFilter(limit=8)))) == 8


def test_gauntlet_filters(store, exporter_logic):
    load(store, [gauntlet("g-1", "jailbreak", 8.0, True), gauntlet("g-2", "prompt_injection", 3.0),
                 gauntlet("g-3", "jailbreak", 2.0), gauntlet("g-4", "role_play", 9.5)])
    assert [r[0] for r in _all(exporter_logic.gauntlet_rows(ExportFilter()))] == ["g-1", "g-2", "g-3", "g-4"]
    assert [r[0] for r in _all(exporter_logic.gauntlet_rows(ExportFilter(attack_type="jailbreak")))] == ["g-1", "g-3"]
    assert [r[0] for r in _all(exporter_logic.gauntlet_rows(ExportFilter(min_severity=8)))] == ["g-1", "g-4"]
    rec = next(iter(exporter_logic.records("gauntlet", ExportFilter(limit=1))))[0]
    assert rec == {"prompt": "attack g-1", "response": "response to g-1", "attack_type": "jailbreak",
                   "success": True, "findings": ["Resisted manipulation"]}


@pytest.mark.parametrize("bad,field", [
    (dict(min_confidence=1.2), "min_confidence"), (dict(min_confidence=-0.1), "min_confidence"),
    (dict(min_confidence_diff=float("nan")), "min_confidence_diff"), (dict(limit=0), "limit"),
    (dict(split="test"), "split"), (dict(min_severity=11), "min_severity"),
])
def test_bad_filters_name_the_field(exporter_logic, bad, field):
    from services.common.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as err:
        exporter_logic.sft_rows(ExportFilter(**bad))
    assert [v.field for v in err.value.violations] == [field]


def test_write_export_file_and_stats(store, exporter_logic, tmp_path):
    load(store, [debate("d-1", vertical="medical"), debate("d-2", vertical="code"), debate("d-3", vertical="code"),
                 gauntlet("g-1")])
    written, count = exporter_logic.write("dpo", ExportFilter())
    path = exporter_logic.export_dir / written.name
    lines = path.read_bytes().splitlines()
    assert count == len(lines) == 6 and written.size_bytes == path.stat().st_size
    assert orjson.loads(lines[0])["metadata"]["debate_id"] == "d-1"
    assert not [p for p in exporter_logic.export_dir.iterdir() if p.name.startswith(".")]  # no temp files left
    stats = exporter_logic.stats()
    assert stats.debates_per_vertical == {"code": 2, "medical": 1} and stats.total_debates == 3
    assert stats.total_gauntlet_runs == 1 and stats.sft_available
    assert [f.name for f in stats.exported_files] == [written.name]


def test_an_empty_store(store, exporter_logic):
    assert store.is_empty()
    assert _all(exporter_logic.sft_rows(ExportFilter())) == []
    stats = exporter_logic.stats()
    assert (stats.total_debates, stats.sft_available, stats.exported_files) == (0, False, [])


def test_a_record_the_database_refuses_is_rejected_alone_and_leaves_nothing(store):
    # A real database fault (a trigger), not a mock: the chunk's transaction fails, the importer retries record
    # by record, and only the record at fault is rejected, with none of its rows written.
    if store.db.engine.dialect.name != "sqlite":
        pytest.skip("the fault is injected with a SQLite trigger")
    with store.db.engine.begin() as conn:
        conn.execute(text("CREATE TRIGGER boom BEFORE INSERT ON votes WHEN NEW.agent = 'boom' "
                          "BEGIN SELECT RAISE(ABORT, 'refused'); END"))
    bad = debate("d-bad", agents=("alpha", "beta", "boom"))
    imp = Importer(store, chunk=10)
    for i, rec in enumerate([debate("d-1"), bad, debate("d-2")], start=1):
        imp.add_object(rec, line=i)
    s = imp.finish()
    assert (s.imported, s.rejected) == (2, 1)
    assert (s.rejections[0].line, s.rejections[0].reason) == (2, "could not be stored: IntegrityError")
    with store.db.engine.connect() as conn:
        for table in ("debates", "proposals", "critiques", "debate_agents", "votes"):
            column = "id" if table == "debates" else "debate_id"
            n = conn.execute(text(f"SELECT count(*) FROM {table} WHERE {column} = 'd-bad'")).scalar_one()
            assert n == 0, table


def test_migrations_match_the_models(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), m.Base.metadata)
    assert diff == []


def test_store_reopens_an_existing_database(tmp_path):
    url = f"sqlite:///{tmp_path}/again.db"
    s = DebateStore(url)
    load(s, [debate("d-1")])
    s.close()
    s = DebateStore(url)  # migrating again is a no-op
    assert not s.is_empty()
    s.close()
