"""The findings model: what an audit concluded, serialised as findings.json.

This module is the contract between the audit and everything that reads it (the HTML report,
downstream tools). It imports nothing of ours but the check catalogue. The report renders an `AuditResult`; it never
recomputes a statistic, so every figure a reader sees must already be here.

Schema version 1 is the DESIGN.md contract. Keys beyond it (`suppressed`, `checks`, `method`,
`history`, `data_quality.quarantine_reasons`, `data_quality.batches`, a finding's `id`, `outcome`,
`reason` and `coverage`, the run's `verdict`) are additive: a consumer that only knows the contract
keeps working.

Outcomes. Every test and every check has exactly one: `flagged` (it found what its threshold calls
unfair), `clear` (it ran and found nothing), `suppressed` (too few customers to show, for privacy) or
`not_assessed` (it could not look: no data, too little overlap, too few customers to judge, an error;
`reason` says which). A run whose checks are all suppressed or not assessed is `not_assessed`, never
clear: a green report over nothing would tell staff customers are treated fairly when nobody looked.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from audits.catalogue import CHECK_NAMES as ALL_CHECKS  # noqa: F401  (the catalogue is the one list)
from audits.catalogue import CONSISTENCY_CHECKS, DISPARITY_CHECKS  # noqa: F401

SCHEMA_VERSION = 1

Severity = Literal["high", "medium", "low"]
Status = Literal["new", "persisting", "resolved"]
CheckStatus = Literal["ok", "errored", "skipped"]
Outcome = Literal["flagged", "clear", "suppressed", "not_assessed"]
OUTCOMES: tuple[str, ...] = ("flagged", "clear", "suppressed", "not_assessed")
# coverage below this share of either side's lines is marked in the report: most lines had no comparable line
LOW_COVERAGE = 0.5

FLAGGED_SEVERITIES: tuple[str, ...] = ("high", "medium")


@dataclass(frozen=True)
class Finding:
    """One tested comparison (disparity) or one counted rule breach (consistency)."""

    check: str
    attribute: str | None
    group: str | None
    reference: str | None
    segment: dict[str, str] | None
    metric: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    q_value: float | None
    n_customers_group: int | None
    n_customers_reference: int | None
    count: int | None
    severity: Severity
    status: Status
    summary: str
    suppressed: bool = False
    # Regression-adjusted estimate (price checks): additive fixed effects for product x day and each
    # control, on the same metric scale as `estimate`, with its 95% interval and p-value.
    adjusted_estimate: float | None = None
    adjusted_ci_low: float | None = None
    adjusted_ci_high: float | None = None
    adjusted_p_value: float | None = None
    # Intersections: the flagged component findings that account for this one (then severity is low),
    # and the group's excess over what its components predict, on the metric's scale, with interval and p.
    explained_by: str | None = None
    excess_estimate: float | None = None
    excess_ci_low: float | None = None
    excess_ci_high: float | None = None
    excess_p_value: float | None = None
    outcome: Outcome = "clear"
    reason: str | None = None  # why the test was suppressed or not assessed
    # price_gap findings whose group also has a flagged discount finding: the same comparison on the list
    # price shown (before discounts), on the metric's scale, with its interval (audits/causes.py, rule R3)
    list_estimate: float | None = None
    list_ci_low: float | None = None
    list_ci_high: float | None = None
    # consistency: where the breaches are (audits/consistency.py): lines checked, amount at stake, revenue,
    # the top products / codes / channels / days, the worst cells of a dispersion rule, rows in breaches.csv
    details: dict[str, Any] | None = None
    # disparity: the share of the group's and of the reference's lines (and customers) that had a comparable
    # line of the other side in their cell: group_lines, reference_lines, group_customers, reference_customers
    coverage: dict[str, float | None] | None = None
    id: str = ""  # stable across runs: the same comparison keeps its id (see `key`)

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", finding_id(self.key))

    @property
    def is_flagged(self) -> bool:
        return self.severity in FLAGGED_SEVERITIES

    @property
    def low_coverage(self) -> bool:
        """Did fewer than half of the group's lines (and, against a fixed reference group, of the reference's)
        have a comparable line of the other side? Against all other customers the reference is everyone else,
        most of whom buy where the group does not: its share says nothing about the comparison's base."""
        sides = ("group_lines",) if self.reference in (None, "all others") else ("group_lines", "reference_lines")
        shares = [(self.coverage or {}).get(side) for side in sides]
        return any(v is not None and v < LOW_COVERAGE for v in shares)

    @property
    def key(self) -> str:
        """Identity of the comparison across runs (not of its result)."""
        segment = ",".join(f"{k}={v}" for k, v in sorted((self.segment or {}).items()))
        return "|".join(
            str(part) for part in (self.check, self.metric, self.attribute, self.group, self.reference, segment)
        )


def finding_id(key: str) -> str:
    """A short stable id for a comparison: the same key gives the same id in every run."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class CheckRun:
    """How one check of the catalogue fared in this run: whether it ran (`status`), what it concluded
    (`outcome`, with the reason when it could not look) and its tests by outcome."""

    check: str
    status: CheckStatus
    seconds: float
    reason: str | None = None
    n_tests: int = 0
    outcome: Outcome = "not_assessed"
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    period_start: str
    period_end: str
    transactions: int
    customers: int
    config_sha256: str
    data_sha256: str
    version: str
    scope: str = "default"
    started_at: str = ""
    finished_at: str = ""
    period_reason: str = ""  # why these days were audited ("the last 30 days: audit.window_days; ...")
    filters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DataQuality:
    passed: bool
    expectations: list[dict[str, Any]] = field(default_factory=list)
    quarantined_rows: int = 0
    quarantine_reasons: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Cause:
    """Flagged findings that follow from one effect (audits/causes.py): what the summary lists."""

    id: str  # stable across runs: from the lead comparison's key
    headline: str
    severity: Severity
    finding_ids: list[str]
    rule: str  # why these findings were grouped (a rule of the methodology), or that no rule applied
    next_step: str  # what a compliance officer checks next
    check: str
    lead_id: str  # the finding that names the cause
    status: Status = "new"


@dataclass(frozen=True)
class HistoryPoint:
    """One earlier run of the same scope, with the estimates of its findings by key."""

    run_id: str
    period_end: str
    estimates: dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class AuditResult:
    run: RunInfo
    data_quality: DataQuality
    findings: list[Finding]
    checks: list[CheckRun] = field(default_factory=list)
    method: dict[str, Any] = field(default_factory=dict)
    history: list[HistoryPoint] = field(default_factory=list)
    causes: list[Cause] = field(default_factory=list)
    # against the previous run of the scope: its run id, causes new / persisting / resolved, what changed
    since_previous: dict[str, Any] = field(default_factory=dict)
    # the consistency rules' breaching lines (a pyarrow Table, or None): written as breaches.csv next to the
    # report, never into findings.json
    breaches: Any = field(default=None, compare=False, repr=False)

    @property
    def flagged(self) -> list[Finding]:
        return [f for f in self.findings if f.is_flagged and f.status != "resolved"]

    @property
    def verdict(self) -> Outcome:
        """flagged when any check flagged; clear when a check ran and found nothing and none flagged; else
        not_assessed (no lines, or every check suppressed or not assessed): never clear over nothing."""
        outcomes = {c.outcome for c in self.checks}
        if "flagged" in outcomes:
            return "flagged"
        return "clear" if "clear" in outcomes and self.run.transactions > 0 else "not_assessed"

    def outcome_counts(self) -> dict[str, int]:
        """Tests by outcome, each counted once: what the summary tiles show."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for finding in self.findings:
            if finding.status != "resolved":
                counts[finding.outcome] += 1
        return counts

    def severity_counts(self) -> dict[str, int]:
        counts = {"high": 0, "medium": 0, "low": 0}
        for finding in self.findings:
            if finding.status != "resolved":
                counts[finding.severity] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "run": asdict(self.run),
            "data_quality": asdict(self.data_quality),
            "findings": [asdict(f) for f in self.findings],
            "checks": [asdict(c) for c in self.checks],
            "method": self.method,
            "history": [asdict(h) for h in self.history],
            "causes": [asdict(c) for c in self.causes],
            "since_previous": self.since_previous,
            "verdict": self.verdict,
        }

    def to_json(self) -> str:
        return json.dumps(_finite(self.to_dict()), indent=2, ensure_ascii=False, allow_nan=False)

    def write(self, path: Path) -> Path:
        """Write findings.json atomically: a reader sees the old file or the new one, never half."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(self.to_json(), encoding="utf-8")
        os.replace(temporary, path)
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditResult:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"findings.json: schema_version {data.get('schema_version')!r} is not {SCHEMA_VERSION}")
        return cls(  # `verdict` is derived from the checks, not read
            run=RunInfo(**data["run"]),
            data_quality=DataQuality(**data["data_quality"]),
            findings=[Finding(**f) for f in data["findings"]],
            checks=[_check_run(c, data["findings"]) for c in data.get("checks", [])],
            method=data.get("method", {}),
            history=[HistoryPoint(**h) for h in data.get("history", [])],
            causes=[Cause(**c) for c in data.get("causes", [])],
            since_previous=data.get("since_previous", {}),
        )

    @classmethod
    def read(cls, path: Path) -> AuditResult:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _check_run(data: dict[str, Any], findings: list[dict[str, Any]]) -> CheckRun:
    """A check as recorded; a record from before outcomes existed gets the outcome its findings imply."""
    run = CheckRun(**data)
    if "outcome" in data:
        return run
    mine = [f for f in findings if f["check"] == run.check]
    if run.status != "ok":
        return run
    if any(f["severity"] in FLAGGED_SEVERITIES for f in mine):
        return CheckRun(**{**data, "outcome": "flagged"})
    if any(not f.get("suppressed") for f in mine):
        return CheckRun(**{**data, "outcome": "clear"})
    return CheckRun(**{**data, "outcome": "suppressed" if mine else "not_assessed"})


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: an undefined figure is null, never a non-standard token."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
