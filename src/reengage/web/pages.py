"""The small HTML pages a contact meets from a link: unsubscribe, preferences, a survey
answer, a bad link.

In English, Italian or French, by the contact's language. Every value that comes from data
(the shop's name, a first name, a masked address) is escaped; an address is never shown in
full, so a forwarded link shows nobody's address.
"""

from __future__ import annotations

from html import escape
from typing import Literal

from reengage.config import LANGUAGES

PREFERENCE_CHANNELS = ("email", "sms", "push")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "hello": "Hello {name},",
        "hello_anon": "Hello,",
        "unsub_title": "Unsubscribe",
        "unsub_ask": "Do you want to stop receiving marketing emails from {shop} at {email}?",
        "unsub_ask_anon": "Do you want to stop receiving marketing emails from {shop}?",
        "unsub_button": "Unsubscribe",
        "unsub_done": "Done: you will receive no more marketing emails from {shop}.",
        "unsub_already": "You are already unsubscribed from the marketing emails of {shop}.",
        "unsub_note": "Messages about your orders are not affected.",
        "to_prefs": "Choose what you receive instead",
        "prefs_title": "Your preferences",
        "prefs_intro": "Choose how {shop} may send you news and offers.",
        "prefs_for": "Preferences for {email}",
        "email": "Email",
        "sms": "Text messages (SMS)",
        "push": "Browser notifications",
        "save": "Save",
        "saved": "Your preferences are saved.",
        "blocked": "We cannot email this address any more (it bounced or was reported).",
        "survey_title": "Thank you",
        "survey_ask_title": "Your answer",
        "survey_ask": "You chose: {answer}. Send this answer to {shop}?",
        "survey_send": "Send my answer",
        "survey_thanks": "Thank you for your answer ({answer}): it helps {shop} do better.",
        "survey_sorry": "Thank you for telling us ({answer}). We are sorry: someone from {shop} "
        "will look into it.",
        "survey_change": "Clicked the wrong answer? Click the right one in the email: the latest "
        "answer counts.",
        "bad_title": "Link not valid",
        "bad_text": "This link is not valid, was cut short, or is for someone no longer on our "
        "lists. Try copying the whole link from the message.",
    },
    "it": {
        "hello": "Ciao {name},",
        "hello_anon": "Ciao,",
        "unsub_title": "Disiscrizione",
        "unsub_ask": "Vuoi smettere di ricevere email promozionali da {shop} all'indirizzo "
        "{email}?",
        "unsub_ask_anon": "Vuoi smettere di ricevere email promozionali da {shop}?",
        "unsub_button": "Disiscrivimi",
        "unsub_done": "Fatto: non riceverai più email promozionali da {shop}.",
        "unsub_already": "Sei già disiscritto dalle email promozionali di {shop}.",
        "unsub_note": "I messaggi sui tuoi ordini non cambiano.",
        "to_prefs": "Scegli invece cosa ricevere",
        "prefs_title": "Le tue preferenze",
        "prefs_intro": "Scegli come {shop} può inviarti novità e offerte.",
        "prefs_for": "Preferenze per {email}",
        "email": "Email",
        "sms": "Messaggi (SMS)",
        "push": "Notifiche del browser",
        "save": "Salva",
        "saved": "Le tue preferenze sono salvate.",
        "blocked": "Non possiamo più scrivere a questo indirizzo (è stato respinto o segnalato).",
        "survey_title": "Grazie",
        "survey_ask_title": "La tua risposta",
        "survey_ask": "Hai scelto: {answer}. Vuoi inviare questa risposta a {shop}?",
        "survey_send": "Invia la mia risposta",
        "survey_thanks": "Grazie per la tua risposta ({answer}): aiuta {shop} a migliorare.",
        "survey_sorry": "Grazie per avercelo detto ({answer}). Ci dispiace: qualcuno di {shop} "
        "se ne occuperà.",
        "survey_change": "Hai cliccato la risposta sbagliata? Clicca quella giusta nell'email: "
        "vale l'ultima risposta.",
        "bad_title": "Link non valido",
        "bad_text": "Questo link non è valido, è incompleto o riguarda qualcuno che non è più "
        "nelle nostre liste. Prova a copiare il link intero dal messaggio.",
    },
    "fr": {
        "hello": "Bonjour {name},",
        "hello_anon": "Bonjour,",
        "unsub_title": "Désinscription",
        "unsub_ask": "Voulez-vous ne plus recevoir les e-mails promotionnels de {shop} à "
        "l'adresse {email} ?",
        "unsub_ask_anon": "Voulez-vous ne plus recevoir les e-mails promotionnels de {shop} ?",
        "unsub_button": "Me désinscrire",
        "unsub_done": "C'est fait : vous ne recevrez plus d'e-mails promotionnels de {shop}.",
        "unsub_already": "Vous êtes déjà désinscrit des e-mails promotionnels de {shop}.",
        "unsub_note": "Les messages concernant vos commandes ne changent pas.",
        "to_prefs": "Choisir plutôt ce que vous recevez",
        "prefs_title": "Vos préférences",
        "prefs_intro": "Choisissez comment {shop} peut vous envoyer nouveautés et offres.",
        "prefs_for": "Préférences pour {email}",
        "email": "E-mail",
        "sms": "SMS",
        "push": "Notifications du navigateur",
        "save": "Enregistrer",
        "saved": "Vos préférences sont enregistrées.",
        "blocked": "Nous ne pouvons plus écrire à cette adresse (rejetée ou signalée).",
        "survey_title": "Merci",
        "survey_ask_title": "Votre réponse",
        "survey_ask": "Vous avez choisi : {answer}. Envoyer cette réponse à {shop} ?",
        "survey_send": "Envoyer ma réponse",
        "survey_thanks": "Merci pour votre réponse ({answer}) : elle aide {shop} à s'améliorer.",
        "survey_sorry": "Merci de nous l'avoir dit ({answer}). Nous en sommes désolés : "
        "quelqu'un de {shop} va s'en occuper.",
        "survey_change": "Mauvaise réponse ? Cliquez sur la bonne dans l'e-mail : c'est la "
        "dernière réponse qui compte.",
        "bad_title": "Lien non valide",
        "bad_text": "Ce lien n'est pas valide, est incomplet ou concerne une personne qui ne "
        "figure plus sur nos listes. Copiez le lien entier depuis le message.",
    },
}

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f6f6f4;color:#222;
margin:0;padding:2rem 1rem}main{max-width:32rem;margin:0 auto;background:#fff;padding:2rem;
border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.1)}h1{font-size:1.4rem;margin-top:0}
button{font-size:1rem;padding:.6rem 1.4rem;border:0;border-radius:4px;background:#222;
color:#fff;cursor:pointer}label{display:block;margin:.6rem 0}.note{color:#666;font-size:.9rem}
.shop{color:#666;font-size:.9rem;margin-bottom:1.5rem}
"""


def language_for(code: str | None, default: str) -> str:
    """The page language for a contact's language code ("it", "it-IT", "FR"...)."""
    short = (code or "").strip().lower()[:2]
    return short if short in LANGUAGES else default


def mask_email(address: str | None) -> str:
    """An address shown without giving it away: giulia@example.com -> g•••@example.com."""
    if not address:
        return ""
    local, at, domain = address.strip().lower().partition("@")
    return f"{local[:1]}•••{at}{domain}"


def _t(lang: str, key: str, **values: str) -> str:
    """A sentence in lang, its values escaped (the sentences themselves are trusted)."""
    return escape(TEXT[lang][key], quote=False).format(**{k: escape(v) for k, v in values.items()})


def _page(lang: str, title: str, shop: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex">'
        f"<title>{escape(title)} · {escape(shop)}</title><style>{STYLE}</style></head>"
        f'<body><main><div class="shop">{escape(shop)}</div>'
        f"<h1>{escape(title)}</h1>{body}</main></body></html>\n"
    )


def _hello(lang: str, first_name: str | None) -> str:
    if first_name and first_name.strip():
        return f"<p>{_t(lang, 'hello', name=first_name.strip())}</p>"
    return f"<p>{_t(lang, 'hello_anon')}</p>"


def not_found_page(lang: str, shop: str) -> str:
    return _page(lang, TEXT[lang]["bad_title"], shop, f"<p>{_t(lang, 'bad_text')}</p>")


def unsubscribe_page(
    lang: str,
    *,
    shop: str,
    first_name: str | None,
    masked_email: str,
    action: str,
    preferences_href: str,
    state: Literal["ask", "done", "already"],
) -> str:
    """The confirm page (state "ask": a button that POSTs) or its outcome."""
    parts = [_hello(lang, first_name)]
    if state == "ask":
        ask = (
            _t(lang, "unsub_ask", shop=shop, email=masked_email)
            if masked_email
            else _t(lang, "unsub_ask_anon", shop=shop)
        )
        parts.append(
            f"<p>{ask}</p>"
            f'<form method="post" action="{escape(action)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">{_t(lang, "unsub_button")}</button></form>'
        )
    else:
        key = "unsub_done" if state == "done" else "unsub_already"
        parts.append(f"<p>{_t(lang, key, shop=shop)}</p>")
    parts.append(
        f'<p class="note">{_t(lang, "unsub_note")} '
        f'<a href="{escape(preferences_href)}">{_t(lang, "to_prefs")}</a></p>'
    )
    return _page(lang, TEXT[lang]["unsub_title"], shop, "".join(parts))


def preferences_page(
    lang: str,
    *,
    shop: str,
    first_name: str | None,
    masked_email: str,
    action: str,
    choices: dict[str, bool],
    saved: bool,
    email_blocked: bool,
) -> str:
    """One checkbox per channel, checked where marketing is allowed now."""
    parts = [_hello(lang, first_name), f"<p>{_t(lang, 'prefs_intro', shop=shop)}</p>"]
    if saved:
        parts.append(f'<p role="status"><strong>{_t(lang, "saved")}</strong></p>')
    if masked_email:
        parts.append(f'<p class="note">{_t(lang, "prefs_for", email=masked_email)}</p>')
    boxes = "".join(
        f'<label><input type="checkbox" name="{channel}" value="on"'
        f"{' checked' if choices.get(channel) else ''}> {_t(lang, channel)}</label>"
        for channel in PREFERENCE_CHANNELS
    )
    blocked = f'<p class="note">{_t(lang, "blocked")}</p>' if email_blocked else ""
    parts.append(
        f'<form method="post" action="{escape(action)}">'
        f'<input type="hidden" name="form" value="preferences">{boxes}{blocked}'
        f'<p><button type="submit">{_t(lang, "save")}</button></p></form>'
    )
    return _page(lang, TEXT[lang]["prefs_title"], shop, "".join(parts))


def survey_page(
    lang: str,
    *,
    shop: str,
    first_name: str | None,
    answer: str,
    action: str,
    state: Literal["ask", "done"],
    negative: bool,
) -> str:
    """The thank-you for a survey answer, or (state "ask", for a fetch that looked automatic)
    a button that POSTs the answer."""
    parts = [_hello(lang, first_name)]
    if state == "ask":
        parts.append(
            f"<p>{_t(lang, 'survey_ask', answer=answer, shop=shop)}</p>"
            f'<form method="post" action="{escape(action)}">'
            f'<button type="submit">{_t(lang, "survey_send")}</button></form>'
        )
        return _page(lang, TEXT[lang]["survey_ask_title"], shop, "".join(parts))
    key = "survey_sorry" if negative else "survey_thanks"
    parts.append(f"<p>{_t(lang, key, answer=answer, shop=shop)}</p>")
    parts.append(f'<p class="note">{_t(lang, "survey_change")}</p>')
    return _page(lang, TEXT[lang]["survey_title"], shop, "".join(parts))
