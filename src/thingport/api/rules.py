"""Rules: trying a statement before it runs (README "Rules")."""

import json

from fastapi import APIRouter

from thingport.api import schemas as s
from thingport.api.deps import Manage, Read

router = APIRouter(tags=["rules"])


@router.post("/api/rules/test", response_model=list[s.RuleTrial], dependencies=[Read])
async def test_rule(body: s.RuleTest, management: Manage) -> list[dict]:
    """What the statement would emit for a sample payload, or for the newest stored messages it matches;
    nothing is changed or forwarded."""
    payload = json.dumps(body.payload).encode() if "payload" in body.model_fields_set else None
    trials = await management.try_rule(body.statement, payload, body.last, body.topic)
    return [trial.view() for trial in trials]
