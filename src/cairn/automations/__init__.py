"""Automations: a trigger, an audience, a frequency policy, goal and exit conditions and steps
(waits, branches, webhooks, traits, events, in-app messages), run durably per person."""

from cairn.automations.definition import Definition, DefinitionError, parse_definition
from cairn.automations.engine import AutomationEngine
from cairn.automations.store import Automation, Automations
from cairn.automations.webhooks import Deliveries

__all__ = [
    "Automation",
    "AutomationEngine",
    "Automations",
    "Definition",
    "DefinitionError",
    "Deliveries",
    "parse_definition",
]
