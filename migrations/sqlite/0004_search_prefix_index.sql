-- Prefix indexes for search (issue 11, "Hostile clients").
--
-- Every search word is a prefix. Without a prefix index FTS5 answers `a*` by
-- merging the doclists of every indexed word that starts with "a" — most of
-- the messages — into memory before it returns the first hit, and that merge
-- cannot be interrupted (it runs inside one step of the statement, where the
-- progress handler that enforces the search's time budget is never called).
-- With `prefix = '1 2 3'` a prefix of 1 to 3 characters has its own doclist,
-- read newest first and stopped at the page's limit; longer prefixes match
-- far fewer words. The index grows about threefold (docs/security.md, "Search").
--
-- The triggers of 0003 stay: they name the table, which is created anew.
DROP TABLE messages_fts;
CREATE VIRTUAL TABLE messages_fts USING fts5(
    body, content = 'messages', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2', prefix = '1 2 3'
);
INSERT INTO messages_fts (rowid, body)
    SELECT id, body FROM messages WHERE kind = 'text' AND deleted_at IS NULL;
