-- Calendars (docs/triggers.md, "Calendars"): named exclusions that triggers name in `exclude_calendars`.
-- `calendar` is the calendar's JSON as the API shows it. `calendar_version` counts every change to the calendars,
-- so a scheduler tells with one read whether the calendars it has compiled are still current.

CREATE TABLE calendars (
    id       TEXT NOT NULL PRIMARY KEY,
    calendar TEXT NOT NULL
);

CREATE TABLE calendar_version (
    singleton INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    version   INTEGER NOT NULL
);

INSERT INTO calendar_version (singleton, version) VALUES (1, 0);
