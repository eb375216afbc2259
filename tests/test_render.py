"""Templates: sandbox, filters, validate checks (T5xx), context, rendering and batches."""

from __future__ import annotations

import hashlib
import json
import os
import random
from datetime import date, datetime
from decimal import Decimal

import pytest

from loyalty_cli.diagnostics import Diagnostic
from loyalty_cli.render import (
    CONTEXT_KEYS,
    RenderError,
    check_template,
    make_environment,
    member_context,
    message_id,
    missing_parts,
    render_message,
    sample_context,
    template_files,
    write_email_batch,
    write_sms_batch,
)
from loyalty_cli.render.sandbox import autoescape_for, render_template

PROGRAM = {
    "version": 1,
    "program": {
        "id": "fashion-club",
        "name": "Fashion Club",
        "currency": "PLN",
        "timezone": "Europe/Warsaw",
        "point_value": 0.02,
    },
    "sources": {
        "customers": {
            "path": "customers.csv",
            "extra": {
                "newsletter_segment": "varchar",
                "visits": "integer",
                "last_basket": "decimal",
                "vip": "boolean",
                "first_visit": "date",
                "last_login": "timestamp",
                "brands": "list",
            },
        }
    },
    "tiers": {
        "basis": "spend",
        "levels": [
            {"id": "bronze", "name": "Bronze", "min": 0},
            {"id": "silver", "name": "Silver", "min": 1000, "multiplier": 1.25},
            {"id": "gold", "name": "Gold", "min": 5000, "multiplier": 1.5},
        ],
    },
    "rewards": [
        {"id": "discount-20", "name": "20 PLN off", "cost": 500, "coupon_pool": "reward-20"},
        {"id": "spa-weekend", "name": "SPA weekend", "cost": 20000, "min_tier": "gold"},
    ],
    "coupons": {
        "pools": [
            {"id": "reward-20", "source": "file", "path": "coupons/reward20.csv"},
            {
                "id": "winback-25",
                "source": "generate",
                "prefix": "WB25-",
                "length": 10,
                "count": 5000,
                "discount": {"percent": 25},
                "valid_days": 30,
            },
        ]
    },
    "messaging": {"from_email": "club@shop.example", "sms_sender": "SHOP", "default_region": "PL"},
}


def write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def email(name, subject="Hi {{ customer.first_name }}", html="<p>Hi</p>", text="Hi"):
    return {f"{name}.subject.j2": subject, f"{name}.html.j2": html, f"{name}.txt.j2": text}


def check(folder, name, channel, **kw):
    kw.setdefault("program", PROGRAM)
    return check_template(
        folder, name, channel, ref_path="workflows/w.yaml", ref_line=9, ref_col=13, **kw
    )


# --------------------------------------------------------------------------- files


def test_template_files_and_missing_parts(tmp_path):
    write(tmp_path, {"winback.subject.j2": "s", "winback.txt.j2": "t"})
    assert template_files(tmp_path, "winback", "email") == {
        "subject": tmp_path / "winback.subject.j2",
        "html": tmp_path / "winback.html.j2",
        "text": tmp_path / "winback.txt.j2",
    }
    assert template_files(tmp_path, "winback", "sms") == {"text": tmp_path / "winback.sms.j2"}
    assert missing_parts(tmp_path, "winback", "email") == ["html"]
    assert missing_parts(tmp_path, "winback", "sms") == ["text"]
    with pytest.raises(ValueError, match="unknown channel"):
        template_files(tmp_path, "winback", "push")


def test_autoescape_only_for_html_parts():
    assert autoescape_for("a.html.j2")
    assert autoescape_for("partials/footer.html.j2")
    assert not autoescape_for("a.txt.j2")
    assert not autoescape_for("a.subject.j2")
    assert not autoescape_for("a.sms.j2")
    assert not autoescape_for("a.html")
    assert not autoescape_for(None)


# --------------------------------------------------------------------------- environment


def test_html_is_escaped_and_text_is_not(tmp_path):
    body = "{{ customer.first_name }}"
    env = make_environment(write(tmp_path, email("m", subject=body, html=body, text=body)))
    ctx = sample_context(PROGRAM)
    ctx["customer"]["first_name"] = '<b>Ann & "Bob"</b>'
    assert render_message(env, "m", "email", ctx) == {
        "subject": '<b>Ann & "Bob"</b>',
        "html": "&lt;b&gt;Ann &amp; &#34;Bob&#34;&lt;/b&gt;",
        "text": '<b>Ann & "Bob"</b>',
    }


def test_undefined_is_an_error_with_its_line(tmp_path):
    write(tmp_path, {"a.txt.j2": "Hello {{ customer.first_name }}\n\n{{ balance }} {{ nope }}\n"})
    env = make_environment(tmp_path)
    with pytest.raises(RenderError) as err:
        render_template(env, "a.txt.j2", sample_context(PROGRAM))
    assert err.value.diagnostic == Diagnostic(
        "T503",
        "undefined template variable: 'nope' is undefined",
        path=os.path.join(str(tmp_path), "a.txt.j2"),
        line=3,
        hint="use the context keys listed in docs/templates.md; guard optional values "
        "with `{% if x is defined %}` or `| default(...)`",
    )


def test_undefined_in_an_included_file_points_at_that_file(tmp_path):
    write(
        tmp_path,
        {
            "a.txt.j2": "top\n{% include 'parts/footer.txt.j2' %}\n",
            "parts/footer.txt.j2": "line 1\nline 2 {{ customer.nickname }}\n",
        },
    )
    with pytest.raises(RenderError) as err:
        render_template(make_environment(tmp_path), "a.txt.j2", sample_context(PROGRAM))
    d = err.value.diagnostic
    assert (d.code, d.path, d.line) == (
        "T503",
        os.path.join(str(tmp_path), "parts", "footer.txt.j2"),
        2,
    )
    assert d.message == "undefined template variable: 'dict object' has no attribute 'nickname'"


def test_none_prints_as_nothing_and_blocks_leave_no_blank_lines(tmp_path):
    write(
        tmp_path,
        {
            "a.txt.j2": "Hi {{ customer.first_name }} {{ customer.last_name }}!\n"
            "{% if balance %}\n  {{ balance }} points\n{% endif %}\nBye\n"
        },
    )
    ctx = sample_context(PROGRAM)
    ctx["customer"]["last_name"] = None
    out = render_template(make_environment(tmp_path), "a.txt.j2", ctx)
    assert out == "Hi Anna !\n  1240 points\nBye"


@pytest.mark.parametrize(
    ("template", "locale", "expected"),
    [
        ("{{ amount | money }}", "pl_PL", "1\u00a0234,50\u00a0zł"),
        ("{{ amount | money }}", "en_US", "PLN1,234.50"),
        ("{{ amount | money }}", "pl-PL", "1\u00a0234,50\u00a0zł"),
        ("{{ amount | money }}", "xx-nonsense", "PLN1,234.50"),  # bad data: default locale
        ("{{ amount | money }}", None, "PLN1,234.50"),
        ("{{ amount | money('EUR') }}", "de_DE", "1.234,50\u00a0€"),
        ("{{ amount | money('EUR', 'en_US') }}", "de_DE", "€1,234.50"),
        ("{{ 20 | money }}", "pl", "20,00\u00a0zł"),
        ("{{ '7.5' | money }}", "en", "PLN7.50"),
        ("{{ none | money }}", "en", ""),
        ("{{ day | date }}", "en_US", "Apr 3, 2026"),
        ("{{ day | date }}", "pl_PL", "3 kwi 2026"),
        ("{{ day | date('long') }}", "en", "April 3, 2026"),
        ("{{ day | date('d MMMM') }}", "pl", "3 kwietnia"),
        ("{{ day | date('full', 'de_DE') }}", "en", "Freitag, 3. April 2026"),
        ("{{ stamp | date }}", "en", "Apr 3, 2026"),
        ("{{ '2026-04-03' | date }}", "en", "Apr 3, 2026"),
        ("{{ none | date }}", "en", ""),
        ("{{ 12345 | points }}", "en_US", "12,345"),
        ("{{ 12345 | points }}", "de_DE", "12.345"),
        ("{{ 12345 | points }}", "pl_PL", "12\u00a0345"),
        ("{{ 999 | points }}", "en", "999"),
        ("{{ -1500 | points }}", "en", "-1,500"),
        ("{{ {'percent': 25, 'amount': none} | discount }}", "en", "25%"),
        ("{{ {'percent': none, 'amount': amount} | discount }}", "pl", "1\u00a0234,50\u00a0zł"),
        ("{{ none | discount }}", "en", ""),
    ],
)
def test_filters(tmp_path, template, locale, expected):
    write(tmp_path, {"f.txt.j2": template})
    ctx = sample_context(PROGRAM)
    ctx["customer"]["locale"] = locale
    ctx.update(
        amount=Decimal("1234.5"),
        day=date(2026, 4, 3),
        stamp=datetime(2026, 4, 3, 23, 59),
        none=None,
    )
    assert render_template(make_environment(tmp_path), "f.txt.j2", ctx) == expected


def test_default_locale_of_the_environment(tmp_path):
    write(tmp_path, {"f.txt.j2": "{{ 12345 | points }} {{ 5 | money }}"})
    ctx = sample_context(PROGRAM)
    ctx["customer"]["locale"] = ""
    env = make_environment(tmp_path, default_locale="de_DE")
    assert render_template(env, "f.txt.j2", ctx) == "12.345 5,00\u00a0PLN"


def test_a_bad_locale_written_in_a_template_is_an_error(tmp_path):
    write(tmp_path, {"f.txt.j2": "x\n{{ balance | points('klingon') }}"})
    with pytest.raises(RenderError) as err:
        render_template(make_environment(tmp_path), "f.txt.j2", sample_context(PROGRAM))
    assert (err.value.diagnostic.code, err.value.diagnostic.line) == ("T506", 2)


def test_lipsum_is_not_available(tmp_path):
    env = make_environment(tmp_path)
    assert sorted(env.globals) == ["cycler", "dict", "joiner", "namespace", "range"]


# --------------------------------------------------------------------------- check_template


def test_ok_email_template_has_no_diagnostics(tmp_path):
    write(
        tmp_path,
        email(
            "winback",
            subject="{{ customer.first_name }}, we miss you",
            html="<p>{{ coupon.code }}: {{ coupon.discount | discount }} off until "
            "{{ coupon.valid_until | date }}</p>\n"
            "{% if next_tier %}<p>{{ points_to_next_tier | money }} to {{ next_tier.name }}"
            "</p>{% endif %}",
            text="{% if customer.nickname is defined %}{{ customer.nickname }}{% endif %}"
            "{{ customer.salutation | default('Hello') }} {{ customer.newsletter_segment }}",
        ),
    )
    assert check(tmp_path, "winback", "email") == []


def test_missing_files_are_reported_where_the_template_is_named(tmp_path):
    write(tmp_path, {"winback.subject.j2": "Hi"})
    assert check(tmp_path, "winback", "email") == [
        Diagnostic(
            "T501",
            "template 'winback' for email is missing winback.html.j2, winback.txt.j2 in "
            f"{tmp_path}",
            path="workflows/w.yaml",
            line=9,
            col=13,
            hint="a template for email needs winback.subject.j2, winback.html.j2, winback.txt.j2",
        )
    ]
    assert [d.code for d in check(tmp_path, "winback", "sms")] == ["T501"]


@pytest.mark.parametrize("name", ["../secret", "a/../../b", "/etc/passwd", "a\\b", "", "a//b"])
def test_template_names_may_not_leave_the_folder(tmp_path, name):
    (diag,) = check(tmp_path, name, "sms")
    assert (diag.code, diag.path, diag.line, diag.col) == ("R306", "workflows/w.yaml", 9, 13)


def test_templates_in_subfolders(tmp_path):
    write(tmp_path, {"sms/winback.sms.j2": "Hi {{ customer.first_name }}"})
    (info,) = check(tmp_path, "sms/winback", "sms")
    assert info.code == "T505"
    assert info.path == str(tmp_path / "sms" / "winback.sms.j2")


def test_syntax_error_points_at_the_template_line(tmp_path):
    write(tmp_path, {"w.sms.j2": "Hi\n{% if balance %}\n{{ balance }}\n"})
    assert check(tmp_path, "w", "sms") == [
        Diagnostic(
            "T502",
            "template syntax error: Unexpected end of template. Jinja was looking for the "
            "following tags: 'elif' or 'else' or 'endif'. The innermost block that needs to be "
            "closed is 'if'.",
            path=os.path.join(str(tmp_path), "w.sms.j2"),
            # the `{% if` that is never closed: line 2, column 1
            line=2,
            col=1,
            hint="see https://jinja.palletsprojects.com/templates/ for the syntax",
        )
    ]


def test_unknown_filter_is_a_syntax_error(tmp_path):
    write(tmp_path, email("m", text="a\nb\n{{ balance | pionts }}"))
    (diag,) = check(tmp_path, "m", "email")
    assert (diag.code, diag.line, diag.message) == (
        "T502",
        3,
        "template syntax error: No filter named 'pionts'.",
    )


def test_undefined_variables_also_in_branches_the_sample_does_not_take(tmp_path):
    write(
        tmp_path,
        {
            "w.sms.j2": (
                "Hi {{ customer.first_name }}\n"
                "{% if tier.id == 'gold' %}\n"
                "  {{ custmer.first_name }}\n"
                "  {{ customer.frist_name }} {{ reward['nmae'] }}\n"
                "{% endif %}\n"
                "{% for t in [tier] %}{{ t.whatever }}{% endfor %}\n"
            )
        },
    )
    path = os.path.join(str(tmp_path), "w.sms.j2")
    diags = check(tmp_path, "w", "sms")
    assert diags[:3] == [
        Diagnostic(
            "T503",
            "undefined template variable: 'custmer' is not in the template context",
            path=path,
            line=3,
            col=6,  # "  {{ custmer": 2 spaces, "{{ ", then the name
            hint="did you mean 'customer'?",
        ),
        Diagnostic(
            "T503",
            "undefined template variable: customer has no key 'frist_name'",
            path=path,
            line=4,
            col=15,  # "  {{ customer." is 14 characters
            hint="did you mean 'first_name'?",
        ),
        Diagnostic(
            "T503",
            "undefined template variable: reward has no key 'nmae'",
            path=path,
            line=4,
            col=40,  # "  {{ customer.frist_name }} {{ reward['" is 39 characters
            hint="did you mean 'name'?",
        ),
    ]
    # the loop variable is only known when rendering: found there, on its line
    assert (diags[3].code, diags[3].line) == ("T503", 6)
    assert (
        diags[3].message == "undefined template variable: 'dict object' has no attribute 'whatever'"
    )
    assert len(diags) == 4  # no T505: the sample render failed


def test_unknown_variable_in_the_rendered_path_is_reported_once(tmp_path):
    write(tmp_path, {"w.sms.j2": "Hi\n{{ nope }}\n"})
    diags = check(tmp_path, "w", "sms")
    assert [(d.code, d.line) for d in diags] == [("T503", 2)]


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        (
            "x\n{{ ''.__class__.__mro__ }}",
            2,
            "unsafe template operation: attribute '__class__' starts with '_'",
        ),
        (
            "x\n\n{{ cycler.__init__.__globals__ }}",
            3,
            "unsafe template operation: attribute '__init__' starts with '_'",
        ),
        (
            "{{ self._TemplateReference__context }}",
            1,
            "unsafe template operation: attribute '_TemplateReference__context' starts with '_'",
        ),
        (
            "{% if tier.id == 'none' %}\n{{ customer._secret }}\n{% endif %}",
            2,
            "unsafe template operation: attribute '_secret' starts with '_'",
        ),
        (
            "x\n{{ customer['__class__'] }}",
            2,
            "unsafe template operation: access to attribute '__class__' of 'dict' object "
            "is unsafe.",
        ),
        (
            "{% set l = [] %}\n{{ l.append(1) }}",
            2,
            "unsafe template operation: access to attribute 'append' of 'list' object is unsafe.",
        ),
        (
            "x\n{{ customer.update({'email': 'x'}) }}",
            2,
            "unsafe template operation: access to attribute 'update' of 'dict' object is unsafe.",
        ),
        (
            "{{ '{0.__class__}'.format(balance) }}",
            1,
            "unsafe template operation: access to attribute '__class__' of 'int' object is unsafe.",
        ),
        (
            "x\n{% for i in range(200000) %}.{% endfor %}",
            2,
            "unsafe template operation: range() of more than 100,000 items",
        ),
        # Too many items for len() of a range (past 2**63): still the limit, not a T506.
        (
            "{% for i in range(10000000000000000000) %}.{% endfor %}",
            1,
            "unsafe template operation: range() of more than 100,000 items",
        ),
    ],
)
def test_unsafe_operations(tmp_path, source, line, message):
    write(tmp_path, {"w.sms.j2": source})
    diags = [d for d in check(tmp_path, "w", "sms") if d.code != "T505"]
    assert [(d.code, d.line, d.message) for d in diags] == [("T504", line, message)]
    assert diags[0].path == os.path.join(str(tmp_path), "w.sms.j2")


def test_other_render_errors(tmp_path):
    write(tmp_path, {"w.sms.j2": "Hi\n{{ balance / 0 }}"})
    (diag,) = check(tmp_path, "w", "sms")
    assert (diag.code, diag.line, diag.message) == (
        "T506",
        2,
        "template render error: ZeroDivisionError: division by zero",
    )


def test_sms_encoding_and_segments_are_reported(tmp_path):
    write(
        tmp_path,
        {
            "w.sms.j2": "{{ program.name }}: {{ customer.first_name }}, "
            "you have {{ balance | points }} points.\n"
        },
    )
    # "Fashion Club: Anna, you have 1 240 points." - the no-break space of pl_PL is sent
    # as a plain space, so the text stays GSM-7.
    assert check(tmp_path, "w", "sms") == [
        Diagnostic(
            "T505",
            "SMS 'w' for the sample member: GSM-7, 1 segment, 42 septets",
            path=str(tmp_path / "w.sms.j2"),
            severity="info",
        )
    ]


def test_ucs2_and_long_sms_are_warned_about(tmp_path):
    write(tmp_path, {"w.sms.j2": "Cześć {{ customer.first_name }}! " + "ż" * 200 + " 😀 ł"})
    (diag,) = check(tmp_path, "w", "sms")
    # "Cześć " 6 + "Anna" 4 + "! " 2 + 200 + " " 1 + emoji 2 + " " 1 + "ł" 1 = 217 units,
    # in segments of 67: 67 + 67 + 67 + 16 -> 4
    assert diag == Diagnostic(
        "T505",
        "SMS 'w' for the sample member: UCS-2, 4 segments, 217 UTF-16 units "
        "(UCS-2 because of 'ś' 'ć' 'ż' '😀' 'ł'); more than 3 segments",
        path=str(tmp_path / "w.sms.j2"),
        severity="warning",
        hint="shorten the text or use only GSM-7 characters "
        "(a UCS-2 segment holds 70 characters, not 160)",
    )
    assert diag.extra == {"encoding": "UCS-2", "segments": 4, "units": 217}
    assert check(tmp_path, "w", "sms", max_sms_segments=4)[0].severity == "info"


def test_empty_sms_is_warned_about(tmp_path):
    write(tmp_path, {"w.sms.j2": "{% if balance > 1000000 %}rich{% endif %}\n"})
    (diag,) = check(tmp_path, "w", "sms")
    assert (diag.code, diag.severity, diag.message) == (
        "T505",
        "warning",
        "SMS 'w' renders empty for the sample member",
    )


def test_failure_only_for_top_tier_members_is_a_warning(tmp_path):
    write(
        tmp_path, email("m", text="Hi\n{{ points_to_next_tier | money }} to {{ next_tier.name }}")
    )
    (diag,) = check(tmp_path, "m", "email")
    assert diag == Diagnostic(
        "T503",
        "undefined template variable: 'None' has no attribute 'name' "
        "(for a member on the top tier: next_tier is empty)",
        path=os.path.join(str(tmp_path), "m.txt.j2"),
        line=2,
        col=51,  # "{{ points_to_next_tier | money }} to {{ next_tier." is 50 characters
        severity="warning",
        hint="guard it with `{% if next_tier %}...{% endif %}`",
    )


def test_includes_are_checked(tmp_path):
    write(
        tmp_path,
        {
            "w.sms.j2": "a\n{% include 'missing.sms.j2' %}\n{% include 'opt.j2' ignore missing %}\n"
            "{% if false %}{% include 'bad.j2' %}{% endif %}\n",
            "bad.j2": "ok\n{{ x.__class__ }}\n{% if %}",
        },
    )
    diags = check(tmp_path, "w", "sms")
    assert [(d.code, os.path.basename(d.path), d.line) for d in diags] == [
        ("T501", "w.sms.j2", 2),
        ("T502", "bad.j2", 3),
    ]
    assert diags[0].message == "template 'missing.sms.j2' not found in the templates folder"


def test_includes_cannot_leave_the_folder(tmp_path):
    outside = write(tmp_path / "outside", {"secret.j2": "secret"})
    folder = write(tmp_path / "templates", {"w.sms.j2": "x\n{% include 'link.j2' %}"})
    os.symlink(outside / "secret.j2", folder / "link.j2")
    with pytest.raises(RenderError) as err:
        render_template(make_environment(folder), "w.sms.j2", sample_context(PROGRAM))
    assert (err.value.diagnostic.code, err.value.diagnostic.line) == ("T501", 2)
    assert [d.code for d in check(folder, "w", "sms")] == ["T501"]


def test_check_with_a_given_context(tmp_path):
    write(tmp_path, {"w.sms.j2": "{{ coupon.code }}"})
    ctx = sample_context(PROGRAM)
    ctx["coupon"] = None  # the step assigns no coupon
    (diag,) = check(tmp_path, "w", "sms", sample_context=ctx)
    assert (diag.code, diag.line) == ("T503", 1)


# --------------------------------------------------------------------------- context


def test_sample_context_of_a_program():
    ctx = sample_context(PROGRAM)
    assert tuple(ctx) == CONTEXT_KEYS
    assert ctx == {
        "customer": {
            "customer_id": "C-10042",
            "email": "anna.smith@example.com",
            "phone": "+48512345678",
            "first_name": "Anna",
            "last_name": "Smith",
            "birth_date": date(1990, 5, 17),
            "joined_at": datetime(2024, 2, 3, 10, 15),
            "locale": "pl_PL",
            "newsletter_segment": "sample",
            "visits": 3,
            "last_basket": Decimal("49.90"),
            "vip": True,
            "first_visit": date(2025, 6, 1),
            "last_login": datetime(2025, 6, 1, 12, 0),
            "brands": ["sample"],
        },
        "program": {
            "id": "fashion-club",
            "name": "Fashion Club",
            "currency": "PLN",
            "point_value": Decimal("0.02"),
        },
        "balance": 1240,
        "pending": 150,
        "tier": {"id": "bronze", "name": "Bronze"},
        "next_tier": {"id": "silver", "name": "Silver"},
        "points_to_next_tier": Decimal("300.00"),  # 30% of the 1000 between the levels
        "expiring_points": 200,
        "expiring_on": date(2026, 4, 3),
        "coupon": {
            "code": "WB25-7KQ3MXP9RT",
            "valid_until": date(2026, 4, 13),
            "discount": {"percent": 25, "amount": None},
        },
        "reward": {"id": "discount-20", "name": "20 PLN off", "cost": 500},
    }


def test_sample_context_without_a_program():
    ctx = sample_context(None)
    assert tuple(ctx) == CONTEXT_KEYS
    assert ctx["program"] == {
        "id": "sample-program",
        "name": "Sample Club",
        "currency": "EUR",
        "point_value": Decimal("0.01"),
    }
    assert ctx["customer"]["locale"] == "en_US"
    assert ctx["customer"]["phone"] == "+12015550123"
    assert ctx["tier"] == {"id": "bronze", "name": "Bronze"}
    assert ctx["next_tier"] == {"id": "silver", "name": "Silver"}
    assert ctx["coupon"]["discount"] == {"percent": 10, "amount": None}
    assert ctx["reward"] == {"id": "discount-20", "name": "20 off", "cost": 500}


def test_sample_context_follows_what_the_program_has():
    program = {
        "program": {"id": "p", "currency": "EUR"},
        "tiers": {
            "basis": "points",
            "levels": [{"id": "member", "min": 0}, {"id": "vip", "name": "VIP", "min": 2500}],
        },
    }
    ctx = sample_context(program)
    assert ctx["program"]["name"] == "p"
    assert ctx["tier"] == {"id": "member", "name": "member"}
    assert ctx["points_to_next_tier"] == 750
    assert ctx["reward"] is None
    single = sample_context(
        {"program": {"id": "p"}, "tiers": {"levels": [{"id": "all", "min": 0}]}}
    )
    assert (single["next_tier"], single["points_to_next_tier"]) == (None, None)
    assert sample_context({"program": {"id": "p"}})["tier"] is None


def test_member_context_from_an_engine_row():
    row = {
        "customer_id": "42",
        "email": "ola@example.com",
        "phone": "+48601234567",
        "first_name": "Ola",
        "last_name": "",
        "locale": "pl-PL",
        "birth_date": "1991-02-28",
        "joined_at": "2025-01-05T09:30:00",
        "balance": 900,
        "pending": "40",
        "tier_id": "silver",
        "tier_name": None,
        "next_tier_id": "gold",
        "next_tier_name": "Gold",
        "points_to_next_tier": "1234.50",
        "expiring_points": 120,
        "expiring_on": date(2026, 5, 31),
        "coupon_code": "WB25-ABCDEFGHJK",
        "coupon_valid_until": "2026-06-30",
        "coupon_discount": "25%",
        "reward_id": "spa-weekend",
        "reward_name": None,
        "reward_cost": None,
        "customer.newsletter_segment": "weekly",
        "customer.vip": False,
        "customer.unknown": "ignored",
    }
    ctx = member_context(row, PROGRAM)
    assert tuple(ctx) == CONTEXT_KEYS
    assert ctx == {
        "customer": {
            "customer_id": "42",
            "email": "ola@example.com",
            "phone": "+48601234567",
            "first_name": "Ola",
            "last_name": None,
            "birth_date": date(1991, 2, 28),
            "joined_at": datetime(2025, 1, 5, 9, 30),
            "locale": "pl-PL",
            "newsletter_segment": "weekly",
            "visits": None,
            "last_basket": None,
            "vip": False,
            "first_visit": None,
            "last_login": None,
            "brands": None,
        },
        "program": {
            "id": "fashion-club",
            "name": "Fashion Club",
            "currency": "PLN",
            "point_value": Decimal("0.02"),
        },
        "balance": 900,
        "pending": 40,
        "tier": {"id": "silver", "name": "Silver"},
        "next_tier": {"id": "gold", "name": "Gold"},
        "points_to_next_tier": Decimal("1234.50"),
        "expiring_points": 120,
        "expiring_on": date(2026, 5, 31),
        "coupon": {
            "code": "WB25-ABCDEFGHJK",
            "valid_until": date(2026, 6, 30),
            "discount": {"percent": 25, "amount": None},
        },
        "reward": {"id": "spa-weekend", "name": "SPA weekend", "cost": 20000},
    }


def test_member_context_of_a_top_tier_member_without_extras():
    ctx = member_context(
        {
            "customer_id": "7",
            "tier_id": "gold",
            "points_to_next_tier": 0,
            "coupon_code": "X1",
            "coupon_discount": "20.00",
        },
        PROGRAM,
    )
    assert ctx["next_tier"] is None
    assert ctx["points_to_next_tier"] is None
    assert (ctx["balance"], ctx["pending"], ctx["expiring_points"]) == (0, 0, 0)
    assert ctx["expiring_on"] is None
    assert ctx["coupon"] == {
        "code": "X1",
        "valid_until": None,
        "discount": {"percent": None, "amount": Decimal("20.00")},
    }
    assert ctx["reward"] is None
    points = member_context(
        {"customer_id": "7", "next_tier_id": "gold", "points_to_next_tier": Decimal("310")},
        {"tiers": {"basis": "points", "levels": []}},
    )
    assert points["points_to_next_tier"] == 310
    assert isinstance(points["points_to_next_tier"], int)


# --------------------------------------------------------------------------- messages


def test_message_id_is_the_documented_hash():
    expected = hashlib.sha256(b'["winback-gold","first-email","C-1","2026-03-14"]').hexdigest()[:20]
    assert message_id("winback-gold", "first-email", "C-1", "2026-03-14") == expected
    assert message_id("winback-gold", "first-email", "C-1", date(2026, 3, 14)) == expected
    assert len(expected) == 20
    # no collision by moving text between the parts
    assert message_id("a", "bc", "d", "e") != message_id("ab", "c", "d", "e")
    assert (
        message_id("w", "s", "Zoë", 1)
        == hashlib.sha256('["w","s","Zoë","1"]'.encode()).hexdigest()[:20]
    )


def test_render_message_parts(tmp_path):
    write(
        tmp_path,
        {
            **email(
                "welcome",
                subject="Welcome,\n  {{ customer.first_name }}!\n",
                html="<h1>{{ program.name }}</h1>\n",
                text="You have {{ balance | points }} points.\n",
            ),
            "welcome.sms.j2": "\n  {{ program.name }}: {{ balance | points }} pts "
            "for {{ customer.first_name }}  \n",
        },
    )
    env = make_environment(tmp_path)
    ctx = sample_context(PROGRAM)
    assert render_message(env, "welcome", "email", ctx) == {
        "subject": "Welcome, Anna!",
        "html": "<h1>Fashion Club</h1>",
        "text": "You have 1\u00a0240 points.",
    }
    assert render_message(env, "welcome", "sms", ctx) == {
        "text": "Fashion Club: 1 240 pts for Anna",
    }
    with pytest.raises(RenderError):
        render_message(env, "nope", "sms", ctx)


def test_email_batch_is_sorted_and_exact(tmp_path):
    messages = [
        {
            "customer_id": "10",
            "message_id": "bb",
            "to": "b@x.example",
            "from": "club@shop.example",
            "subject": "Cześć",
            "html": "<p>a\u2028b</p>",
            "text": 'line\nnext "q"',
        },
        {
            "customer_id": "2",
            "message_id": "aa",
            "to": "a@x.example",
            "from": "club@shop.example",
            "subject": "S",
            "html": "<p>h</p>",
            "text": "t",
            "ignored": "extra key",
        },
        {
            "customer_id": "10",
            "message_id": "ab",
            "to": "b@x.example",
            "from": "club@shop.example",
            "subject": "S2",
            "html": "",
            "text": "",
        },
    ]
    path = tmp_path / "messages" / "winback" / "first-email.email.jsonl"
    assert write_email_batch(path, messages) == 3
    expected = (
        '{"customer_id":"10","message_id":"ab","to":"b@x.example","from":"club@shop.example",'
        '"subject":"S2","html":"","text":""}\n'
        '{"customer_id":"10","message_id":"bb","to":"b@x.example","from":"club@shop.example",'
        '"subject":"Cześć","html":"<p>a\\u2028b</p>","text":"line\\nnext \\"q\\""}\n'
        '{"customer_id":"2","message_id":"aa","to":"a@x.example","from":"club@shop.example",'
        '"subject":"S","html":"<p>h</p>","text":"t"}\n'
    )
    data = path.read_bytes()
    assert data == expected.encode("utf-8")
    assert len(data.decode("utf-8").splitlines()) == 3
    assert [json.loads(line)["html"] for line in data.decode().splitlines()][1] == "<p>a\u2028b</p>"
    shuffled = messages[:]
    random.Random(7).shuffle(shuffled)
    other = tmp_path / "again.jsonl"
    write_email_batch(other, shuffled)
    assert other.read_bytes() == data
    write_email_batch(other, [])
    assert other.read_bytes() == b""
    with pytest.raises(ValueError, match="lacks"):
        write_email_batch(other, [{"customer_id": "1"}])


def test_sms_batch_is_sorted_and_exact(tmp_path):
    messages = [
        {
            "customer_id": "b",
            "message_id": "m2",
            "to": "+48601234567",
            "sender": "SHOP",
            "text": "Cześć Ola, 1 240 pkt",
        },
        {
            "customer_id": "=a",
            "message_id": "m1",
            "to": "+12015550123",
            "sender": "SHOP",
            "text": '-20% for you, Anna: code WB25-X, "today" only €',
        },
        {
            "customer_id": "b",
            "message_id": "m1",
            "to": "+48601234567",
            "sender": "SHOP",
            "text": "a" * 161,
        },
    ]
    path = tmp_path / "step.sms.csv"
    assert write_sms_batch(path, messages) == 3
    assert (
        path.read_bytes()
        == (
            "customer_id,message_id,to,sender,text,encoding,segments\n"
            '\'=a,m1,+12015550123,SHOP,"-20% for you, Anna: code WB25-X, ""today"" only €",'
            "GSM-7,1\n"
            f"b,m1,+48601234567,SHOP,{'a' * 161},GSM-7,2\n"
            'b,m2,+48601234567,SHOP,"Cześć Ola, 1 240 pkt",UCS-2,1\n'
        ).encode()
    )
    again = tmp_path / "again.csv"
    write_sms_batch(again, list(reversed(messages)))
    assert again.read_bytes() == path.read_bytes()
    with pytest.raises(ValueError, match="E.164"):
        write_sms_batch(again, [{**messages[0], "to": "601 234 567"}])


def test_names_and_channels_the_schema_reports_give_no_diagnostics(tmp_path):
    assert check_template(tmp_path, None, "sms") == []
    assert check_template(tmp_path, "w", None) == []
    assert check_template(tmp_path, "w", "push") == []


def test_a_file_that_is_not_utf8_is_reported(tmp_path):
    (tmp_path / "w.sms.j2").write_bytes("Cześć".encode("cp1250"))
    (diag,) = check(tmp_path, "w", "sms")
    assert (diag.code, diag.message, diag.path) == (
        "T502",
        "template file is not valid UTF-8",
        os.path.join(str(tmp_path), "w.sms.j2"),
    )


def test_repetition_and_powers_cannot_exhaust_memory(tmp_path):
    write(tmp_path, {"w.sms.j2": "Hi {{ 'a' * 10**10 }}\n"})
    (diag,) = [d for d in check(tmp_path, "w", "sms") if d.code != "T505"]
    assert (diag.code, diag.message, diag.hint) == (
        "T504",
        "unsafe template operation: repeating a sequence to more than 100,000 items",
        "no message needs this much; see the limits in docs/templates.md",
    )
    write(tmp_path, {"x.sms.j2": "Hi {{ 'ab' * 3 }} {{ 2 ** 10 }}\n"})
    env = make_environment(tmp_path)
    assert render_template(env, "x.sms.j2", {}) == "Hi ababab 1024"


def test_powers_up_to_the_limit_are_allowed(tmp_path):
    source = "{{ 10**7 }} {{ 2**30 }} {{ 10**12 }} {{ (-10)**3 }} {{ 2**0.5 }}"
    write(tmp_path, {"x.sms.j2": source})
    env = make_environment(tmp_path)
    assert render_template(env, "x.sms.j2", {}) == (
        "10000000 1073741824 1000000000000 -1000 1.4142135623730951"
    )
    for source in ("{{ 10**12 + 0 }}{{ 2**40 }}", "{{ 10**13 }}", "{{ 0.1**-13 }}"):
        write(tmp_path, {"y.sms.j2": source})
        with pytest.raises(RenderError) as err:
            render_template(env, "y.sms.j2", {})
        assert err.value.diagnostic.message == (
            "unsafe template operation: a power above 1,000,000,000,000"
        )


def test_a_byte_order_mark_is_not_part_of_the_message(tmp_path):
    (tmp_path / "w.sms.j2").write_bytes(b"\xef\xbb\xbfHi {{ customer.first_name }}\n")
    env = make_environment(tmp_path)
    assert render_message(env, "w", "sms", sample_context(PROGRAM)) == {"text": "Hi Anna"}
    assert check(tmp_path, "w", "sms") == [
        Diagnostic(
            "T505",
            "SMS 'w' for the sample member: GSM-7, 1 segment, 7 septets",
            path=str(tmp_path / "w.sms.j2"),
            severity="info",
        )
    ]
    (tmp_path / "x.sms.j2").write_bytes(b"\xef\xbb\xbf{{ nope }}\n")
    (diag,) = check(tmp_path, "x", "sms")
    assert (diag.code, diag.line, diag.col) == ("T503", 1, 4)  # at `nope`


@pytest.mark.parametrize("column", ["items", "values", "keys", "get", "update", "copy", "pop"])
def test_a_customer_column_named_like_a_dict_method_prints_its_value(tmp_path, column):
    program = {**PROGRAM, "sources": {"customers": {"extra": {column: "varchar"}}}}
    write(tmp_path, {"w.sms.j2": f"{{{{ customer.{column} }}}}/{{{{ customer['{column}'] }}}}"})
    ctx = member_context({"customer_id": "1", f"customer.{column}": "shoes"}, program)
    assert render_template(make_environment(tmp_path), "w.sms.j2", ctx) == "shoes/shoes"
    assert [d.message for d in check(tmp_path, "w", "sms", program=program)] == [
        "SMS 'w' for the sample member: GSM-7, 1 segment, 13 septets"
    ]


def test_dict_methods_still_work_and_stay_guarded(tmp_path):
    write(
        tmp_path,
        {
            "a.sms.j2": "{{ coupon.discount.items() | list | length }} {{ tier.get('id') }}",
            "b.sms.j2": "{{ customer.update({'email': 'x'}) }}",
            "c.sms.j2": "{{ customer.__class__ }}",
        },
    )
    env = make_environment(tmp_path)
    ctx = sample_context(PROGRAM)
    ctx["customer"]["__class__"] = "data"
    assert render_template(env, "a.sms.j2", ctx) == "2 bronze"
    for name, attribute in (("b.sms.j2", "update"), ("c.sms.j2", "__class__")):
        with pytest.raises(RenderError) as err:
            render_template(env, name, ctx)
        assert err.value.diagnostic.message == (
            f"unsafe template operation: access to attribute {attribute!r} of 'dict' object "
            "is unsafe."
        )


def test_a_message_that_renders_empty_for_a_member_is_an_error(tmp_path):
    write(
        tmp_path,
        {
            **email("m", subject="{{ customer.first_name }}", html="<p>x</p>", text="x"),
            "m.sms.j2": "  {{ customer.first_name }}\n",
            **email("b", subject="Hi", html="{% if coupon %}<p>x</p>{% endif %}\n", text="x"),
        },
    )
    env = make_environment(tmp_path)
    ctx = sample_context(PROGRAM)
    assert render_message(env, "m", "sms", ctx) == {"text": "Anna"}
    ctx["customer"]["first_name"] = None
    hint = (
        "an empty message is not sent; give a fallback "
        '(`{{ customer.first_name or "there" }}`) or keep text outside the `{% if %}`'
    )
    with pytest.raises(RenderError) as err:
        render_message(env, "m", "sms", ctx)
    assert err.value.diagnostic == Diagnostic(
        "T505", "SMS 'm' renders empty", path=str(tmp_path / "m.sms.j2"), hint=hint
    )
    with pytest.raises(RenderError) as err:
        render_message(env, "m", "email", ctx)
    assert err.value.diagnostic == Diagnostic(
        "T506",
        "the subject of email 'm' renders empty",
        path=str(tmp_path / "m.subject.j2"),
        hint=hint,
    )
    ctx["coupon"] = None
    with pytest.raises(RenderError) as err:
        render_message(env, "b", "email", ctx)
    assert err.value.diagnostic.message == "the html of email 'b' renders empty"
    # validate warns when the sample member gets an empty part
    assert check(tmp_path, "b", "email", sample_context=ctx) == [
        Diagnostic(
            "T506",
            "the html of email 'b' renders empty for the sample member",
            path=str(tmp_path / "b.html.j2"),
            severity="warning",
            hint=hint,
        )
    ]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ customer.joined_at | date('yyyy-MM-dd HH:mm') }}", "2024-02-03 10:15"),
        ("{{ customer.joined_at | date('d MMMM, h:mm a') }}", "3 February, 10:15 AM"),
        ("{{ customer.joined_at | date }}", "Feb 3, 2024"),
        ("{{ customer.joined_at | date('short') }}", "2/3/24"),
        ("{{ '2026-04-03 23:59' | date('d.MM HH:mm') }}", "3.04 23:59"),
        ("{{ customer.birth_date | date('d MMMM yyyy') }}", "17 May 1990"),
    ],
)
def test_date_patterns_show_the_time_of_a_timestamp(tmp_path, template, expected):
    write(tmp_path, {"f.txt.j2": template})
    ctx = sample_context(PROGRAM)
    ctx["customer"]["locale"] = "en_US"
    assert render_template(make_environment(tmp_path), "f.txt.j2", ctx) == expected


def test_a_time_of_a_date_is_a_clear_error(tmp_path):
    write(tmp_path, {"w.sms.j2": "Hi\n{{ expiring_on | date('yyyy-MM-dd HH:mm') }}"})
    (diag,) = [d for d in check(tmp_path, "w", "sms") if d.code != "T505"]
    assert (diag.code, diag.line, diag.message) == (
        "T506",
        2,
        "template render error: date: the pattern 'yyyy-MM-dd HH:mm' asks for a time of day "
        "('HH', 'mm') but 2026-04-03 is a date; only timestamps such as customer.joined_at "
        "have one",
    )


def test_joined_at_is_a_timestamp_in_both_contexts():
    assert sample_context(PROGRAM)["customer"]["joined_at"] == datetime(2024, 2, 3, 10, 15)
    row = {"customer_id": "1", "joined_at": datetime(2026, 3, 2, 11, 0)}
    assert member_context(row, PROGRAM)["customer"]["joined_at"] == datetime(2026, 3, 2, 11, 0)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ customer.first_name | upper }}", ""),
        ("{{ customer.first_name | title }}/{{ customer.first_name | string }}", "/"),
        ("{{ customer.first_name | trim | capitalize | replace('a', 'b') }}", ""),
        ("{{ customer.first_name | truncate(5) }}{{ customer.first_name | center(3) }}", "   "),
        ("{{ customer.first_name | length }}", "0"),
        ("{{ customer.first_name | default('there') }}", "there"),
        ("{{ customer.first_name | d('there', true) }}", "there"),
        ("{{ customer.nickname | default('there') }}", "there"),
        ("{{ 0 | default(5) }}/{{ '' | default('e', true) }}", "0/e"),
        ("{{ [customer.last_name, customer.first_name, 'B'] | join(' ') }}", "Smith  B"),
        ("{{ [customer.first_name, customer.last_name] | select | join(' ') }}", "Smith"),
        ("{{ 'Hi ' ~ customer.first_name ~ '!' }}", "Hi !"),
        ("{% if customer.first_name %}yes{% else %}no{% endif %}", "no"),
        ("{{ customer.first_name is none }}/{{ customer.last_name | upper }}", "True/SMITH"),
    ],
)
def test_a_missing_value_is_empty_text_for_text_filters_and_tilde(tmp_path, template, expected):
    write(tmp_path, {"f.txt.j2": template})
    ctx = sample_context(PROGRAM)
    ctx["customer"]["first_name"] = None
    assert render_template(make_environment(tmp_path), "f.txt.j2", ctx) == expected


def test_a_missing_value_is_empty_in_html_too(tmp_path):
    write(tmp_path, {"f.html.j2": "{{ '<b>' ~ n ~ a }}|{{ n | e }}|{{ n | safe }}"})
    out = render_template(make_environment(tmp_path), "f.html.j2", {"n": None, "a": "A&B"})
    assert out == "&lt;b&gt;A&amp;B||"


LIMIT_HINT = "no message needs this much; see the limits in docs/templates.md"
WIDTH_2000 = "a width or precision of 2,000 (at most 1,000)"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}x",
            "more than 100,000 loop iterations and calls in one render",
        ),
        (
            "{% for i in 'x' * 99999 %}{% for j in 'x' * 99999 %}{% endfor %}{% endfor %}",
            "more than 100,000 loop iterations and calls in one render",
        ),
        (
            "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
            "{{ f(40) }}",
            "more than 100,000 loop iterations and calls in one render",
        ),
        ("{{ 'x' | center(1999999999) }}", "a width or precision of 1,999,999,999 (at most 1,000)"),
        ("{{ 'x' | indent(5000) }}", "a width or precision of 5,000 (at most 1,000)"),
        ("{{ '%2000s' | format('x') }}", WIDTH_2000),
        ("{{ '%*s' | format(2000, 'x') }}", WIDTH_2000),
        ("{{ '%.2000f' % 1.5 }}", WIDTH_2000),
        ("{{ '{:>2000}'.format('x') }}", WIDTH_2000),
        ("{{ '{:>{}}'.format('x', 2000) }}", WIDTH_2000),
        (
            "{{ 'x'.ljust(2000) }}{{ 'x'.zfill(2000) }}",
            "a width or precision of 2,000 (at most 1,000)",
        ),
        ("{{ ('x' * 99999) | replace('x', 'yy' * 50) }}", "a text or list longer than 1,000,000"),
        ("{{ ('x' * 99999).replace('x', 'yy' * 50) }}", "a text or list longer than 1,000,000"),
        ("{{ ('x' * 99999) | list | join('y' * 11) }}", "a text or list longer than 1,000,000"),
        ("{{ ('y' * 11).join('x' * 99999) }}", "a text or list longer than 1,000,000"),
        ("{{ ('\t' * 99999).expandtabs(11) }}", "a text or list longer than 1,000,000"),
        (
            "{% set ns = namespace(s='x' * 99999) %}{% for i in range(9) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "a text or list longer than 1,000,000",
        ),
        (
            "{% set ns = namespace(s='x' * 99999) %}{% for i in range(9) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "a text or list longer than 1,000,000",
        ),
        (
            "{% for i in range(11) %}{{ 'x' * 99999 }}{% endfor %}",
            "a render of more than 1,000,000 characters",
        ),
        (
            "{% set s %}{% for i in range(11) %}{{ 'x' * 99999 }}{% endfor %}{% endset %}",
            "a render of more than 1,000,000 characters",
        ),
        (
            "{% for i in range(11) %}" + "y" * 99999 + "{% endfor %}",
            "a render of more than 1,000,000 characters",
        ),
    ],
)
def test_the_work_of_one_render_is_bounded(tmp_path, source, message):
    write(tmp_path, {"w.sms.j2": source})
    with pytest.raises(RenderError) as err:
        render_template(make_environment(tmp_path), "w.sms.j2", {})
    d = err.value.diagnostic
    assert (d.code, d.message, d.hint) == (
        "T504",
        f"unsafe template operation: {message}",
        LIMIT_HINT,
    )


def test_ordinary_loops_padding_and_formats_are_within_the_limits(tmp_path):
    write(
        tmp_path,
        {
            "w.txt.j2": "{% for i in range(3) %}{{ i }}{% endfor %} {{ 'x' | center(5) }}|"
            "{{ '%5.1f|%-3s|' % (2.25, 'b') }}{{ '{:.2f} {:>4}'.format(3.14159, 'a') }}|"
            "{{ 'a\nb' | indent(2, true) }}|{{ 'ab' | replace('a', 'cc') }}"
            "{% for x in [[1, [2]]] recursive %}{{ x }}{% if x is iterable %}{{ loop(x) }}"
            "{% endif %}{% endfor %}|{{ ('x' * 99999 + 'y' * 99999) | length }}"
        },
    )
    assert render_template(make_environment(tmp_path), "w.txt.j2", {}) == (
        "012   x  |  2.2|b  |3.14    a|  a\n  b|ccb[1, [2]]1[2]2|199998"
    )
    # the budget is per render: a template may be rendered for many members
    write(tmp_path, {"m.txt.j2": "{% for i in range(60000) %}{% endfor %}ok"})
    env = make_environment(tmp_path)
    assert [render_template(env, "m.txt.j2", {}) for _ in range(3)] == ["ok"] * 3
