"""Rendering personalised messages, against bare Jinja and against MJML compiled per message.

    python -m benchmarks.render [--count 20000] [--seed 1]

Builds `count` varied contexts first (names, carts of 1-5 lines, 0-4 recommendations, an
offer or none, every intent, style and language in turn), then times, on one core:
- reengage: `Renderer.render` — the eight fields of copy, the HTML email from the layout
  compiled once from MJML, the text part, SMS and push — for every context;
- baseline: the same compiled HTML layout rendered by Jinja alone, with the copy already
  rendered (what the layout costs with nothing of ours around it);
- naive: Jinja on the MJML then mrml on each message, as a first implementation would do
  (timed on a tenth of the messages).

Times are CPU seconds of this one process (the best of three runs): per core, and the same on
a busy shared machine, where wall time would measure the other tenants too. Loading the copy
(compiling and checking every template of the three languages) is timed apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from collections.abc import Callable

import mrml
from jinja2 import Environment, StrictUndefined

from benchmarks.common import report
from reengage.config import LANGUAGES
from reengage.messages import render as rendering
from reengage.messages.context import CartItem, Context, LastOrder, Offer, Product, format_money
from reengage.messages.copy import Catalogue, sample_context
from reengage.messages.intents import INTENTS, VARIANTS
from reengage.messages.render import Links, Renderer

NAMES = ["", "Anna", "Luca", "Chloé", "Jean-Baptiste", "Sam", "Giulia", "Élodie", "Noah"]
WORDS = [
    "linen",
    "cotton",
    "wool",
    "merino",
    "leather",
    "canvas",
    "cashmere",
    "suede",
    "trail",
    "travel",
    "city",
    "classic",
]
THINGS = [
    "shirt",
    "scarf",
    "bag",
    "sweater",
    "beanie",
    "socks",
    "wallet",
    "jacket",
    "runner",
    "notebook",
    "mug",
]


def contexts(count: int, seed: int) -> list[tuple[str, str, str, Context, Links]]:
    rng = random.Random(seed)
    jobs = []
    intents = list(INTENTS)
    for n in range(count):
        language = LANGUAGES[n % len(LANGUAGES)]
        base = sample_context(language)

        def product(m: int, language: str = language) -> Product:
            title = f"{rng.choice(WORDS).title()} {rng.choice(THINGS)} {m}"
            slug = title.lower().replace(" ", "-")
            return Product(
                title,
                format_money(rng.randint(900, 25000) / 100, "EUR", language),
                f"https://shop.example.com/p/{slug}",
                f"https://cdn.example.com/{slug}.jpg",
                rng.choice(THINGS),
            )

        cart = tuple(
            CartItem(p.title, p.price, rng.randint(1, 3), p.url, p.image_url)
            for p in (product(m) for m in range(rng.randint(1, 5)))
        )
        products = tuple(product(m) for m in range(rng.randint(0, 4)))
        offer = (
            Offer(
                f"OUR-{rng.randrange(16**8):08X}", rng.choice(["10%", "15%"]), base.offer.expires, 5
            )  # type: ignore[union-attr]
            if rng.random() < 0.5
            else None
        )
        context = dataclasses.replace(
            base,
            first_name=rng.choice(NAMES),
            cart=cart,
            cart_count=sum(i.quantity for i in cart),
            cart_total=format_money(rng.randint(2000, 60000) / 100, "EUR", language),
            product=product(9),
            products=products,
            offer=offer,
            last_order=LastOrder(
                base.last_order.date, tuple(p.title for p in products[:2]), base.cart_total
            )  # type: ignore[union-attr]
            if rng.random() < 0.7
            else None,
            days_since_order=rng.randint(20, 400),
        )
        links = Links(
            unsubscribe=f"https://r.example.com/u/{n:08d}.sig",
            preferences=f"https://r.example.com/p/{n:08d}.sig",
        )
        jobs.append(
            (
                intents[n % len(intents)],
                VARIANTS[(n // 3) % len(VARIANTS)],
                language,
                context,
                links,
            )
        )
    return jobs


def cpu_best_of(runs: int, work: Callable[[], object]) -> float:
    """The least CPU time of a few runs."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    start = time.process_time()
    catalogue = Catalogue()
    catalogue.check()
    load_s = time.process_time() - start
    renderer = Renderer(catalogue)
    jobs = contexts(args.count, args.seed)
    for job in jobs[:200]:  # warm: compile each language's layout once
        renderer.render(*job)

    def ours() -> None:
        for job in jobs:
            renderer.render(*job)

    ours_s = cpu_best_of(3, ours)

    # the baseline: only the compiled layout, its values prepared beforehand
    values = []
    for intent, variant, language, context, links in jobs:
        prepared = renderer.prepare(intent, variant, language, context, links)
        prepared.values["paragraphs"] = prepared.paragraphs
        values.append((renderer.layout.html(prepared.variant, language), prepared.values))

    def bare() -> None:
        for template, v in values:
            template.render(v)

    bare_s = cpu_best_of(3, bare)

    # the naive way: Jinja on the MJML source, then MJML to HTML, per message
    source = (rendering.HERE / "layout.mjml").read_text(encoding="utf-8")
    env = Environment(autoescape=True, undefined=StrictUndefined)
    naive_templates = {
        (variant, language): env.from_string(
            rendering._bake(source, language, rendering.ACCENTS[variant], escape=True)
        )
        for variant in VARIANTS
        for language in LANGUAGES
    }
    some = values[: max(1, len(values) // 10)]
    keys = [(job[1], job[2]) for job in jobs[: len(some)]]

    def naive() -> None:
        for (_, v), key in zip(some, keys, strict=True):
            mrml.to_html(naive_templates[key].render(v))

    naive_s = cpu_best_of(1, naive) * len(values) / len(some)

    rate = args.count / ours_s
    report(
        "render",
        {
            "messages": args.count,
            "seconds": round(ours_s, 3),
            "messages_per_second_per_core": round(rate),
            "baseline_bare_jinja_per_second": round(args.count / bare_s),
            "ratio_vs_bare_jinja": round(ours_s / bare_s, 2),
            "naive_mjml_per_message_per_second": round(args.count / naive_s),
            "speedup_vs_naive": round(naive_s / ours_s, 1),
            "copy_load_seconds_3_languages": round(load_s, 2),
            "goal_per_second_per_core": 2000,
            "meets_goal": rate >= 2000,
        },
    )


if __name__ == "__main__":
    main()
