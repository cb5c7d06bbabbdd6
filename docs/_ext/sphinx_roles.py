"""A griffe extension for the API reference: micro's docstrings use reStructuredText
roles (``:class:`Service```, ``:meth:`~Lock.release```), which Markdown would print
as they are. Each becomes a code span naming the object (``Service``,
``release``), so the docstrings stay readable in the source and on the site.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|exc|data|mod|obj|const):`(?P<target>[^`]+)`")


def _plain(match: re.Match[str]) -> str:
    target = match["target"].strip()
    if "<" in target and target.endswith(">"):  # :class:`title <target>`
        target = target.split("<", 1)[0].strip()
    elif target.startswith("~"):  # :meth:`~a.b.c` shows only c
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRoles(griffe.Extension):
    """Turn reStructuredText roles in docstrings into Markdown code spans."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_plain, obj.docstring.value)
