"""`sub verify`: check that a model or dataset image keeps the container contract.

Builds the source (or takes an existing image), then checks the contract's
clauses one by one, each with evidence and, when it fails, what the image
author should change. Layers, top to bottom:

    runner        the order of the checks; one Session per run
    checks_*      one check each, through a Runtime and an HTTP probe
    session       labels every container; removes containers, images, temp dirs
    clauses       the clause catalogue, results and skip logic (pure)
    report        text and JSON rendering, exit codes (pure)

Imports only errors, runtimes, sources and build (never controlplane, api, cli).
"""

from substratus.verify.clauses import GROUPS, Checklist, Clause, Outcome, Result, Skipped, Status, clauses_for
from substratus.verify.options import KINDS, Options, Target
from substratus.verify.report import Report, exit_code, render_text, to_dict
from substratus.verify.runner import Deps, verify

__all__ = ["GROUPS", "KINDS", "Checklist", "Clause", "Deps", "Options", "Outcome", "Report", "Result", "Skipped",
           "Status", "Target", "clauses_for", "exit_code", "render_text", "to_dict", "verify"]
