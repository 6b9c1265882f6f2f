"""utm tags on the links of a message, so the shop's web analytics (Google Analytics, Matomo,
the shop platform's own reports) file the visit under the same journey, step and variant that
reengage's own attribution does.

The tags come from the `utm` setting: a template per parameter with `{channel}`,
`{journey}` (the journey or the campaign), `{step}`, `{variant}`, `{intent}` and `{style}`;
an empty template leaves that parameter out. A parameter the link already carries is kept as
it is: the shop's own tagging wins. Only links to the shop are tagged (its `shop_url` host,
or any host but reengage's own when no shop_url is set).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_UTM = {
    "utm_source": "reengage",
    "utm_medium": "{channel}",
    "utm_campaign": "{journey}",
    "utm_content": "{step}-{variant}",
}
FIELDS = ("channel", "journey", "step", "variant", "intent", "style")


def check_templates(templates: Mapping[str, str]) -> None:
    """ValueError naming the parameter whose template is unusable."""
    for name, template in templates.items():
        if not name.startswith("utm_") or not name[4:].isidentifier():
            raise ValueError(f"{name!r} is not a utm parameter (utm_source, utm_medium, ...)")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        unknown = [f for f in fields if f not in FIELDS]
        if unknown:
            raise ValueError(
                f"{name}: unknown placeholder {{{unknown[0]}}} (known: "
                + ", ".join(f"{{{f}}}" for f in FIELDS)
                + ")"
            )


@dataclass(frozen=True)
class Origin:
    """Where a message came from, as its tags name it."""

    channel: str
    journey: str | None = None  # the journey, or the campaign
    step: str | None = None
    variant: str | None = None
    intent: str | None = None
    style: str | None = None


def tags(templates: Mapping[str, str], origin: Origin) -> dict[str, str]:
    """The utm parameters for a message; a template whose fields are all empty is left out."""
    values = {f: getattr(origin, f) or "" for f in FIELDS}
    found = {}
    for name, template in templates.items():
        text = template.format(**values).strip("-_ ")
        if text:
            found[name] = text
    return found


def tag(url: str, parameters: Mapping[str, str]) -> str:
    """`url` with the parameters it does not carry yet added to its query string."""
    if not parameters:
        return url
    parts = urlsplit(url)
    present = {k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
    missing = [(k, v) for k, v in parameters.items() if k not in present]
    if not missing:
        return url
    query = parts.query + ("&" if parts.query else "") + urlencode(missing)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def shop_link(url: str, shop_url: str | None, public_url: str) -> bool:
    """Whether a link leads to the shop (and so gets tags)."""
    host = urlsplit(url).hostname
    if host is None:
        return False
    if shop_url:
        return host == urlsplit(shop_url).hostname
    return host != urlsplit(public_url).hostname
