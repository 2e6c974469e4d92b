"""Settings: the contract's Configuration variables, defaults, clear errors, caching."""

from __future__ import annotations

import pytest
from billpay.config import ConfigError, Settings, get_settings, load_settings, reset_settings

KEY = {"CODAT_API_KEY": "local-sandbox-key"}


def test_defaults_with_a_local_key() -> None:
    settings = load_settings(KEY)
    assert settings.codat_base_url == "https://api.codat.io"
    assert settings.codat_api_key is not None
    assert settings.codat_api_key.get_secret_value() == "local-sandbox-key"
    assert settings.codat_api_key_secret_arn is None
    assert settings.retry_window_seconds == 4800
    assert settings.upstream_key_cache_seconds == 5400
    assert settings.sweep_interval_seconds == 60
    assert settings.sync_budget_seconds < 29
    assert settings.upstream_timeout_seconds < settings.sync_budget_seconds
    assert settings.operations_table_name is None
    assert settings.retry_queue_url is None


def test_secret_arn_alone_is_enough() -> None:
    settings = load_settings({"CODAT_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:1:secret:codat"})
    assert settings.codat_api_key is None
    assert settings.codat_api_key_secret_arn == "arn:aws:secretsmanager:eu-west-2:1:secret:codat"


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"CODAT_API_KEY": "", "CODAT_API_KEY_SECRET_ARN": "  "},
        {"CODAT_API_KEY": "k", "CODAT_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:1:secret:codat"},
    ],
    ids=["neither", "both-empty", "both"],
)
def test_exactly_one_key_source(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env)
    assert "CODAT_API_KEY" in str(exc.value)
    assert "CODAT_API_KEY_SECRET_ARN" in str(exc.value)


def test_seconds_accept_decimals() -> None:
    settings = load_settings(
        KEY
        | {
            "BILLPAY_RETRY_WINDOW_SECONDS": "12.5",
            "BILLPAY_RETRY_BASE_DELAY_SECONDS": "0.05",
            "BILLPAY_RETRY_MAX_DELAY_SECONDS": "0.4",
            "BILLPAY_UPSTREAM_KEY_CACHE_SECONDS": "620.5",
            "BILLPAY_SWEEP_INTERVAL_SECONDS": "0.5",
            "BILLPAY_UPSTREAM_TIMEOUT_SECONDS": "1.5",
            "BILLPAY_LOOKUP_CACHE_SECONDS": "0",
        }
    )
    assert settings.retry_window_seconds == 12.5
    assert settings.retry_base_delay_seconds == 0.05
    assert settings.sweep_interval_seconds == 0.5
    assert settings.upstream_timeout_seconds == 1.5
    assert settings.lookup_cache_seconds == 0


@pytest.mark.parametrize(
    ("window", "ok"), [("4800", True), ("4801", False), ("5400", False), ("9000", False)]
)
def test_retry_window_must_close_ten_minutes_before_codats_cache(window: str, ok: bool) -> None:
    env = KEY | {"BILLPAY_RETRY_WINDOW_SECONDS": window}
    if ok:
        assert load_settings(env).retry_window_seconds == float(window)
    else:
        with pytest.raises(ConfigError, match="BILLPAY_RETRY_WINDOW_SECONDS"):
            load_settings(env)


@pytest.mark.parametrize("value", ["abc", "-1", "0", "nan", "inf"])
def test_a_bad_number_names_its_variable(value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(KEY | {"BILLPAY_UPSTREAM_TIMEOUT_SECONDS": value})
    assert "BILLPAY_UPSTREAM_TIMEOUT_SECONDS" in str(exc.value)


def test_sync_budget_stays_well_under_api_gateways_limit() -> None:
    with pytest.raises(ConfigError, match="BILLPAY_SYNC_BUDGET_SECONDS"):
        load_settings(KEY | {"BILLPAY_SYNC_BUDGET_SECONDS": "28"})


def test_base_delay_not_above_max() -> None:
    with pytest.raises(ConfigError, match="BILLPAY_RETRY_BASE_DELAY_SECONDS"):
        load_settings(
            KEY | {"BILLPAY_RETRY_BASE_DELAY_SECONDS": "30", "BILLPAY_RETRY_MAX_DELAY_SECONDS": "10"}
        )


def test_base_urls_lose_their_trailing_slash_and_must_be_http() -> None:
    settings = load_settings(
        KEY | {"CODAT_BASE_URL": "http://127.0.0.1:4100/", "BILLPAY_PROBLEM_TYPE_BASE": "https://x.test/"}
    )
    assert settings.codat_base_url == "http://127.0.0.1:4100"
    assert settings.problem_type_base == "https://x.test"
    with pytest.raises(ConfigError, match="CODAT_BASE_URL"):
        load_settings(KEY | {"CODAT_BASE_URL": "ftp://codat"})


def test_require_names_the_missing_variable() -> None:
    settings = load_settings(KEY)
    with pytest.raises(ConfigError, match="OPERATIONS_TABLE_NAME"):
        settings.require("operations_table_name")
    with pytest.raises(ConfigError, match="RETRY_QUEUE_URL"):
        _ = settings.queue_url
    full = load_settings(KEY | {"OPERATIONS_TABLE_NAME": "ops", "RETRY_QUEUE_URL": "http://q"})
    assert full.require("operations_table_name") == "ops"
    assert full.table_name == "ops"
    assert full.queue_url == "http://q"


def test_errors_never_echo_the_key() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings({"CODAT_API_KEY": "very-secret-value", "BILLPAY_SWEEP_INTERVAL_SECONDS": "x"})
    assert "very-secret-value" not in str(exc.value)
    assert "very-secret-value" not in repr(load_settings({"CODAT_API_KEY": "very-secret-value"}))


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="extra"):
        Settings.model_validate({"codat_api_key": "k", "not_a_setting": 1})


def test_get_settings_is_cached_until_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODAT_API_KEY", "first")
    monkeypatch.delenv("CODAT_API_KEY_SECRET_ARN", raising=False)
    reset_settings()
    try:
        first = get_settings()
        monkeypatch.setenv("CODAT_API_KEY", "second")
        assert get_settings() is first
        reset_settings()
        second = get_settings()
        assert second.codat_api_key is not None
        assert second.codat_api_key.get_secret_value() == "second"
    finally:
        reset_settings()
