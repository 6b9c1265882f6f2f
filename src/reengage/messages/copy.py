"""The copy: one YAML file per language, every intent x variant x field a Jinja template.

`copy/<lang>.yaml` ships with reengage; a shop overrides any part of it with
`<home>/messages/copy/<lang>.yaml` in the same shape (one field is enough). Everything is
checked when a language is first used, so a mistake shows before anything is sent, as one line
naming the file, the line, the field and the problem:

    messages/copy/en.yaml line 12 (cart_reminder.go_getter.subject): 'frist_name' is undefined

A language's copy is checked by compiling every template, looking for names that are not in
the context (`reengage.messages.context.VARIABLES`), and rendering each one with a full and a
sparse sample context (no first name, no recommendations, no offer, no order): copy that only
works when everything is known fails here, not in a customer's inbox. SMS and push texts
longer than their limits (`intents.LIMITS`) with the samples are listed by `reengage messages
check`, which fails on them, but they do not stop a language from loading: they would still
send.

A campaign may replace some fields of an intent's copy with its own text (`overrides`, a
mapping of field to template): `check_overrides` checks them as the copy is checked, when the
campaign is written; `LanguageCopy.render_overrides` renders them, each text compiled once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaError
from jinja2.sandbox import SandboxedEnvironment

from reengage.errors import InputError
from reengage.messages import context as ctx
from reengage.messages.intents import FIELDS, INTENTS, LIMITS, VARIANTS, UnknownName
from reengage.messages.samples import sample_context

# PyYAML ships no type information; its nodes are handled as Any

PACKAGED = Path(__file__).parent / "copy"
OVERRIDES = Path("messages") / "copy"


class CopyError(InputError):
    """A copy file that cannot be used: not YAML, a missing or unknown intent, variant or field."""


class TemplateError(CopyError):
    """A template that does not compile or does not render: names its file, line and field."""


@dataclass(frozen=True)
class Where:
    """Where a template was written: its file (as shown to the user), line and field."""

    file: str
    line: int
    field: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line} ({self.field})"


@dataclass(frozen=True)
class Source:
    text: str
    where: Where
    block: bool  # a `|` or `>` scalar: its text starts on the line after `where.line`


def environment(language: str, currency: str) -> SandboxedEnvironment:
    """The sandbox copy renders in: unknown names fail, `money` and `date` filters per language.

    Copy renders to plain text; the email layout escapes it as it goes into HTML.
    """
    env = SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters["money"] = lambda value, cur=None: ctx.format_money(
        value, cur or currency, language
    )
    env.filters["date"] = lambda value: ctx.format_date(value, language)
    env.filters["datetime"] = lambda value: ctx.format_datetime(value, language)
    return env


# --- reading YAML with line numbers --------------------------------------------------------


def _read(path: Path, shown: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CopyError(f"{shown}: not UTF-8 text") from None
    try:
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise CopyError(f"{shown}{line}: not valid YAML ({problem})") from None
    if node is None:
        return None
    if not isinstance(node, yaml.MappingNode):
        raise CopyError(f"{shown} line {node.start_mark.line + 1}: expected intents as keys")
    return node


def _items(node: Any, shown: str, path: str) -> Iterator[tuple[str, Any]]:
    seen: set[str] = set()
    for key, value in node.value:
        name = str(key.value)
        if name in seen:
            raise CopyError(f"{shown} line {key.start_mark.line + 1}: {path}{name} is given twice")
        seen.add(name)
        yield name, value


def _sources(node: Any, shown: str) -> dict[tuple[str, str, str], Source]:
    """Every template a copy file holds, keyed by (intent, variant, field)."""
    found: dict[tuple[str, str, str], Source] = {}
    for intent, variants in _items(node, shown, ""):
        line = variants.start_mark.line + 1
        if intent not in INTENTS:
            known = ", ".join(INTENTS)
            raise CopyError(f"{shown} line {line}: unknown intent {intent!r} (known: {known})")
        if not isinstance(variants, yaml.MappingNode):
            raise CopyError(f"{shown} line {line}: {intent} must map variants to their copy")
        for variant, texts in _items(variants, shown, f"{intent}."):
            line = texts.start_mark.line + 1
            if variant not in VARIANTS:
                known = ", ".join(VARIANTS)
                raise CopyError(
                    f"{shown} line {line}: {intent}: unknown variant {variant!r} (known: {known})"
                )
            if not isinstance(texts, yaml.MappingNode):
                raise CopyError(f"{shown} line {line}: {intent}.{variant} must map fields to text")
            for name, value in _items(texts, shown, f"{intent}.{variant}."):
                where = Where(shown, value.start_mark.line + 1, f"{intent}.{variant}.{name}")
                if name not in FIELDS:
                    known = ", ".join(FIELDS)
                    raise CopyError(
                        f"{where.file} line {where.line} ({intent}.{variant}): "
                        f"unknown field {name!r} (known: {known})"
                    )
                if not isinstance(value, yaml.ScalarNode) or value.tag.endswith(":null"):
                    raise CopyError(f"{where}: must be text")
                found[(intent, variant, name)] = Source(
                    str(value.value), where, value.style in ("|", ">")
                )
    return found


# --- one language's copy ---------------------------------------------------------------

# names a template may use besides the context: Jinja's own
_JINJA_NAMES = frozenset({"loop", "range", "dict", "lipsum", "cycler", "joiner", "namespace"})


class Variant:
    """The eight fields of one intent's copy in one variant, compiled as one Jinja template
    with a block per field: a message renders them all from one Jinja context."""

    def __init__(self, template: JinjaTemplate, where: dict[str, Where]) -> None:
        self.template = template
        self.where = where
        self._blocks = [(name, template.blocks[name]) for name in FIELDS]

    def render(self, variables: dict[str, Any], skip: Collection[str] = ()) -> list[str]:
        """Every field rendered, in `FIELDS` order; those in `skip` (overridden) left empty."""
        context = self.template.new_context(variables)
        out = []
        for name, block in self._blocks:
            if name in skip:
                out.append("")
                continue
            try:
                out.append("".join(block(context)))
            except (JinjaError, SecurityError) as exc:
                raise TemplateError(f"{self.where[name]}: {_reason(exc)}") from None
            except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
                raise TemplateError(f"{self.where[name]}: {exc}") from None
        return out


class LanguageCopy:
    """Every template of one language, compiled and checked."""

    def __init__(self, language: str, sources: dict[tuple[str, str, str], Source], currency: str):
        self.language = language
        self.env = environment(language, currency)
        self.known = frozenset(ctx.VARIABLES) | _JINJA_NAMES | frozenset(self.env.globals)
        # overrides compiled, by text: thousands of messages share a campaign's few texts
        self._overrides: dict[str, JinjaTemplate] = {}
        self._overrides_lock = threading.Lock()
        blocks: dict[tuple[str, str], list[nodes.Block]] = {}
        where: dict[tuple[str, str], dict[str, Where]] = {}
        for (intent, variant, field), source in sources.items():
            parsed = self._parse(source.text, _in_file(source))
            blocks.setdefault((intent, variant), []).append(
                nodes.Block(field, parsed.body, False, False, lineno=1)
            )
            where.setdefault((intent, variant), {})[field] = source.where
        self.variants: dict[tuple[str, str], Variant] = {}
        for key, fields in blocks.items():
            tree = nodes.Template(fields, lineno=1)
            tree.set_environment(self.env)
            try:
                code = self.env.compile(tree, name=f"{language}:{key[0]}.{key[1]}")
            except TemplateSyntaxError as exc:  # what parsing alone cannot see
                first = next(iter(where[key].values()))
                raise TemplateError(f"{first.file} ({key[0]}.{key[1]}): {exc.message}") from None
            template = self.env.template_class.from_code(
                self.env, code, self.env.make_globals(None)
            )
            self.variants[key] = Variant(template, where[key])

    def _parse(self, text: str, where: Callable[[int], str]) -> nodes.Template:
        """Parse one field; a syntax error or an unknown name is reported at `where(line)`,
        `line` counted in the template."""
        try:
            parsed = self.env.parse(text)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{where(exc.lineno or 1)}: {exc.message}") from None
        for node in parsed.find_all((nodes.Filter, nodes.Test)):
            kind, known = (
                ("filter", self.env.filters)
                if isinstance(node, nodes.Filter)
                else ("test", self.env.tests)
            )
            if node.name not in known:
                raise TemplateError(f"{where(node.lineno or 1)}: no {kind} named {node.name!r}")
        stored = {n.name for n in parsed.find_all(nodes.Name) if n.ctx != "load"}
        for name in parsed.find_all(nodes.Name):
            if name.ctx == "load" and name.name not in self.known and name.name not in stored:
                raise TemplateError(f"{where(name.lineno or 1)}: '{name.name}' is undefined")
        return parsed

    def override(self, text: str, field: str, where: str) -> JinjaTemplate:
        """One field's own text (a campaign's), compiled in this sandbox; kept by text, so a
        text is compiled once however many messages use it. Errors name `where (field)`."""
        found = self._overrides.get(text)
        if found is not None:
            return found
        parsed = self._parse(text, lambda line: _override_where(where, field, text, line))
        try:
            code = self.env.compile(parsed, name=f"{self.language}:override")
        except TemplateSyntaxError as exc:
            line = exc.lineno or 1
            raise TemplateError(
                f"{_override_where(where, field, text, line)}: {exc.message}"
            ) from None
        found = self.env.template_class.from_code(self.env, code, self.env.make_globals(None))
        with self._overrides_lock:
            # a long-running worker sees many campaigns: keep the latest texts only
            while len(self._overrides) >= _OVERRIDES_KEPT:
                del self._overrides[next(iter(self._overrides))]
            self._overrides[text] = found
        return found

    def render_overrides(
        self, overrides: Mapping[str, str], variables: dict[str, Any], where: str
    ) -> dict[str, str]:
        """Each overridden field rendered with `variables`: {field: text}."""
        check_fields(overrides, where)
        out = {}
        for field, text in overrides.items():
            template = self.override(text, field, where)
            try:
                out[field] = "".join(template.root_render_func(template.new_context(variables)))
            except (JinjaError, SecurityError) as exc:
                raise TemplateError(f"{where} ({field}): {_reason(exc)}") from None
            except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
                raise TemplateError(f"{where} ({field}): {exc}") from None
        return out

    def variant(self, intent: str, variant: str) -> Variant:
        return self.variants[(intent, variant)]

    def check(self, samples: list[ctx.Context]) -> None:
        """Render every template with each sample: a template that fails raises. Texts over
        their limit (`intents.LIMITS`) are collected in `too_long`: they would still send."""
        self.too_long: list[str] = []
        for sample in samples:
            variables = sample.variables()
            for variant in self.variants.values():
                for field, text in zip(FIELDS, variant.render(variables), strict=True):
                    limit = LIMITS.get(field)
                    length = len(" ".join(text.split()))
                    problem = (
                        f"{variant.where[field]}: {length} characters with sample values, "
                        f"more than the {limit} a {field} may have"
                    )
                    if limit is not None and length > limit and problem not in self.too_long:
                        self.too_long.append(problem)


# distinct override texts kept compiled per language
_OVERRIDES_KEPT = 512


def check_fields(overrides: Mapping[str, Any], where: str) -> None:
    """Overrides name known fields and give text."""
    for field, text in overrides.items():
        if field not in FIELDS:
            raise CopyError(f"{where}: unknown field {field!r} (known: {', '.join(FIELDS)})")
        if not isinstance(text, str):
            raise CopyError(f"{where} ({field}): must be text")


def _override_where(where: str, field: str, text: str, line: int) -> str:
    # the line only helps in a text of several lines (a body)
    return f"{where} ({field} line {line})" if "\n" in text.strip() else f"{where} ({field})"


def _in_file(source: Source) -> Callable[[int], str]:
    """Where a template's line is in its file: "file line N (intent.variant.field)"."""
    return lambda line: str(replace(source.where, line=_line(source, line)))


def _line(source: Source, template_line: int) -> int:
    """The YAML line of a template's line: block scalars start on the line after their key."""
    return source.where.line + template_line if source.block else source.where.line


def _reason(exc: Exception) -> str:
    # "'reengage.messages.context.Product object' has no attribute 'titel'" -> "'Product' ..."
    text = str(getattr(exc, "message", None) or exc)
    return re.sub(r"'(?:[\w]+\.)*(\w+) object'", r"'\1'", text)


# --- the catalogue of every language ---------------------------------------------------


def _stamps(files: list[tuple[Path, str]]) -> tuple[tuple[str, int, int], ...]:
    found = []
    for path, _ in files:
        try:
            stat = path.stat()
        except OSError:
            found.append((str(path), -1, -1))
        else:
            found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


_CHECKED: dict[tuple[Any, ...], LanguageCopy] = {}


class Catalogue:
    """The copy in force: the packaged files, with a home's overrides on top.

    Languages are read and checked when first used (`copy(language)`), or all at once
    (`check()`), and kept: make one catalogue per process and share it.
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        currency: str = "EUR",
        packaged: Path = PACKAGED,
    ) -> None:
        self.home = home
        self.currency = currency
        self.packaged = packaged
        self._languages: dict[str, LanguageCopy] = {}

    @classmethod
    def for_settings(cls, settings: Any) -> Catalogue:
        """The copy a home uses: its overrides, its currency."""
        return cls(settings.home, currency=settings.currency)

    def files(self, language: str) -> list[tuple[Path, str]]:
        """The files read for a language, lowest first, with the name errors show."""
        found = [(self.packaged / f"{language}.yaml", f"messages/copy/{language}.yaml")]
        if self.home is not None:
            override = self.home / OVERRIDES / f"{language}.yaml"
            if override.is_file():
                found.append((override, str(override)))
        return found

    def copy(self, language: str) -> LanguageCopy:
        loaded = self._languages.get(language)
        if loaded is None:
            # a file read and checked once per process while unchanged: a worker opens a
            # catalogue for every delivery pass, and checking a language takes a second
            key = (language, self.currency, *_stamps(self.files(language)))
            loaded = _CHECKED.get(key)
            if loaded is None:
                loaded = _CHECKED[key] = self._load(language)
            self._languages[language] = loaded
        return loaded

    def check(self) -> list[str]:
        """Load and check every shipped language now; the texts over their limits."""
        from reengage.config import LANGUAGES

        return [problem for language in LANGUAGES for problem in self.copy(language).too_long]

    def _load(self, language: str) -> LanguageCopy:
        from reengage.config import LANGUAGES

        if language not in LANGUAGES:
            raise UnknownName(f"no copy for language {language!r} (known: {', '.join(LANGUAGES)})")
        sources: dict[tuple[str, str, str], Source] = {}
        for path, shown in self.files(language):
            if not path.is_file():
                raise CopyError(f"{shown}: the copy file is missing")
            node = _read(path, shown)
            if node is not None:
                sources.update(_sources(node, shown))
        missing = [
            f"{i}.{v}.{f}"
            for i in INTENTS
            for v in VARIANTS
            for f in FIELDS
            if (i, v, f) not in sources
        ]
        if missing:
            shown = self.files(language)[0][1]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise CopyError(f"{shown}: {missing[0]} is missing{more}")
        loaded = LanguageCopy(language, sources, self.currency)
        loaded.check([sample_context(language, self.currency, sparse=s) for s in (False, True)])
        return loaded


def check_overrides(
    overrides: Mapping[str, str],
    language: str,
    *,
    where: str,
    settings: Any = None,
    catalogue: Catalogue | None = None,
) -> None:
    """Check a campaign's own copy as the shipped copy is checked: known fields, every template
    compiled, no unknown name, rendered with the full and the sparse sample contexts, and not
    empty with either. A mistake raises a `CopyError` naming `where` and the field.

    The copy is that of `catalogue`, else of `settings` (its home's copy and currency), else
    the shipped copy.
    """
    if catalogue is None:
        catalogue = Catalogue.for_settings(settings) if settings is not None else Catalogue()
    check_fields(overrides, where)
    copy = catalogue.copy(language)
    for sparse in (False, True):
        sample = sample_context(language, catalogue.currency, sparse=sparse)
        for field, text in copy.render_overrides(overrides, sample.variables(), where).items():
            if not text.strip():
                which = (
                    "the sparse sample (no first name, no recommendations, no order, "
                    "no offer, no deadline)"
                    if sparse
                    else "the full sample"
                )
                raise CopyError(f"{where} ({field}): renders empty with {which}")
