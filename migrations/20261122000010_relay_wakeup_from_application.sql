-- The per-statement NOTIFY trigger on `events` made every appending transaction take
-- PostgreSQL's cluster-wide notify lock at commit and hold it through the commit's WAL flush,
-- so no two appends could share an fsync (pgbench on the bare SQL of one command, 64 clients,
-- fsync on: 7,352 tps without the trigger, 2,788 with it). The application now sends the
-- wake-up itself, coalesced, from its own tiny transaction (commands/src/relay_waker.rs);
-- the relay still LISTENs and still polls, so appends made outside the application are
-- published too, only a poll later.
DROP TRIGGER events_wake_relay ON events;
DROP FUNCTION events_notify_relay();
