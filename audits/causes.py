"""Causes: the run's flagged findings grouped by the effect they follow from, each with what to check next.

One unfair treatment raises several flags: a group's gap shows in the whole population and in each
segment; an intersection inherits its components' gaps; fewer discounts make the paid price higher. The
executive summary lists causes, not flags. Two flags share a cause only by one of the rules below
(`RULES`, quoted in every cause and in the report's methodology); a flag no rule explains is a cause of
its own. Every flagged finding belongs to exactly one cause.

R1 segments: a group's flags of one check, in the whole population and within segment values, are one
   cause. When the group is flagged within fewer than half of the segment values it was tested in, and
   each of those gaps is larger than the overall one, the segments name the cause and the overall flag
   (their dilution) is shown inside it.
R2 intersection: an intersection's flag whose gap its components predict (`explained_by`: no adverse
   excess) belongs to the cause of its flagged component in the same segment (the larger, if two are).
R3 paid-price echo: a price-gap flag of a single attribute's group that also has a flagged discount
   finding (incidence or depth: same attribute, group and segment) belongs to that discount's cause when
   the same comparison on list prices shows no gap beyond the threshold (`list_estimate`): the group was
   shown the same prices and pays more because it gets fewer or shallower discounts. Without list
   prices the rule cannot be checked and the price gap stays a cause of its own.
R4 dispersion side: a dearer-price flag of a group that also has a flagged price gap (same attribute,
   group and segment) belongs to the price gap's cause: charging the group more shows as the group sitting
   on the dearer side of dispersed cells.
R5 ordered bands: the flags of one ordered attribute's bands (audit.bands, tenure bands) and its trend
   test, in one check, are one cause, named by the band with the largest gap: a gap that grows with age
   or tenure is one effect, however many bands it reaches.
"""

from __future__ import annotations

from collections.abc import Sequence

from audits.catalogue import CHECKS_BY_NAME, no_difference
from audits.config import Config
from audits.findings import Cause, Finding, finding_id
from audits.lines import ordered_columns
from audits.wording import INTERSECTION, cell_words, who_text

RULES: dict[str, str] = {
    "segments": "R1 segments: the same group's flags of one check, overall and within segments",
    "intersection": "R2 intersection: an intersection whose gap its flagged components predict",
    "echo": "R3 paid-price echo: a price gap of a group shown the same list prices, that gets fewer or "
            "shallower discounts",
    "dearer": "R4 dispersion side: the dearer side of dispersed cells, for a group with a flagged price gap",
    "bands": "R5 ordered bands: one attribute's bands and trend in one check",
    "alone": "no rule groups this flag with another",
}
DISCOUNT_CHECKS = ("discount_incidence", "discount_depth")
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}

GroupKey = tuple[str, str | None, str | None]  # check, attribute, group (consistency: check, metric, None)


def group_causes(findings: Sequence[Finding], config: Config) -> list[Cause]:
    """The causes of the flagged findings (most severe first), by the rules of the module docstring."""
    flagged = [f for f in findings if f.is_flagged and f.status != "resolved"]
    parent: dict[str, Finding] = {}  # a flag a rule joins to another flag (its cause is that flag's)
    rule: dict[str, str] = {}
    by_segment = {(f.check, f.attribute, f.group, _segment(f)): f for f in flagged}

    for f in flagged:  # R3: a price gap that discounts explain joins the discount's cause
        if f.check != "price_gap" or INTERSECTION in (f.attribute or "") or not _no_list_gap(f, config):
            continue
        discounts = [by_segment[k] for k in ((c, f.attribute, f.group, _segment(f)) for c in DISCOUNT_CHECKS)
                     if k in by_segment]
        if discounts:
            parent[f.id], rule[f.id] = min(discounts, key=_rank), "echo"
    for f in flagged:  # R4: the dearer side of dispersed cells joins the group's price-gap cause
        gap = by_segment.get(("price_gap", f.attribute, f.group, _segment(f))) if f.check == "dearer_price" else None
        if gap is not None:
            parent[f.id], rule[f.id] = gap, "dearer"
    for f in flagged:  # R2: an explained intersection joins its component's cause
        if not f.explained_by:
            continue
        components = [by_segment.get((f.check, *part.split(" = ", 1), _segment(f)))
                      for part in f.explained_by.split("; ")]
        components = [c for c in components if c is not None]
        if components:
            parent[f.id], rule[f.id] = min(components, key=_rank), "intersection"

    def root(f: Finding) -> Finding:
        seen = {f.id}
        while f.id in parent and parent[f.id].id not in seen:
            f = parent[f.id]
            seen.add(f.id)
        return f

    ordered = ordered_columns(config)
    home = {f.id: _key(root(f), ordered) for f in flagged}
    members: dict[GroupKey, list[Finding]] = {}
    for f in flagged:
        members.setdefault(home[f.id], []).append(f)
    causes = [_cause(key, inside, rule, findings, config, ordered) for key, inside in members.items()]
    return sorted(causes, key=lambda c: (SEVERITY_RANK[c.severity], -len(c.finding_ids), c.headline))


def _cause(key: GroupKey, inside: list[Finding], rule: dict[str, str], findings: Sequence[Finding],
           config: Config, ordered: set[str]) -> Cause:
    own = [f for f in inside if _key(f, ordered) == key and f.id not in rule]
    banded = key[2] is None and key[1] in ordered
    lead = min(own, key=_rank) if banded and own else _lead(own or inside, findings)
    rules = ["segments"] if len({_segment(f) for f in own}) > 1 else []
    rules += ["bands"] if banded and len({f.group for f in own}) > 1 else []
    rules += sorted({rule[f.id] for f in inside if f.id in rule})
    headline = _first_clause(lead.summary)
    more = len(inside) - 1
    if more:
        headline += f" ({more} related flag{'s' if more > 1 else ''} follow{'' if more > 1 else 's'} from it)"
    entry = CHECKS_BY_NAME[lead.check]
    next_step = entry.next_step.format(who=who_text(lead), evidence=_evidence(lead), noun=config.outcome_noun,
                                       cell=cell_words(config))
    return Cause(
        id=finding_id("cause|" + "|".join(str(part) for part in key)),
        headline=headline,
        severity=min((f.severity for f in inside), key=SEVERITY_RANK.__getitem__),
        finding_ids=[lead.id, *(f.id for f in inside if f is not lead)],
        rule="; ".join(RULES[r] for r in rules) if rules else RULES["alone"],
        next_step=next_step[:1].upper() + next_step[1:] + ".",
        check=lead.check,
        lead_id=lead.id,
    )


def _lead(group: list[Finding], findings: Sequence[Finding]) -> Finding:
    """The flag that names the cause: the overall one, unless a minority of segments explains it (R1)."""
    overall = next((f for f in group if f.segment is None), None)
    segments = [f for f in group if f.segment is not None]
    if overall is None or not segments:
        return overall or min(segments, key=_rank)
    tested = {_segment(f) for f in findings if (f.check, f.attribute, f.group) == (overall.check, overall.attribute,
                                                                                     overall.group)
              and f.segment is not None and f.outcome != "suppressed"}
    if len(segments) < len(tested) / 2 and all(_adverse_size(s) > _adverse_size(overall) for s in segments):
        return min(segments, key=_rank)
    return overall


def _no_list_gap(f: Finding, config: Config) -> bool:
    """Were the group's list prices the reference's, within the practical threshold (R3)?"""
    if f.list_estimate is None:
        return False
    return abs(f.list_estimate - no_difference(f.metric)) < config.setting(CHECKS_BY_NAME[f.check].threshold)


def _adverse_size(f: Finding) -> float:
    """How far the estimate lies from no difference, in the direction that harms the group."""
    distance = (f.estimate or no_difference(f.metric)) - no_difference(f.metric)
    return distance if CHECKS_BY_NAME[f.check].adverse == "higher" else -distance


def _rank(f: Finding) -> tuple[int, float]:
    return SEVERITY_RANK[f.severity], -_adverse_size(f)


def _key(f: Finding, ordered: set[str]) -> GroupKey:
    if f.count is not None:
        return f.check, f.metric, None
    return (f.check, f.attribute, None) if f.attribute in ordered else (f.check, f.attribute, f.group)


def _segment(f: Finding) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((f.segment or {}).items()))


def _first_clause(summary: str) -> str:
    return summary.split("; ")[0].rstrip(".") + "."


def _evidence(f: Finding) -> str:
    """The finding's claim with 'they' for its subject: 'they received discounts 0.64 times as often ...'."""
    clause = _first_clause(f.summary).rstrip(".")
    subject = who_text(f)
    if clause.lower().startswith(subject.lower()):
        return "they" + clause[len(subject):]
    return clause[:1].lower() + clause[1:]
