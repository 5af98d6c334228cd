"""Sphinx extension: settings tables rendered from the code, and a check that every module
is documented.

``.. deeptrain-settings:: deeptrain.training.generator.TrainGenerator`` with the option
``:defaults: deeptrain.training.configs.TRAINGEN_DEFAULTS`` renders one row per key of the
defaults dict (in its order): the setting's type (its class annotation), its default (the
dict's value now), what it does (its ``#:`` doc comment, or its property's docstring) and,
from the directive's content, its difference from DeepTrain 0.6::

    epochs: text (continuation lines indented)

A setting without a doc comment, a declared setting missing from the dict, and a
difference naming no setting are warnings (errors with ``sphinx-build -W``). So is a module
of the package that no page documents (``deeptrain_undocumented_modules`` lists the
exceptions).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import textwrap
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

log = logging.getLogger(__name__)


def _resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _doc_comments(cls: type) -> dict[str, str]:
    """``{attribute: text}`` of the ``#:`` comments in ``cls`` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):  # subclasses win
        try:
            attr_docs = ModuleAnalyzer.for_module(klass.__module__).find_attr_docs()
        except PycodeError:
            continue
        for (qualname, name), lines in attr_docs.items():
            if qualname == klass.__qualname__:
                docs[name] = " ".join(line.strip() for line in lines if line.strip())
    return docs


def _class_annotations(cls: type) -> dict[str, str]:
    """``{name: annotation}`` of the class body, from the source (autodoc adds the
    annotations of instance attributes to ``__annotations__``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    return {
        node.target.id: ast.unparse(node.annotation)
        for node in body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def _describe(cls: type, name: str, comments: dict[str, str]) -> tuple[str, str]:
    """``(type, what it does)`` of the setting ``name``."""
    annotation = re.sub(r"\b[a-z_]+\.", "", _class_annotations(cls).get(name, ""))
    if name in comments:
        return annotation, comments[name]
    attr = inspect.getattr_static(cls, name, None)
    if isinstance(attr, property) and attr.__doc__:
        returns = attr.fget.__annotations__.get("return", "") if attr.fget else ""
        return str(returns), inspect.cleandoc(attr.__doc__).split("\n\n")[0].replace("\n", " ")
    return annotation, ""


def _parse_differences(lines: list[str]) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if line and not line[0].isspace():
            current, _, text = line.partition(":")
            out[current.strip()] = [text.strip()]
        elif line.strip() and current is not None:
            out[current.strip()].append(line.strip())
    return {k: " ".join(v) for k, v in out.items()}


def _cell(text: str) -> str:
    return text.replace("\n", " ").strip() or "\\-"


class SettingsTable(SphinxDirective):
    required_arguments = 1
    has_content = True
    option_spec = {"defaults": str}

    def run(self) -> list[nodes.Node]:
        cls = _resolve(self.arguments[0])
        defaults: dict[str, Any] = _resolve(self.options["defaults"])
        comments = _doc_comments(cls)
        differences = _parse_differences(list(self.content))
        where = self.get_location()
        for name in _class_annotations(cls):
            if name not in defaults:
                log.warning(
                    "%s.%s is declared but has no default", cls.__name__, name, location=where
                )
        for name in differences:
            if name not in defaults:
                log.warning("0.6 difference for unknown setting %r", name, location=where)
        rows = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 18 14 14 30 24",
            "",
            "   * - Setting",
            "     - Type",
            "     - Default",
            "     - What it does",
            "     - Difference from DeepTrain 0.6",
        ]
        for name, default in defaults.items():
            kind, what = _describe(cls, name, comments)
            if not what:
                log.warning("setting %s.%s has no doc comment", cls.__name__, name, location=where)
            rows += [
                f"   * - ``{name}``",
                f"     - ``{kind}``" if kind else "     - \\-",
                f"     - ``{default!r}``",
                f"     - {_cell(what)}",
                f"     - {_cell(differences.get(name, ''))}",
            ]
        container = nodes.container(classes=["deeptrain-settings"])
        self.state.nested_parse(StringList(rows, source=where), self.content_offset, container)
        return [container]


def _check_modules(app: Sphinx, env: Any) -> None:
    package = importlib.import_module(app.config.deeptrain_package)
    documented = set(env.get_domain("py").modules)
    skip = set(app.config.deeptrain_undocumented_modules)
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name not in documented and info.name not in skip:
            log.warning("module %s is not documented in the API reference", info.name)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("deeptrain_package", "deeptrain", "env")
    app.add_config_value("deeptrain_undocumented_modules", [], "env")
    app.add_directive("deeptrain-settings", SettingsTable)
    app.connect("env-check-consistency", _check_modules)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
