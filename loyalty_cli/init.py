"""`loyalty init DIR`: a working program, a workflow, its templates and sample data.

The files come from `loyalty_cli/starter/` (package data): `program.yaml.in` and
`README.md.in` with `${...}` fields for the answers, the workflow and the templates as
they are. examples/programs/starter/ is what the default answers give (a test keeps the
two the same). Everything is written into a temporary folder next to DIR, checked as
`loyalty validate` would, and only then moved into place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from string import Template

from loyalty_cli.diagnostics import Diagnostic, ExitCode, LoyaltyError

STARTER = Path(__file__).resolve().parent / "starter"
REWARDS = ("discount-20",)  # what the sample redemption requests ask for


@dataclass
class Answers:
    """What `init` asks; the defaults give examples/programs/starter."""

    name: str = "Starter Club"
    id: str = ""  # default: the name in lower case with dashes
    currency: str = "PLN"
    timezone: str = "Europe/Warsaw"
    from_email: str = "club@shop.example"
    sms_sender: str = "SHOP"
    region: str = "PL"  # messaging.default_region; empty for none
    sample_data: bool = True

    def program_id(self) -> str:
        return self.id or slug(self.name)


QUESTIONS = (
    ("name", "Program name"),
    ("id", "Program id (letters, digits and dashes)"),
    ("currency", "Currency (ISO 4217 code)"),
    ("timezone", "Time zone (IANA name)"),
    ("from_email", "Sender of emails"),
    ("sms_sender", "Sender of text messages"),
    ("region", "Country of phone numbers written without a country code (- for none)"),
)


# Letters that NFKD does not split into a plain letter and an accent.
_NO_ACCENT_FORM = str.maketrans(
    {
        "Ł": "L",
        "ł": "l",
        "Ø": "O",
        "ø": "o",
        "Đ": "D",
        "đ": "d",
        "ß": "ss",
        "Æ": "AE",
        "æ": "ae",
        "Œ": "OE",
        "œ": "oe",
        "Þ": "Th",
        "þ": "th",
    }
)


def slug(text: str) -> str:
    """`Fashion Club` -> `fashion-club`, `Café & Co` -> `cafe-co`: an id the program
    format accepts."""
    plain = unicodedata.normalize("NFKD", text.translate(_NO_ACCENT_FORM))
    plain = plain.encode("ascii", "ignore").decode()
    s = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")
    return s or "loyalty-club"


def _scalar(value: str) -> str:
    """A YAML scalar for an answer: as it is when plain, else double-quoted (JSON)."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.@/+-]*", value) and not value.endswith(" "):
        return value
    return json.dumps(value, ensure_ascii=False)


def render(answers: Answers, data: str) -> dict[str, str]:
    """The text of program.yaml and README.md for these answers (`data`: the exports'
    folder as the README's commands name it)."""
    region = answers.region.strip().upper()
    fields = {
        "id": _scalar(answers.program_id()),
        "name": _scalar(answers.name),
        "currency": answers.currency.strip().upper(),
        "timezone": _scalar(answers.timezone.strip()),
        "from_email": _scalar(answers.from_email.strip()),
        "sms_sender": _scalar(answers.sms_sender.strip()),
        "region_line": f"  default_region: {_scalar(region)}\n" if region else "",
        "data": data,
    }
    out = {}
    for name in ("program.yaml", "README.md"):
        text = (STARTER / f"{name}.in").read_text(encoding="utf-8")
        out[name] = Template(text).substitute(
            {**fields, "name": answers.name} if name == "README.md" else fields
        )
    return out


# Where each answer lands in program.yaml, to tell which answer a diagnostic is about.
ANSWER_WHERE = {
    "name": "program.name",
    "id": "program.id",
    "currency": "program.currency",
    "timezone": "program.timezone",
    "from_email": "messaging.from_email",
    "sms_sender": "messaging.sms_sender",
    "region": "messaging.default_region",
}


def answer_problem(key: str, value: str) -> str | None:
    """What is wrong with one answer (the default answers and this one), as the program's
    checks say it, or None when it is fine. Lets the CLI name the option or ask again
    before anything is written."""
    from loyalty_cli.config.validate import validate_paths

    answers = Answers()
    setattr(answers, key, value)
    with tempfile.TemporaryDirectory(prefix="loyalty-init-") as tmp:
        folder = _write_starter(Path(tmp) / "check", answers)
        report = validate_paths([str(folder / "program.yaml")])
    where = ANSWER_WHERE[key]
    for d in report.errors:
        if d.where == where:
            message = d.message.removeprefix(f"{where}: ")
            return f"{message} ({d.hint})" if d.hint else message
    return None


def _write_starter(folder: Path, answers: Answers) -> Path:
    """The starter's files for `answers` in `folder` (which must not exist)."""
    shutil.copytree(STARTER, folder, ignore=shutil.ignore_patterns("*.in", "__pycache__"))
    for name, text in render(answers, "data").items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _target_problem(target: Path) -> str | None:
    """Why `target` cannot become the new program's folder, or None."""
    if target.is_dir():
        return "the folder exists and is not empty" if any(target.iterdir()) else None
    if target.exists() or target.is_symlink():
        return "is a file, not a folder" if target.is_file() else "exists and is not a folder"
    existing = target.parent
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot be made: {str(existing)!r} is a file, not a folder"
    return None


def _target_error(target: Path, problem: str) -> LoyaltyError:
    return LoyaltyError(
        Diagnostic(
            code="D615",
            path=str(target),
            message=problem,
            hint="Pass a new folder (or an empty one): init never overwrites files.",
        ),
        ExitCode.USAGE,
    )


def init(target: Path, answers: Answers, today: dt.date | None = None) -> Path:
    """Write the starter program for `answers` into `target` (which must be empty or new);
    returns the program file's path. Nothing is left behind when the check fails."""
    from loyalty_cli.config.validate import validate_paths

    problem = _target_problem(target)
    if problem:
        raise _target_error(target, problem)
    made = target.parent  # the first of the folders above target that init makes, if any
    while not made.parent.exists() and made.parent != made:
        made = made.parent
    made_new = not made.exists()
    tmp = target.parent / f".{target.name}.init-{os.getpid()}"
    done = False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        _write_starter(tmp, answers)
        report = validate_paths([str(tmp / "program.yaml")])
        if report.errors:  # the files named as they would have been
            raise LoyaltyError(
                [
                    dataclasses.replace(d, path=d.path.replace(str(tmp), str(target)))
                    for d in report.errors
                ],
                ExitCode.INVALID,
            )
        if answers.sample_data:
            from loyalty_cli import sampledata

            # The demo's size, its history ending yesterday.
            yesterday = (today or dt.date.today()) - dt.timedelta(days=1)
            sampledata.generate(
                tmp / "data",
                **sampledata.DEMO,
                start=yesterday - dt.timedelta(days=int(sampledata.DEMO["days"]) - 1),
                currency=answers.currency.strip().upper(),
                reward_ids=REWARDS,
            )
        if target.exists():
            target.rmdir()
        tmp.rename(target)
        done = True
    except OSError as exc:  # a folder that cannot be written to (permissions, /proc, full)
        raise _target_error(
            target, f"cannot be written: {exc.strerror or exc.__class__.__name__}"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if made_new and not done:
            shutil.rmtree(made, ignore_errors=True)
    return target / "program.yaml"
