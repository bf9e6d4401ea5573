-- keypool schema, version 6: active windows on priority mappings (time-based priority rules).
--
-- A mapping with a window applies only while the wall clock of window_timezone reads one of window_days and a time
-- in [window_start, window_end); window_end < window_start crosses midnight and belongs to the day it starts. All
-- four columns are NULL (no window: always applies, as before) or all are set. src/core/priority/window.ts evaluates
-- them; the CHECKs follow src/catalog/rules.ts (WEEKDAYS, WINDOW_TIME, TIME_ZONE_NAME), kept in agreement by
-- test/catalog/rules-sql.test.ts. Whether a zone name exists is the catalog's check (Intl.supportedValuesOf), not SQL's.
--
-- The same pattern may now carry several rules that differ by window (P7 on weekday office hours, an always-on P3
-- fallback): the unique index takes the window into account, and at most one rule per pattern has no window.
-- A hand-written seed that inserted with `ON CONFLICT (match_type, pattern) WHERE deleted_at IS NULL` names the new
-- index's columns instead (examples/seed-demo.sql shows it).

ALTER TABLE api_key_priority_mappings
  ADD COLUMN IF NOT EXISTS window_days TEXT[],
  ADD COLUMN IF NOT EXISTS window_start TEXT,
  ADD COLUMN IF NOT EXISTS window_end TEXT,
  ADD COLUMN IF NOT EXISTS window_timezone TEXT;

ALTER TABLE api_key_priority_mappings DROP CONSTRAINT IF EXISTS api_key_priority_mappings_window_check;
ALTER TABLE api_key_priority_mappings ADD CONSTRAINT api_key_priority_mappings_window_check CHECK (
  (window_days IS NULL AND window_start IS NULL AND window_end IS NULL AND window_timezone IS NULL)
  OR (
    window_days IS NOT NULL AND window_start IS NOT NULL AND window_end IS NOT NULL AND window_timezone IS NOT NULL
    AND cardinality(window_days) BETWEEN 1 AND 7
    AND window_days <@ ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']::text[]
    AND window_start ~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'
    AND window_end ~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'
    AND window_start <> window_end
    AND window_timezone ~ '^[A-Za-z0-9_+/-]{1,64}$'
  )
);

DROP INDEX IF EXISTS api_key_priority_mappings_pattern_active_uq;
CREATE UNIQUE INDEX api_key_priority_mappings_pattern_active_uq
  ON api_key_priority_mappings (match_type, pattern, window_days, window_start, window_end, window_timezone)
  NULLS NOT DISTINCT WHERE deleted_at IS NULL;
