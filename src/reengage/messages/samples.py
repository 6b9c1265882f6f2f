"""Sample contexts: the made-up customer, cart, order and products that copy is checked with
(every template rendered with a full and a sparse sample before it is used) and that
`messages preview`, campaign proofs and the dashboard's preview show."""

from __future__ import annotations

import re
from dataclasses import replace

from reengage.messages import context as ctx

_SAMPLE_NAMES = {"en": "Alex", "it": "Giulia", "fr": "Camille"}
# (title in en, it, fr), price, category
_SAMPLE_PRODUCTS = [
    (
        ("Merino wool crew sweater", "Maglione girocollo in merino", "Pull col rond en mérinos"),
        89,
        "knitwear",
    ),
    (
        (
            "Organic cotton socks, 3 pairs",
            "Calze in cotone bio, 3 paia",
            "Chaussettes coton bio x3",
        ),
        19.5,
        "socks",
    ),
    (
        (
            "Waxed canvas weekender bag",
            "Borsa weekend in tela cerata",
            "Sac week-end en toile cirée",
        ),
        149,
        "bags",
    ),
    (("Lambswool scarf", "Sciarpa in lana d'agnello", "Écharpe en laine d'agneau"), 45, "knitwear"),
    (("Leather card holder", "Portacarte in pelle", "Porte-cartes en cuir"), 35, "leather goods"),
    (("Cashmere beanie", "Berretto in cashmere", "Bonnet en cachemire"), 59, "knitwear"),
]
SAMPLE_SHOP = "Northwind Goods"
SAMPLE_URL = "https://shop.example.com"


def sample_context(language: str, currency: str = "EUR", *, sparse: bool = False) -> ctx.Context:
    """A realistic context for previews and checks; `sparse` knows only the cart and product:
    no first name, no recommendations, no order, no offer, no deadline."""
    from datetime import date, datetime

    index = {"en": 0, "it": 1, "fr": 2}.get(language, 0)

    def product(n: int) -> ctx.Product:
        titles, price, category = _SAMPLE_PRODUCTS[n]
        slug = re.sub(r"[^a-z0-9]+", "-", titles[0].lower()).strip("-")
        return ctx.Product(
            title=titles[index],
            price=ctx.format_money(price, currency, language),
            url=f"{SAMPLE_URL}/products/{slug}",
            image_url=f"{SAMPLE_URL}/images/{slug}.jpg",
            category=category,
        )

    first, second = product(0), product(1)
    cart = (
        ctx.CartItem(first.title, first.price, 1, first.url, first.image_url),
        ctx.CartItem(second.title, second.price, 2, second.url, second.image_url),
    )
    full = ctx.Context(
        shop_name=SAMPLE_SHOP,
        shop_url=SAMPLE_URL,
        first_name=_SAMPLE_NAMES.get(language, "Alex"),
        cart=cart,
        cart_total=ctx.format_money(89 + 2 * 19.5, currency, language),
        cart_count=3,
        cart_url=f"{SAMPLE_URL}/cart",
        product=first,
        products=tuple(product(n) for n in (2, 3, 4, 5)),
        last_order=ctx.LastOrder(
            ctx.format_date(date(2026, 10, 14), language),
            (first.title, second.title),
            ctx.format_money(108.5, currency, language),
        ),
        offer=ctx.Offer(
            "THANKS-7Q2K",
            ctx.format_percent(10, language),
            ctx.format_date(date(2026, 11, 8), language),
            7,
        ),
        deadline=ctx.format_datetime(datetime(2026, 11, 3, 18, 0), language),
        days_since_order=18,
        returns_days=30,
        support_email="help@shop.example.com",
        review_url=f"{first.url}#reviews",
        help_url=f"{SAMPLE_URL}/help",
    )
    if not sparse:
        return full
    return replace(
        full,
        first_name="",
        products=(),
        last_order=None,
        offer=None,
        deadline=None,
        days_since_order=None,
    )
