"""Import validation: each bad record rejected with its line, field and reason; good records of the same import
kept; nothing of a rejected record written."""

from __future__ import annotations

import copy

import orjson
import pytest
from sqlalchemy import func, select

from services.exporter import models as m
from services.exporter.importer import Importer, import_lines
from tests.exporter.conftest import debate, gauntlet, with_changes


def _broken(**path_values) -> dict:
    """A valid debate with the values at dotted paths replaced (``votes__0__confidence=2``); None removes."""
    rec = copy.deepcopy(debate("d-bad"))
    for path, value in path_values.items():
        *parents, last = path.split("__")
        node = rec
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        key = int(last) if isinstance(node, list) else last
        if value is None:
            del node[key]
        else:
            node[key] = value
    return rec


BAD = [
    # wrong types: strict, never coerced
    (_broken(task=42), "task", "valid string"),
    (_broken(votes__0__confidence="0.8"), "votes.0.confidence", "valid number"),
    (_broken(consensus__reached="yes"), "consensus.reached", "valid boolean"),
    (_broken(rounds="three"), "rounds", "valid list"),
    (_broken(rounds__0__number=1.5), "rounds.0.number", "valid integer"),
    (_broken(created_at="last tuesday"), "created_at", "datetime"),
    # out of range
    (_broken(votes__1__confidence=1.01), "votes.1.confidence", "less than or equal to 1"),
    (_broken(votes__0__confidence=-0.2), "votes.0.confidence", "greater than or equal to 0"),
    (_broken(consensus__confidence=7), "consensus.confidence", "less than or equal to 1"),
    (_broken(critiques__0__severity=11), "critiques.0.severity", "less than or equal to 10"),
    # missing / empty
    (_broken(task=None), "task", "is required"),
    (_broken(task="   "), "task", "must not be blank"),
    (_broken(id=None), "id", "is required"),
    (_broken(id="has space"), "id", "must not contain whitespace"),
    (_broken(vertical=""), "vertical", "must not be empty"),
    (_broken(vertical=None), "vertical", "is required"),
    (_broken(rounds=[]), "rounds", "at least 1"),
    (_broken(rounds__0__proposals__1__content=""), "rounds.0.proposals.1.content", "must not be empty"),
    # cross-field rules
    (_broken(votes__0__choice="nobody"), "votes.0.choice", "made no proposal"),
    (_broken(votes__1__agent="alpha"), "votes.1.agent", "voted twice"),
    (_broken(consensus__winner="nobody"), "consensus.winner", "made no proposal"),
    (_broken(consensus__winner=""), "consensus.winner", "required when consensus was reached"),
    (_broken(consensus__final_answer=""), "consensus.final_answer", "required when consensus was reached"),
    (_broken(rounds__1__number=1), "rounds.1.number", "appears twice"),
    (_broken(rounds__0__proposals__1__agent="alpha"), "rounds.0.proposals.1.agent", "proposed twice"),
    (_broken(critiques__0__target_agent="zed"), "critiques.0.target_agent", "made no proposal"),
    (_broken(critiques__0__round=9), "critiques.0.round", "no round 9"),
    # the record as a whole
    (_broken(type="poll"), "type", "must be 'debate' or 'gauntlet'"),
    ([1, 2], "", "must be a JSON object"),
    (with_changes(gauntlet(), success="false"), "success", "valid boolean"),
    (with_changes(gauntlet(), attack_type=""), "attack_type", "must not be empty"),
]


@pytest.mark.parametrize("record,field,reason", BAD, ids=[f"{i}-{b[1] or 'record'}" for i, b in enumerate(BAD)])
def test_a_bad_record_is_rejected_with_field_and_reason_and_the_good_ones_kept(store, record, field, reason):
    imp = Importer(store)
    imp.add_object(debate("d-good-1"), line=1)
    imp.add_object(record, line=2)
    imp.add_object(debate("d-good-2"), line=3)
    s = imp.finish()
    assert (s.imported, s.rejected) == (2, 1)
    r = s.rejections[0]
    assert (r.line, r.field) == (2, field) and reason in r.reason, r
    with store.db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(m.Debate.__table__)).scalar_one() == 2
        assert conn.execute(select(func.count()).where(m.Proposal.debate_id == "d-bad")).scalar_one() == 0


def test_an_unknown_vertical_is_allowed_but_stored_lower_case(store):
    s = import_lines(store, [orjson.dumps(debate("d-1", vertical="  Maritime Law "))])
    assert (s.imported, s.rejected) == (1, 0)
    assert store.debates_per_vertical() == {"maritime law": 1}


def test_duplicate_ids_in_one_import_reject_the_later_one(store):
    lines = [orjson.dumps(debate("d-1")), orjson.dumps(with_changes(debate("d-1"), task="Other?")),
             orjson.dumps(gauntlet("d-1"))]  # a gauntlet run may share a debate's id: different kinds
    s = import_lines(store, lines)
    assert (s.imported, s.updated, s.rejected) == (2, 0, 1)
    assert (s.rejections[0].line, s.rejections[0].field) == (2, "id")
    assert "already given at line 1" in s.rejections[0].reason


def test_a_5_mb_field_is_rejected_without_storing_it(store):
    huge = with_changes(debate("d-huge"), task="x" * (5 * 1024 * 1024))
    s = import_lines(store, [orjson.dumps(debate("d-1")), orjson.dumps(huge)])
    assert (s.imported, s.rejected) == (1, 1)
    r = s.rejections[0]
    assert (r.line, r.field) == (2, "task") and "at most 100000 characters" in r.reason
    assert len(r.reason) < 200  # the reason does not echo the value


def test_lines_that_are_not_json(store):
    s = import_lines(store, [b'{"id": "d-1", "task": ', b"", b"not json", orjson.dumps(debate("d-2")), b"42"])
    assert (s.imported, s.rejected) == (1, 3)
    assert [(r.line, r.field) for r in s.rejections] == [(1, ""), (3, ""), (5, "")]
    assert s.rejections[0].reason.startswith("not valid JSON")
    assert "must be a JSON object, not int" in s.rejections[2].reason


def test_consensus_not_reached_needs_no_winner(store):
    s = import_lines(store, [orjson.dumps(debate("d-1", reached=False))])
    assert (s.imported, s.rejected) == (1, 0)
    assert not store.sft_available()


def test_a_debate_with_only_the_required_fields(store):
    minimal = {"id": "d-min", "task": "Q?", "vertical": "general",
               "rounds": [{"proposals": [{"agent": "a", "content": "A."}, {"agent": "b", "content": "B."}]}]}
    s = import_lines(store, [orjson.dumps(minimal)])
    assert (s.imported, s.rejected) == (1, 0)


def test_rejections_listed_are_capped_but_all_counted(store):
    from services.exporter import importer

    lines = [b"nope"] * (importer.MAX_REJECTIONS + 5)
    s = import_lines(store, lines)
    assert s.rejected == importer.MAX_REJECTIONS + 5 and len(s.rejections) == importer.MAX_REJECTIONS
