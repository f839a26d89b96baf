"""The export formats of the user guide, defined once: the JSON Schema that GetFormats publishes is generated
from these models, and the contract test validates every exported record against it."""

from __future__ import annotations

import json

from pydantic import BaseModel, Field

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


def json_schema(name: str) -> dict:
    """The JSON Schema of one record of format ``name``."""
    return FORMATS[name][0].model_json_schema()


def describe_formats() -> list[dict]:
    """Every export format: name, description, JSON Schema, example and endpoint."""
    out = []
    for name, (model, endpoint, example) in FORMATS.items():
        out.append(
            {
                "name": name,
                "description": (model.__doc__ or "").strip(),
                "json_schema": json.dumps(model.model_json_schema()),
                "example_json": json.dumps(example),
                "endpoint": endpoint,
            }
        )
    return out
