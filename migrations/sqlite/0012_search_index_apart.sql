-- The full-text index leaves the message commit (issue 17, "Speed II").
--
-- Kept by triggers, the index was written in every commit of messages: a
-- third of the batch writer's CPU and several more pages for each commit to
-- sync. It now lives in a file of its own beside the database, filled by a
-- thread behind the commits (src/store/sqlite_search.rs): new messages by id,
-- and edits, deletions and removals from the log below, which the triggers
-- keep (one row per change; the thread cuts it back as it goes). The index is
-- rebuilt from the messages when its file is new.
DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_update;
DROP TRIGGER messages_fts_delete;
DROP TABLE messages_fts;

-- AUTOINCREMENT: an id is never given twice, even after the rows before it
-- were cut, so the index's mark names one change for good.
CREATE TABLE search_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL
);
CREATE TRIGGER search_change_on_update AFTER UPDATE OF body, deleted_at ON messages
WHEN old.kind = 'text' BEGIN
    INSERT INTO search_changes (message_id) VALUES (old.id);
END;
CREATE TRIGGER search_change_on_delete AFTER DELETE ON messages
WHEN old.kind = 'text' BEGIN
    INSERT INTO search_changes (message_id) VALUES (old.id);
END;
