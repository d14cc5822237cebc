-- 0063_ingest_event_uuid_sha256.sql - the derived alert_ingested event's uuid is built from
-- sha256 instead of md5.
--
-- A PostgreSQL server in FIPS mode refuses md5(), and the function sits in the view every
-- activity read goes through, so on such a server every activity read would fail. The uuid keeps
-- its shape (the first 16 bytes of the digest, version 4 and RFC 4122 variant bits) and stays
-- the same on every read; the uuids read before this migration change once, before any release
-- has shown them.
--
-- Locks: replacing the function takes no table lock.

CREATE OR REPLACE FUNCTION calseta_ingest_event_uuid(alert_uuid UUID) RETURNS UUID
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT encode(set_bit(set_bit(set_bit(set_bit(set_bit(set_bit(
               substring(sha256(convert_to('alert_ingested' || alert_uuid::text, 'UTF8')) FROM 1 FOR 16),
               55, 0), 54, 1), 53, 0), 52, 0), 71, 1), 70, 0), 'hex')::uuid
$$;
