-- The consensus table used when PostgreSQL (or CockroachDB) serves as the consensus
-- store. One row per version of a key; the primary key arbitrates compare-and-set: a
-- conditional INSERT ... ON CONFLICT DO NOTHING inserts the next version only if the
-- current head is the expected one, so two racing writers can never both commit the
-- same sequence number. Sequence numbers are bigint (SeqNo is limited to Int64.max).
CREATE TABLE IF NOT EXISTS consensus (
    shard           text   NOT NULL,
    sequence_number bigint NOT NULL,
    data            bytea  NOT NULL,
    PRIMARY KEY (shard, sequence_number)
);
