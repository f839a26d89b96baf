"""The export formats of the user guide, defined once: the JSON Schema that GetFormats publishes is generated
from these models, and the contract test validates every exported record against it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SFT_INSTRUCTION = (
    "Analyze the following debate topic and give the answer a panel of expert agents reached by consensus, "
    "stating your assumptions, weighing the strongest counter-argument and giving a calibrated confidence."
)
"""The one instruction template of the SFT export."""


class SFTMetadata(BaseModel):
    debate_id: str = Field(description="The debate the record comes from.")
    consensus_confidence: float = Field(ge=0, le=1, description="The winner's share of the votes.")
    rounds: int = Field(ge=0, description="The number of rounds of the debate.")
    vertical: str = Field(description="The debate's domain (legal, medical, code, ...).")


class SFTRecord(BaseModel):
    """Supervised fine-tuning: standard instruction-following format."""

    instruction: str = Field(description="The instruction (one documented template).")
    input: str = Field(description="The debate's task (the question).")
    output: str = Field(description="The consensus answer.")
    metadata: SFTMetadata


class DPOMetadata(BaseModel):
    debate_id: str = Field(description="The debate the pair comes from.")
    confidence_diff: float = Field(ge=-1, le=1, description="Winner's vote share minus the loser's.")
    vertical: str = Field(description="The debate's domain.")


class DPORecord(BaseModel):
    """Direct preference optimisation: preference pairs from debate outcomes."""

    prompt: str = Field(description="The debate's task.")
    chosen: str = Field(description="The winning agent's final proposal.")
    rejected: str = Field(description="A losing agent's final proposal.")
    metadata: DPOMetadata


class GauntletRecord(BaseModel):
    """Exports from gauntlet adversarial testing."""

    prompt: str = Field(description="The attack scenario prompt.")
    response: str = Field(description="The model's response.")
    attack_type: str = Field(description="The kind of attack (e.g. prompt_injection).")
    success: bool = Field(description="Whether the attack got through.")
    findings: list[str] = Field(description="What the run found.")


# --- The import record -------------------------------------------------------------------------------------
# One JSONL line (or one element of a JSON array) of ``POST /api/debates/import``, of the CLI's file, or the
# ``record_json`` of an ``ImportDebates`` request. Types are strict (a number given as a string is refused, not
# coerced); fields not listed here are ignored. The checks a JSON Schema cannot express (agents named in votes
# must have proposed, one vote per agent, ...) are made by ``services.exporter.importer``.

MAX_TEXT = 100_000
"""Longest accepted text field (characters): longer is refused rather than stored (e.g. a 5 MB field)."""
MAX_NAME = 100
"""Longest accepted name (agent, vertical, attack type, persona)."""
MAX_ID = 200
MAX_ITEMS = 1_000
"""Most entries in one list (rounds, proposals per round, critiques, votes, findings, ...)."""

# pattern "\S": at least one non-blank character (JSON Schema patterns are unanchored searches, like pydantic's).
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=r"\S")]
OptionalText = Annotated[str, Field(max_length=MAX_TEXT)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=r"\S")]
RecordId = Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=r"^\S+$")]
Confidence = Annotated[float, Field(ge=0, le=1)]
Severity = Annotated[float, Field(ge=0, le=10)]
Strings = Annotated[list[Annotated[str, Field(max_length=MAX_TEXT)]], Field(max_length=MAX_ITEMS)]

_STRICT = ConfigDict(strict=True, extra="ignore")


class ImportProposal(BaseModel):
    """One agent's proposal in one round."""

    model_config = _STRICT
    agent: Name = Field(description="The agent that proposed.")
    content: Text = Field(description="The proposal text.")


class ImportRound(BaseModel):
    """One round: each agent's proposal."""

    model_config = _STRICT
    number: Annotated[int, Field(ge=1, le=MAX_ITEMS)] | None = Field(
        default=None, description="The round's number, from 1; default: its position in `rounds` plus one."
    )
    proposals: Annotated[list[ImportProposal], Field(min_length=1, max_length=MAX_ITEMS)]


class ImportCritique(BaseModel):
    """One agent's critique of another agent's proposal."""

    model_config = _STRICT
    round: Annotated[int, Field(ge=0, le=MAX_ITEMS)] = Field(default=0, description="The round (0: not known).")
    agent: Name = Field(description="The agent that critiques.")
    target_agent: Name = Field(description="The agent whose proposal is critiqued.")
    issues: Strings = Field(default_factory=list, description="The problems found.")
    suggestions: Strings = Field(default_factory=list, description="The suggested fixes.")
    severity: Severity = Field(default=0.0, description="How severe, 0 (none) to 10 (fatal).")


class ImportVote(BaseModel):
    """One agent's vote for a proposal."""

    model_config = _STRICT
    agent: Name = Field(description="The agent that votes (once per debate).")
    choice: Name = Field(description="The agent whose proposal it votes for (must have proposed).")
    confidence: Confidence = Field(description="The voter's confidence, 0 to 1.")


class ImportConsensus(BaseModel):
    """How the debate ended."""

    model_config = _STRICT
    reached: bool = Field(description="Whether the agents reached consensus.")
    final_answer: OptionalText = Field(default="", description="The consensus answer (required when reached).")
    confidence: Confidence | None = Field(
        default=None, description="The winner's vote share, 0 to 1; default: computed from the votes."
    )
    winner: Annotated[str, Field(max_length=MAX_NAME)] = Field(
        default="", description="The agent whose proposal won (required when reached; must have proposed)."
    )
    dissenting_views: Strings = Field(default_factory=list, description="Views of agents that did not agree.")


class DebateImport(BaseModel):
    """A debate between AI agents and its outcome (one import record)."""

    model_config = ConfigDict(strict=True, extra="ignore", title="DebateRecord")
    type: Literal["debate"] = Field(default="debate", description="The record's kind; may be left out for debates.")
    id: RecordId = Field(description="The debate's id; re-importing it updates the debate.")
    task: Text = Field(description="The question debated.")
    vertical: Name = Field(
        description="The domain: legal, medical, code, finance, general, or any other non-empty name "
        "(stored lower-case)."
    )
    # ISO-8601 text in JSON; not strict so that a JSON string is accepted.
    created_at: datetime | None = Field(default=None, strict=False, description="When the debate took place.")
    rounds: Annotated[list[ImportRound], Field(min_length=1, max_length=MAX_ITEMS)]
    critiques: Annotated[list[ImportCritique], Field(max_length=MAX_ITEMS * 10)] = Field(default_factory=list)
    votes: Annotated[list[ImportVote], Field(max_length=MAX_ITEMS)] = Field(default_factory=list)
    consensus: ImportConsensus | None = Field(default=None, description="The outcome; absent: not reached.")


class GauntletImport(BaseModel):
    """One adversarial (gauntlet) test of a model (one import record)."""

    model_config = ConfigDict(strict=True, extra="ignore", title="GauntletRunRecord")
    type: Literal["gauntlet"] = Field(description="The record's kind.")
    id: RecordId = Field(description="The run's id; re-importing it updates the run.")
    prompt: Text = Field(description="The attack scenario prompt.")
    response: OptionalText = Field(description="The model's response.")
    attack_type: Name = Field(description="The kind of attack (e.g. prompt_injection).")
    severity: Severity = Field(default=0.0, description="How severe the attack is, 0 to 10.")
    success: bool = Field(description="Whether the attack got through.")
    findings: Strings = Field(default_factory=list, description="What the run found.")
    persona: Annotated[str, Field(max_length=MAX_NAME)] = Field(default="", description="The attacker persona.")


ImportRecord = TypeAdapter(Annotated[DebateImport | GauntletImport, Field(title="ImportRecord")])
"""An import record: a debate (``type`` "debate" or left out) or a gauntlet run (``type`` "gauntlet")."""

IMPORT_EXAMPLE = {
    "type": "debate",
    "id": "debate-123",
    "task": "Should AI systems have explicit uncertainty estimates?",
    "vertical": "general",
    "created_at": "2024-01-15T10:00:00Z",
    "rounds": [
        {"number": 1, "proposals": [
            {"agent": "claude", "content": "Yes, assuming the estimates are calibrated..."},
            {"agent": "gpt", "content": "No, users ignore them anyway."},
        ]},
    ],
    "critiques": [{"round": 1, "agent": "claude", "target_agent": "gpt", "issues": ["Overconfident"],
                   "suggestions": ["Cite evidence"], "severity": 6.0}],
    "votes": [{"agent": "claude", "choice": "claude", "confidence": 0.9},
              {"agent": "gpt", "choice": "claude", "confidence": 0.6}],
    "consensus": {"reached": True, "final_answer": "Yes, assuming the estimates are calibrated...",
                  "confidence": 1.0, "winner": "claude", "dissenting_views": []},
}


FORMATS: dict[str, tuple[type[BaseModel], str, dict]] = {
    "sft": (
        SFTRecord,
        "/api/training/export/sft",
        {
            "instruction": SFT_INSTRUCTION,
            "input": "Should AI systems have explicit uncertainty estimates?",
            "output": "Yes, AI systems should provide explicit uncertainty estimates...",
            "metadata": {"debate_id": "debate-123", "consensus_confidence": 0.87, "rounds": 3, "vertical": "general"},
        },
    ),
    "dpo": (
        DPORecord,
        "/api/training/export/dpo",
        {
            "prompt": "What is the best approach to...",
            "chosen": "The consensus answer from the winning side...",
            "rejected": "The alternative answer that lost...",
            "metadata": {"debate_id": "debate-123", "confidence_diff": 0.35, "vertical": "general"},
        },
    ),
    "gauntlet": (
        GauntletRecord,
        "/api/training/export/gauntlet",
        {
            "prompt": "Attack scenario prompt...",
            "response": "Model response...",
            "attack_type": "prompt_injection",
            "success": False,
            "findings": ["Resisted manipulation", "Maintained reasoning"],
        },
    ),
}


IMPORT_DESCRIPTION = (
    "The import record: one JSONL line (or JSON array element) per debate or gauntlet run. A bad record is "
    "rejected with its line number, field and reason; the good records of the same import are kept; "
    "re-importing an id updates it."
)


def json_schema(name: str) -> dict:
    """The JSON Schema of one record of format ``name`` ("sft", "dpo", "gauntlet" or "import")."""
    if name == "import":
        return ImportRecord.json_schema()
    return FORMATS[name][0].model_json_schema()


def describe_formats() -> list[dict]:
    """Every export format and the import record: name, description, JSON Schema, example and endpoint."""
    out = []
    for name, (model, endpoint, example) in FORMATS.items():
        out.append(
            {
                "name": name,
                "description": (model.__doc__ or "").strip(),
                "json_schema": json.dumps(json_schema(name)),
                "example_json": json.dumps(example),
                "endpoint": endpoint,
            }
        )
    out.append(
        {
            "name": "import",
            "description": IMPORT_DESCRIPTION,
            "json_schema": json.dumps(json_schema("import")),
            "example_json": json.dumps(IMPORT_EXAMPLE),
            "endpoint": "/api/debates/import",
        }
    )
    return out
