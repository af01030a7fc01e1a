"""Rules: creating them, their progress and state, pausing, deleting, and trying a statement before it runs
(README "Rules")."""

import json
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from thingport.api import schemas as s
from thingport.api.deps import Admin, Manage, Read
from thingport.api.views import rule_json

router = APIRouter(tags=["rules"])


@router.post("/api/rules/test", response_model=list[s.RuleTrial], dependencies=[Read])
async def test_rule(body: s.RuleTest, management: Manage) -> list[dict]:
    """What the statement would emit for a sample payload, or for the newest stored messages it matches;
    nothing is changed or forwarded."""
    payload = json.dumps(body.payload).encode() if "payload" in body.model_fields_set else None
    trials = await management.try_rule(body.statement, payload, body.last, body.topic)
    return [trial.view() for trial in trials]


@router.get("/api/rules", response_model=list[s.RuleOut], dependencies=[Read])
async def list_rules(management: Manage) -> list[dict]:
    """Rules with their cursor, backlog, matched and failed counts, last error and delivery state."""
    return [rule_json(rule, backlog) for rule, backlog in await management.list_rules()]


@router.post("/api/rules", response_model=s.RuleOut, status_code=201, dependencies=[Admin],
             responses={400: {"model": s.ErrorResponse}, 409: {"model": s.ErrorResponse}})
async def create_rule(
    body: s.RuleCreate, management: Manage,
    check: Annotated[bool, Query(description="false: skip the sink checks (as the body's `check`)")] = True,
) -> dict:
    """A statement that does not compile is 400 `invalid` naming the line and column; every action's sink is
    first connected to with its credentials (400 `sink_unreachable` unless `check` is false). A refused rule
    leaves nothing behind."""
    created = await management.create_rule(
        body.name, body.statement, [action.model_dump() for action in body.actions], body.enabled,
        body.fromStart, check=body.check and check)
    return rule_json(created, 0)


@router.get("/api/rules/{name}", response_model=s.RuleOut, dependencies=[Read],
            responses={404: {"model": s.ErrorResponse}})
async def get_rule(name: str, management: Manage) -> dict:
    return rule_json(*await management.rule(name))


@router.patch("/api/rules/{name}", response_model=s.RuleOut, dependencies=[Admin],
              responses={404: {"model": s.ErrorResponse}})
async def update_rule(name: str, body: s.RulePatch, management: Manage) -> dict:
    """Pause (`enabled: false`) or resume a rule: a paused rule's messages wait for it."""
    return rule_json(*await management.set_rule_enabled(name, body.enabled))


@router.delete("/api/rules/{name}", status_code=204, response_class=Response, dependencies=[Admin],
               responses={404: {"model": s.ErrorResponse}})
async def delete_rule(name: str, management: Manage) -> Response:
    await management.delete_rule(name)
    return Response(status_code=204)
