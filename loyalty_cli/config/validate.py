"""`loyalty validate`: every problem of every program and workflow file, in one pass."""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from loyalty_cli.config import schema, semantic
from loyalty_cli.config.yamlload import YamlDoc, load_yaml_file
from loyalty_cli.diagnostics import Diagnostic, ExitCode

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class ValidationReport:
    """What `validate` found: the files it checked and their diagnostics."""

    files: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # path -> program | workflow
    diagnostics: list[Diagnostic] = field(default_factory=list)
    usage_errors: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def exit_code(self) -> int:
        if self.usage_errors:
            return ExitCode.USAGE
        return ExitCode.INVALID if self.errors else ExitCode.OK

    def to_dict(self) -> dict:
        """The stable JSON structure of `validate --format json` (docs/validate.md)."""
        return {
            "version": 1,
            "ok": not self.errors and not self.usage_errors,
            "exit_code": int(self.exit_code),
            "files": [{"path": p, "kind": self.kinds.get(p, "unknown")} for p in self.files],
            "summary": {
                "files": len(self.files),
                "errors": len(self.errors),
                "warnings": len(self.warnings),
            },
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "usage_errors": list(self.usage_errors),
        }


def expand_paths(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Files, folders (searched recursively for *.yaml/*.yml) and globs -> files."""
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in YAML_SUFFIXES and f.is_file())
            if not found:
                problems.append(f"{raw}: folder holds no .yaml or .yml file")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        elif any(ch in raw for ch in "*?["):
            found = sorted(Path(m) for m in glob.glob(raw, recursive=True) if Path(m).is_file())
            if not found:
                problems.append(f"{raw}: no file matches this pattern")
            files.extend(found)
        else:
            problems.append(f"{raw}: no such file or folder")
    unique: list[Path] = []
    seen: set[Path] = set()
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


def _kind(doc: YamlDoc) -> str | None:
    if isinstance(doc.data, dict):
        if "program" in doc.data:
            return "program"
        if "workflow" in doc.data:
            return "workflow"
    return None


def validate_paths(paths: list[str]) -> ValidationReport:
    """Validate the given files, folders and globs; never raises for bad input."""
    report = ValidationReport()
    files, problems = expand_paths(paths)
    report.usage_errors.extend(problems)

    docs: dict[Path, YamlDoc] = {}
    for f in files:
        report.files.append(str(f))
        doc, diags = load_yaml_file(f)
        report.diagnostics.extend(diags)
        if doc is None:
            continue
        kind = _kind(doc)
        if kind is None:
            report.diagnostics.append(
                Diagnostic(
                    code="Y105",
                    path=str(f),
                    line=1,
                    col=1,
                    message="not a program or workflow file: no top-level 'program' or "
                    "'workflow' key",
                    hint="A program starts with `version: 1` and `program:`; a workflow with "
                    "`version: 1` and `workflow:`.",
                )
            )
            continue
        report.kinds[str(f)] = kind
        docs[f.resolve()] = doc

    template_cache: dict = {}
    checked_workflows: set[Path] = set()
    for doc in docs.values():
        if report.kinds.get(doc.path) != "program":
            continue
        diags = schema.check_schema(doc, "program")
        report.diagnostics.extend(diags)
        if any(d.is_error for d in diags):
            # Still check the workflows, with what can be read of the program.
            pctx = _best_effort_context(doc)
            if pctx is None:
                continue
        else:
            sem, pctx = semantic.check_program(doc)
            report.diagnostics.extend(sem)
        try:
            wf_paths, wf_diags = semantic.workflow_paths(doc)
        except (TypeError, AttributeError):
            continue
        report.diagnostics.extend(wf_diags)
        wf_ids: dict[str, str] = {}
        for wf_path in wf_paths:
            rkey = wf_path.resolve()
            wdoc = docs.get(rkey)
            if wdoc is None:
                wdoc, ydiags = load_yaml_file(wf_path)
                if str(wf_path) not in report.files:
                    report.files.append(str(wf_path))
                    report.kinds[str(wf_path)] = "workflow"
                report.diagnostics.extend(ydiags)
                if wdoc is None:
                    continue
            if rkey in checked_workflows:
                continue
            checked_workflows.add(rkey)
            report.diagnostics.extend(_check_workflow(wdoc, pctx, template_cache, wf_ids))

    for key, doc in docs.items():
        if report.kinds.get(doc.path) == "workflow" and key not in checked_workflows:
            checked_workflows.add(key)
            report.diagnostics.extend(_check_workflow(doc, None, template_cache, {}))
    report.diagnostics.sort(key=lambda d: (d.path, d.line or 0, d.col or 0, d.code))
    return report


def _best_effort_context(doc: YamlDoc) -> semantic.ProgramContext | None:
    """The program's context for its workflows even when the program has schema errors."""
    try:
        return semantic.ProgramContext.from_program(Path(doc.path), doc.data)
    except (TypeError, AttributeError, KeyError, ValueError):
        return None


def _check_workflow(
    doc: YamlDoc, pctx: semantic.ProgramContext | None, cache: dict, ids: dict[str, str]
) -> list[Diagnostic]:
    if _kind(doc) != "workflow":
        return [
            Diagnostic(
                code="Y105",
                path=doc.path,
                line=1,
                col=1,
                message="the program lists this file under `workflows:` but it is not a workflow",
                hint="A workflow file starts with `version: 1` and `workflow:`.",
            )
        ]
    diags = schema.check_schema(doc, "workflow")
    if any(d.is_error for d in diags):
        return diags
    wid = (doc.data.get("workflow") or {}).get("id")
    if isinstance(wid, str) and wid in ids:
        pos = doc.pos(("workflow", "id"))
        diags.append(
            Diagnostic(
                code="R301",
                path=doc.path,
                line=pos.line if pos else None,
                col=pos.col if pos else None,
                message=f"duplicate workflow id '{wid}' (also in {ids[wid]})",
                hint="Each workflow of a program needs its own id.",
            )
        )
    elif isinstance(wid, str):
        ids[wid] = doc.path
    diags.extend(semantic.check_workflow(doc, pctx, cache))
    return diags
