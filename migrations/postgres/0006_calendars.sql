-- Calendars (docs/triggers.md, "Calendars"): named exclusions that triggers name in `exclude_calendars`, shared by
-- every replica pointed at this schema. `calendar` is the calendar's JSON as the API shows it. `calendar_version`
-- counts every change to the calendars, so a replica tells with one read whether the calendars it has compiled
-- are still current.

CREATE TABLE calendars (
    id       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    calendar JSONB NOT NULL
);

CREATE TABLE calendar_version (
    singleton BOOLEAN NOT NULL PRIMARY KEY CHECK (singleton),
    version   BIGINT  NOT NULL
);

INSERT INTO calendar_version (singleton, version) VALUES (TRUE, 0);

-- A calendar change wakes the other replicas as a job change does (same channel, same payload: the writer's
-- origin), so they read the new calendars before they plan another fire.
CREATE TRIGGER calendars_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON calendars
    FOR EACH STATEMENT EXECUTE FUNCTION apsched_jobs_changed();
