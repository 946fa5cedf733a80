"""Quiet hours (issue 17): windows in their own time zone, past midnight, validated with
errors that name the entry."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from balancer.config import ConfigError, parse_config
from balancer.quiet import QuietHoursError, open_window, parse_windows

KEY = "balancing.quiet_hours"


def at(text: str, zone: str = "Europe/Berlin") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def test_a_weekday_window_in_its_own_zone() -> None:
    [w] = parse_windows(KEY, [{"name": "backups", "days": "mon-fri", "start": "01:00",
                               "end": "05:00", "timezone": "Europe/Berlin"}])
    assert w.contains(at("2026-12-07T01:00"))  # a Monday
    assert w.contains(at("2026-12-07T04:59"))
    assert not w.contains(at("2026-12-07T05:00")), "the end is not inside"
    assert not w.contains(at("2026-12-06T02:00")), "Sunday"
    # 00:30 UTC is 01:30 in Berlin in winter: the zone, not the host's, decides.
    assert w.contains(at("2026-12-08T00:30", "UTC"))
    assert w.describe() == 'quiet hours "backups" (mon-fri 01:00-05:00 Europe/Berlin)'


def test_a_window_past_midnight_belongs_to_the_day_it_starts() -> None:
    [w] = parse_windows(KEY, [{"days": ["fri"], "start": "22:00", "end": "02:00",
                               "timezone": "UTC"}])
    assert w.contains(at("2026-12-11T23:00", "UTC"))  # Friday night
    assert w.contains(at("2026-12-12T01:59", "UTC"))  # Saturday early: Friday's window
    assert not w.contains(at("2026-12-12T23:00", "UTC"))  # Saturday night
    assert not w.contains(at("2026-12-11T01:00", "UTC"))  # Friday early: Thursday's
    assert open_window((w,), at("2026-12-11T12:00", "UTC")) is None


def test_summer_time_keeps_the_local_hours() -> None:
    [w] = parse_windows(KEY, [{"start": "01:00", "end": "05:00", "timezone": "Europe/Berlin"}])
    assert w.contains(at("2026-07-01T23:30", "UTC")), "01:30 CEST"
    assert not w.contains(at("2026-07-01T03:30", "UTC")), "05:30 CEST"


@pytest.mark.parametrize(("entry", "message"), [
    ({"start": "01:00", "end": "05:00"}, '[0].timezone: required'),
    ({"name": "backups", "start": "01:00", "end": "05:00", "timezone": "Europe/Berln"},
     '[0] ("backups").timezone: \'Europe/Berln\' is not a known time zone'),
    ({"start": 3600, "end": "05:00", "timezone": "UTC"},
     '[0].start: got the number 3600; quote the time'),
    ({"start": "25:00", "end": "05:00", "timezone": "UTC"}, "[0].start: expected HH:MM"),
    ({"days": "mon-fry", "start": "01:00", "end": "05:00", "timezone": "UTC"},
     "[0].days: 'fry' is not a day"),
    ({"start": "01:00", "end": "01:00", "timezone": "UTC"}, "[0]: start and end are both"),
    ({"start": "01:00", "end": "02:00", "timezone": "UTC", "tz": "x"},
     "[0]: unknown field 'tz'"),
])
def test_a_bad_window_names_the_entry_and_the_field(entry: dict, message: str) -> None:
    with pytest.raises(QuietHoursError) as err:
        parse_windows(KEY, [entry])
    assert f"{KEY}{message}" in str(err.value)


def test_the_config_rejects_a_bad_window_at_start() -> None:
    raw = {"proxmox": {"hosts": ["pve1"], "user": "b@pve", "token_name": "b",
                       "token_value": "x"},
           "balancing": {"quiet_hours": [{"start": "1am", "end": "05:00", "timezone": "UTC"}]}}
    with pytest.raises(ConfigError, match=r"balancing\.quiet_hours\[0\]\.start: expected HH:MM"):
        parse_config(raw, env={})
    raw["balancing"]["quiet_hours"][0]["start"] = "01:00"
    cfg = parse_config(raw, env={})
    assert cfg.redacted()["balancing"]["quiet_hours"] == [
        {"name": "balancing.quiet_hours[0]", "days": "daily", "start": "01:00",
         "end": "05:00", "timezone": "UTC"}]
