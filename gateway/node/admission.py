"""A node's admission state as its sampler decides it and its supervisor applies it: the state names, the refusal
codes and the decision told between them (monitor.admission decides; gateway.lifecycle applies)."""

from __future__ import annotations

from dataclasses import dataclass

NORMAL, SOFT, HARD = "normal", "soft", "hard"
# Not a decision: how readers (/health, /api/nodes, the dashboard, Prometheus) show a soft or hard node whose sampler
# is silent, and which its supervisor no longer applies.
STALE = "stale"
OVERHEATED, POWER_LIMIT = "device_overheated", "power_limit"  # the error codes of a hard refusal
HOT = "device_hot"  # the code of a soft decision: requests wait their turn, none is refused
RETRY_AFTER_HEAT = 30.0  # seconds a refused client is told to wait: a board cools slowly
RETRY_AFTER_POWER = 5.0


@dataclass(frozen=True)
class Decision:
    state: str = NORMAL
    code: str = ""  # device_overheated or power_limit, for refusals
    reason: str = ""
    retry_after: float = RETRY_AFTER_HEAT

    def message(self) -> dict:
        return {"op": "admission", "state": self.state, "code": self.code, "reason": self.reason,
                "retry_after": self.retry_after}  # fmt: skip

    @classmethod
    def of(cls, message: dict) -> Decision:
        """The decision a supervisor is told (`message`'s inverse); a state it does not know reads as normal."""
        state = message.get("state")
        return cls(
            state if state in (NORMAL, SOFT, HARD) else NORMAL,
            str(message.get("code") or ""),
            str(message.get("reason") or ""),
            float(message.get("retry_after") or RETRY_AFTER_HEAT),
        )
