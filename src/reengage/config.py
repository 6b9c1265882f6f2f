"""Settings: defaults, then the home's `reengage.toml`, then `REENGAGE_*` environment variables.

The home folder (`REENGAGE_HOME`, default `./reengage-data`) holds the config file, the SQLite
state, the Parquet facts and the import rejects unless settings point them elsewhere.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from reengage.errors import ConfigError, HomeError

CONFIG_FILE = "reengage.toml"
ENV_PREFIX = "REENGAGE_"
DEFAULT_HOME = "reengage-data"
# the languages whose message copy ships with reengage
LANGUAGES = ("en", "it", "fr")


class Settings(BaseModel):
    """Every setting, its type and its default. Each one is documented in docs/configuration.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Path(DEFAULT_HOME)
    database_url: str | None = None
    facts_url: str | None = None
    timezone: str = "UTC"
    currency: str = "EUR"
    inactivity_days: float | None = None
    inactivity_days_by_category: dict[str, float] = {}
    scoring_memory_mb: int = 2048
    language: str = "en"
    shop_name: str = "Our shop"
    public_url: str = "http://127.0.0.1:8420"
    shop_url: str | None = None
    support_email: str | None = None
    help_url: str | None = None
    returns_days: int = 30
    secret_key: str | None = None
    mail_from: str = "shop@example.com"
    smtp_url: str | None = None
    dkim_selector: str | None = None
    dkim_private_key_file: Path | None = None
    sms_api_url: str = "https://api.twilio.com"
    sms_account_sid: str | None = None
    sms_auth_token: str | None = None
    sms_from: str | None = None
    vapid_subject: str = "mailto:shop@example.com"
    webhook_url: str | None = None
    webhook_secret: str | None = None
    meta_access_token: str | None = None
    meta_graph_url: str = "https://graph.facebook.com"
    meta_api_version: str = "v25.0"
    meta_audience_ids: dict[str, str] = {}
    google_ads_url: str = "https://googleads.googleapis.com"
    google_ads_api_version: str = "v26"
    google_ads_developer_token: str | None = None
    google_ads_customer_id: str | None = None
    google_ads_login_customer_id: str | None = None
    google_ads_user_list_ids: dict[str, str] = {}
    google_ads_access_token: str | None = None
    google_ads_client_id: str | None = None
    google_ads_client_secret: str | None = None
    google_ads_refresh_token: str | None = None
    google_oauth_token_url: str = "https://oauth2.googleapis.com/token"
    frequency_caps: dict[str, dict[str, int]] = {
        "email": {"day": 1, "week": 3},
        "sms": {"day": 1, "week": 2},
        "push": {"day": 1, "week": 4},
        "all": {"day": 2, "week": 6},
    }
    quiet_hours: str = "21:00-09:00"
    purchase_cooldown_days: float = 3.0
    policy_max_defer_days: float = 3.0
    # messages per minute a channel may hand its provider (sliding window); absent: no limit
    rate_limits: dict[str, int] = {}
    # the web collector: which shop origins may post events from the browser, and its limits
    allowed_origins: list[str] = []
    collector_max_bytes: int = 1_000_000
    collector_rate_per_minute: int = 1200
    shopify_webhook_secret: str | None = None
    session_hours: float = 12.0
    # measurement: the tags on links to the shop, and how long a click or an open may claim
    # an order
    utm: dict[str, str] = {
        "utm_source": "reengage",
        "utm_medium": "{channel}",
        "utm_campaign": "{journey}",
        "utm_content": "{step}-{variant}",
    }
    attribution_click_days: float = 5.0
    attribution_open_days: float | None = None
    # retargeting: product feeds, server-side conversion events, messaging apps
    feed_brand: str | None = None
    meta_pixel_id: str | None = None
    meta_test_event_code: str | None = None
    meta_app_secret: str | None = None
    meta_verify_token: str | None = None
    google_ads_conversion_action_id: str | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_access_token: str | None = None
    messenger_page_id: str | None = None
    messenger_page_access_token: str | None = None
    # the share of contacts who get no marketing message at all (measured against everyone)
    global_holdout: float = 0.0
    # what one message costs on each channel, in the shop's currency (ROI in reports)
    message_costs: dict[str, float] = {"email": 0.001, "sms": 0.07, "push": 0.0001}

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name like Europe/Rome)"
            ) from None
        return value

    @field_validator("language")
    @classmethod
    def _shipped_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, not {value!r}")
        return value

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"public_url must start with http:// or https://, not {value!r}")
        return value.rstrip("/")

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: JSON or comma-separated
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if not isinstance(value, list):
            raise ValueError('write it as a list, e.g. ["https://shop.example"]')
        found = []
        for item in value:
            origin = str(item).strip().rstrip("/")
            if not origin:
                continue
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
                raise ValueError(
                    f"{origin!r} is not an origin (scheme and host only, e.g. https://shop.example)"
                )
            found.append(origin)
        return found

    @field_validator("utm", mode="before")
    @classmethod
    def _utm(cls, value: Any) -> Any:
        from reengage.measure.utm import check_templates

        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError('write it as JSON, e.g. {"utm_source": "reengage"}') from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError('write it as a table of texts, e.g. {"utm_source": "reengage"}')
        check_templates(value)
        return value

    @field_validator("message_costs", mode="before")
    @classmethod
    def _costs(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError('write it as JSON, e.g. {"email": 0.001, "sms": 0.07}') from None
        if isinstance(value, dict) and any(
            not isinstance(v, int | float) or v < 0 for v in value.values()
        ):
            raise ValueError("every channel needs a cost of zero or more")
        return value

    @field_validator("global_holdout")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError("must be a share from 0 (none) to below 1, e.g. 0.05")
        return value

    @field_validator("attribution_click_days", "attribution_open_days")
    @classmethod
    def _window(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be a positive number of days")
        return value

    @field_validator("collector_max_bytes", "session_hours")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    @field_validator("collector_rate_per_minute")
    @classmethod
    def _rate(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be zero (no limit) or more")
        return value

    @field_validator("shop_url", "help_url")
    @classmethod
    def _page_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, not {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("returns_days", "policy_max_defer_days")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator("secret_key")
    @classmethod
    def _long_secret(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("secret_key must be at least 32 characters (reengage init makes one)")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("smtp://", "smtps://")):
            raise ValueError("smtp_url must look like smtp://user:pass@host:587?starttls=1")
        return value

    @field_validator("meta_audience_ids", "google_ads_user_list_ids", mode="before")
    @classmethod
    def _audience_ids(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: a JSON object
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError('write it as JSON: {"lapsed_vip": "23851234567890"}') from None
        if not isinstance(value, dict) or not all(isinstance(v, str | int) for v in value.values()):
            raise ValueError("map each audience name to the platform's audience id")
        return {k: str(v) for k, v in value.items()}

    @field_validator("frequency_caps", mode="before")
    @classmethod
    def _caps(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: a JSON object
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError('write it as JSON: {"email": {"day": 1, "week": 3}}') from None
        if not isinstance(value, dict):
            raise ValueError("frequency_caps must map a channel (or all) to {day, week} limits")
        for channel, limits in value.items():
            if not isinstance(limits, dict) or not set(limits) <= {"day", "week"}:
                raise ValueError(f"frequency_caps.{channel}: give day and/or week limits")
            for period, n in limits.items():
                if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                    raise ValueError(
                        f"frequency_caps.{channel}.{period} must be a whole number >= 0"
                    )
        return value

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _rate_limits(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: a JSON object
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError('write it as JSON: {"email": 600, "sms": 60}') from None
        if not isinstance(value, dict):
            raise ValueError("rate_limits must map a channel to messages per minute")
        for channel, n in value.items():
            if channel not in ("email", "sms", "push"):
                raise ValueError(f"rate_limits.{channel}: the channels are email, sms and push")
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"rate_limits.{channel} must be a whole number >= 1")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        if value in ("", "off"):
            return "off"
        parts = value.split("-")
        if len(parts) != 2 or not all(_clock_time(p) for p in parts):
            raise ValueError(f"quiet_hours must look like 21:00-09:00 (or off), not {value!r}")
        return value

    @field_validator("purchase_cooldown_days")
    @classmethod
    def _cooldown(cls, value: float) -> float:
        if value < 0:
            raise ValueError("purchase_cooldown_days must not be negative")
        return value

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        if len(value) != 3 or not value.isalpha():
            raise ValueError(f"currency must be a 3-letter ISO 4217 code, not {value!r}")
        return value.upper()

    @field_validator("scoring_memory_mb")
    @classmethod
    def _scoring_memory(cls, value: int) -> int:
        if value < 256:
            raise ValueError("must be at least 256 (megabytes)")
        return value

    @field_validator("inactivity_days")
    @classmethod
    def _positive_days(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("inactivity_days must be a positive number of days")
        return value

    @field_validator("inactivity_days_by_category", mode="before")
    @classmethod
    def _category_days(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: a JSON object
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError('write it as JSON, e.g. {"shoes": 120, "socks": 45}') from None
        if isinstance(value, dict) and any(
            not isinstance(v, int | float) or v <= 0 for v in value.values()
        ):
            raise ValueError("every category needs a positive number of days")
        return value

    @property
    def state_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'state.db').resolve()}"

    @property
    def facts_path(self) -> Path:
        if self.facts_url is None:
            return (self.home / "facts").resolve()
        if "://" in self.facts_url and not self.facts_url.startswith("file://"):
            raise ConfigError(
                f"facts_url {self.facts_url!r}: only local folders are supported in this version"
            )
        return Path(self.facts_url.removeprefix("file://")).resolve()

    @property
    def rejects_path(self) -> Path:
        return (self.home / "rejects").resolve()

    @property
    def journal_path(self) -> Path:
        """Where the collector writes accepted events before it answers (then flushes them)."""
        return (self.home / "journal").resolve()

    @property
    def mail_path(self) -> Path:
        """The local maildir sink used when no smtp_url is set."""
        return (self.home / "mail").resolve()

    def secret(self) -> bytes:
        """The HMAC key for signed links; a clear error when the home has none."""
        if self.secret_key is None:
            raise ConfigError(
                "no secret_key: set REENGAGE_SECRET_KEY or secret_key in reengage.toml "
                "(reengage init writes one into a new home)"
            )
        return self.secret_key.encode()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


FIELDS = tuple(Settings.model_fields)


def _clock_time(text: str) -> bool:
    hours, colon, minutes = text.strip().partition(":")
    return (
        bool(colon)
        and hours.isdigit()
        and minutes.isdigit()
        and 0 <= int(hours) < 24
        and 0 <= int(minutes) < 60
    )


@dataclass(frozen=True)
class Home:
    """A home folder that `reengage init` made, with the settings in force for it."""

    settings: Settings

    @property
    def path(self) -> Path:
        return self.settings.home

    @property
    def config_file(self) -> Path:
        return self.settings.home / CONFIG_FILE


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings in force: env over the home's reengage.toml over the defaults."""
    env = os.environ if env is None else env
    from_env: dict[str, Any] = {}
    for name in FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in env and env[key] != "":
            from_env[name] = env[key]
    home = Path(from_env.get("home", DEFAULT_HOME)).expanduser()
    values: dict[str, Any] = {}
    config_file = home / CONFIG_FILE
    if config_file.is_file():
        values.update(_read_toml(config_file))
        values.pop("home", None)  # the home is where the file is, not what it says
    values.update(from_env)
    values["home"] = home
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        where = f"{ENV_PREFIX}{field.upper()}" if field in from_env else f"{config_file} [{field}]"
        raise ConfigError(f"{where}: {_reason(err)}") from None


def open_home(settings: Settings) -> Home:
    """The home the settings point at; a clear error when `init` has not made it."""
    if not (settings.home / CONFIG_FILE).is_file():
        raise HomeError(
            f"{settings.home} is not a reengage home: run `reengage init` there first "
            f"(or set REENGAGE_HOME to the home you made)"
        )
    return Home(settings)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(FIELDS)})")
    return data


def _reason(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")
