"""The `calendars:` part of a policy file: named calendars, each defined once
in the whole set of files and referenced by name from windows (`on:`,
`except:`). The models check what can be checked alone (a country and
subdivision the holiday tables know, dates that parse, a range that does not
end before it starts); `loading` reads the iCalendar texts, resolves unions
and reports every problem as file:line.

```yaml
calendars:
  holidays-de-by: {holidays: {country: DE, subdivision: BY}}
  shutdown: {dates: ["2026-12-24..2027-01-01"]}
  team-offsites: {ical: {file: offsites.ics}}       # or {configmap: calendars, key: offsites.ics}
  days-off: {union: [holidays-de-by, shutdown]}
```
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from typing import Annotated, Any

import holidays as holiday_tables
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator

from scaler.decide.calendars import Calendar, DateRange, DateSource, HolidaySource, Source
from scaler.decide.fields import invalid
from scaler.decide.icalendars import IcalError, IcalSource, parse

_RANGE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})\s*(?:\.\.\s*(\d{4}-\d{2}-\d{2})\s*)?$")
_DATES_HELP = "write a date (2026-12-24) or a range, both ends included (2026-12-24..2027-01-01)"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _countries() -> dict[str, list[str]]:
    return holiday_tables.list_supported_countries(include_aliases=False)


class HolidaysSpec(_Model):
    """A country's public holidays (and a subdivision's), from the `holidays` package."""

    country: str = Field(description="ISO 3166-1 alpha-2 code, e.g. DE, US, GB.")
    subdivision: str | None = Field(None, description="A subdivision the package knows for the country, e.g. BY "
                                                      "(Bavaria) for DE, CA for US.")
    categories: tuple[str, ...] | None = Field(
        None, description="Categories the country supports (default: public), e.g. [public, half_day], [bank].")
    language: str | None = Field(None, description="Language of the holiday names (default: the country's own).")

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        countries = _countries()
        if value not in countries:
            close = difflib.get_close_matches(value.upper(), list(countries), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise invalid(f"unknown country {value!r}: the holidays package has no such country code "
                          f"(ISO 3166-1 alpha-2, e.g. DE){hint}")
        return value

    @field_validator("subdivision")
    @classmethod
    def _subdivision(cls, value: str | None, info: ValidationInfo) -> str | None:
        country = info.data.get("country")
        if value is None or country is None:
            return value
        table = holiday_tables.country_holidays(country)
        known = [*table.subdivisions, *getattr(table, "subdivisions_aliases", {})]
        if value not in known:
            listed = ", ".join(table.subdivisions) or "none"
            raise invalid(f"unknown subdivision {value!r} of {country} (known: {listed})")
        return value

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        country = info.data.get("country")
        if value is None or country is None:
            return value
        supported = holiday_tables.country_holidays(country).supported_categories
        wrong = [category for category in value if category not in supported]
        if wrong or not value:
            raise invalid(f"{country} has no holiday category {', '.join(map(repr, wrong)) or '(empty list)'} "
                          f"(it has: {', '.join(supported)})")
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None, info: ValidationInfo) -> str | None:
        country = info.data.get("country")
        if value is None or country is None:
            return value
        supported = holiday_tables.country_holidays(country).supported_languages
        if value not in supported:
            raise invalid(f"{country}'s holiday names are not available in {value!r} (they are in: "
                          f"{', '.join(supported) or 'its own language only'})")
        return value

    def source(self) -> HolidaySource:
        return HolidaySource(self.country, subdivision=self.subdivision, categories=self.categories,
                             language=self.language)


class IcalSpec(_Model):
    """An iCalendar (RFC 5545) file: beside the policy file, or a key of a ConfigMap."""

    file: str | None = Field(None, description="Path relative to the policy file (with the policies in a "
                                               "ConfigMap: another key of that ConfigMap).")
    configmap: str | None = Field(None, description="A ConfigMap, NAME (in the daemon's namespace) or "
                                                    "NAMESPACE/NAME, read through the API.")
    key: str | None = Field(None, description="The key of the ConfigMap holding the iCalendar text.")

    @model_validator(mode="after")
    def _one_place(self) -> IcalSpec:
        if (self.file is None) == (self.configmap is None):
            raise invalid("give file, or configmap and key")
        if self.configmap is not None and not self.key:
            raise invalid("a ConfigMap calendar needs key (the key holding the iCalendar text)")
        if self.file is not None and self.key is not None:
            raise invalid("key goes with configmap, not with file")
        return self

    @property
    def where(self) -> str:
        return self.file if self.file is not None else f"ConfigMap {self.configmap}, key {self.key}"


def parse_dates(value: Any) -> DateRange:
    """'2026-12-24' or '2026-12-24..2027-01-01' (YAML may hand a date)."""
    if isinstance(value, date):
        return DateRange(value, value)
    match = _RANGE.match(value) if isinstance(value, str) else None
    if match is None:
        raise invalid(f"{value!r} is not a date: {_DATES_HELP}")
    try:
        first = date.fromisoformat(match[1])
        last = date.fromisoformat(match[2]) if match[2] else first
    except ValueError as error:
        raise invalid(f"{value!r} is not a date ({error}): {_DATES_HELP}") from None
    if last < first:
        raise invalid(f"the range {value!r} ends before it starts")
    return DateRange(first, last)


class NamedDates(_Model):
    """Dates with a name, shown in reasons: {date: 2026-12-24..2027-01-01, name: Winter shutdown};
    a plain '2026-12-24' or '2026-12-24..2027-01-01' is the same without a name."""

    date: str = Field(description="A date (2026-12-24) or a range (2026-12-24..2027-01-01).")
    name: str = Field("", description="Shown in reasons.")

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {"date": value}

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> str:
        parse_dates(value)
        return value.isoformat() if isinstance(value, date) else value


DateItem = Annotated[NamedDates, WithJsonSchema({"anyOf": [
    {"type": "string", "description": "A date (2026-12-24) or a range, both ends included (2026-12-24..2027-01-01)."},
    {"type": "object", "properties": {"date": {"type": "string"}, "name": {"type": "string"}},
     "required": ["date"], "additionalProperties": False}]})]


class CalendarSpec(_Model):
    """One calendar: the union of the sources it gives."""

    description: str = ""
    holidays: HolidaysSpec | None = Field(None, description="A country's (and subdivision's) public holidays.")
    ical: IcalSpec | None = Field(None, description="An iCalendar file: its all-day events are days, its timed "
                                                    "events their own spans.")
    dates: tuple[DateItem, ...] | None = Field(
        None, description="Dates and ranges: '2026-12-24', '2026-12-24..2027-01-01', or {date: ..., name: ...}.")
    union: tuple[str, ...] | None = Field(None, description="Other calendars, by name: every day of each.")

    @model_validator(mode="after")
    def _some_source(self) -> CalendarSpec:
        if self.holidays is None and self.ical is None and self.dates is None and self.union is None:
            raise invalid("the calendar is empty: give holidays, ical, dates or union")
        return self

    def own_sources(self, name: str, ical_text: str | None) -> list[Source]:
        """Its sources but the union's; IcalError for an unusable iCalendar text
        (None: not read here, e.g. `validate` without a cluster)."""
        sources: list[Source] = []
        if self.holidays is not None:
            sources.append(self.holidays.source())
        if self.dates is not None:
            ranges = []
            for item in self.dates:
                entry = parse_dates(item.date)
                ranges.append(DateRange(entry.first, entry.last, item.name))
            sources.append(DateSource(ranges, label=name))
        if self.ical is not None and ical_text is not None:
            sources.append(IcalSource(parse(ical_text, what=self.ical.where), label=name, what=self.ical.where))
        return sources


def union_of(name: str, own: list[Source], parts: list[Calendar], *, description: str = "") -> Calendar:
    """A calendar of its own sources and every source of `parts`."""
    sources = list(own)
    for part in parts:
        sources.extend(source for source in part.sources if source not in sources)
    return Calendar(name, sources, description=description)


__all__ = ["CalendarSpec", "HolidaysSpec", "IcalError", "IcalSpec", "NamedDates", "parse_dates", "union_of"]
