-- 0034_alerts_lz4_columns.sql - the alert's other text columns compressed with lz4, as its payload.
--
-- A fixture alert's row is 2.3-2.9 KB once its payload is compressed, over the 2 KB at which
-- PostgreSQL tries to shrink a row, so before the payload goes out of line into TOAST the
-- next largest columns are tried too: the description (a few hundred bytes) and the tags were
-- compressed with pglz, the default, on every insert, and it rarely won anything (perf of the
-- ingest function alone: pglz_compress 1.4 % of the backend's CPU). lz4 gives up on such short
-- values at a fraction of that cost. Only new values are written with it; PostgreSQL reads
-- either kind.
ALTER TABLE alerts ALTER COLUMN description SET COMPRESSION lz4;
ALTER TABLE alerts ALTER COLUMN title SET COMPRESSION lz4;
ALTER TABLE alerts ALTER COLUMN tags SET COMPRESSION lz4;
