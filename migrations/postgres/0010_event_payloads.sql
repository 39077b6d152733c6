-- What a provider sent (stored headers and body) kept out of the event's row, as the SQLite
-- store keeps it in a table of its own. An event's row is rewritten whenever its status
-- changes (a claim, an outcome); PostgreSQL writes a whole new row version each time, and with
-- a 1 KiB body inline (below the 2 KiB at which it would move values out by itself) every
-- delivery copied the payload twice into the heap and the WAL. Out-of-line (TOAST) values are
-- not copied when a row is updated, only pointed to again. EXTERNAL skips compression: sealed
-- bodies do not compress. With small rows, room left on each page lets the status updates stay
-- on their page without touching the indexes (`status` is in none of them).
ALTER TABLE events ALTER COLUMN headers SET STORAGE EXTERNAL;
ALTER TABLE events ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE events SET (toast_tuple_target = 128, fillfactor = 80);
