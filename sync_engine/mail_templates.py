"""Mail templates shared by reminders and invoice delivery: a sandboxed Jinja2 environment per
folder list, and the "Subject: line, blank line, body" convention of the ``.txt`` templates.

Why sandboxed and ``StrictUndefined``: templates are written by admins and filled with CRM data;
a template cannot reach Python internals, and a misspelt variable fails loudly in
``billsync config check`` instead of mailing customers a blank.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["MailTemplateError", "RenderedMail", "environment", "render_mail"]


class MailTemplateError(ValueError):
    """A mail template cannot be found or rendered."""


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str | None


def _days(n: int) -> str:
    n = abs(int(n))
    return f"{n} day" if n == 1 else f"{n} days"


_ENVIRONMENTS: dict[tuple[str, ...], SandboxedEnvironment] = {}


def environment(folders: tuple[str, ...]) -> SandboxedEnvironment:
    """A sandboxed environment over ``folders`` (searched in order); ``.html`` is autoescaped."""
    env = _ENVIRONMENTS.get(folders)
    if env is None:
        env = SandboxedEnvironment(
            loader=FileSystemLoader(list(folders)),
            autoescape=select_autoescape(
                enabled_extensions=("html", "htm", "xml"), default_for_string=False, default=False
            ),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.globals["days"] = _days
        _ENVIRONMENTS[folders] = env
    return env


def render_mail(
    env: SandboxedEnvironment,
    text_name: str,
    html_name: str | None,
    context: Mapping[str, Any],
    *,
    label: str,
    error: type[MailTemplateError] = MailTemplateError,
) -> RenderedMail:
    """Subject and text from ``text_name`` (first line ``Subject: ...``), HTML from ``html_name``.

    ``label`` names the template in errors; ``error`` is the exception class raised.
    """
    try:
        rendered = env.get_template(text_name).render(context)
        first, _, body = rendered.lstrip("\r\n").partition("\n")
        if not first.lower().startswith("subject:"):
            raise error(f"template {label!r}: the first line must be 'Subject: ...', got {first[:60]!r}")
        subject = " ".join(first[len("subject:") :].split())
        if not subject:
            raise error(f"template {label!r}: the subject is empty")
        text = re.sub(r"\n{3,}", "\n\n", body.strip("\r\n")) + "\n"
        html = None
        if html_name is not None:
            html = env.get_template(html_name).render({**context, "subject": subject})
    except MailTemplateError:
        raise
    except (TemplateError, OSError) as exc:
        raise error(f"template {label!r}: {type(exc).__name__}: {exc}") from exc
    return RenderedMail(subject, text, html)
