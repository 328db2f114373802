-- 0003: compaction commits series by series in short transactions. The
-- watermark is the highest "resource" row id already packed into the
-- series' chunks and roll-ups, so a crash between those transactions and
-- the final delete of the raw rows never packs a reading twice.
ALTER TABLE series ADD COLUMN compacted_row INTEGER NOT NULL DEFAULT 0;
